"""Child processes that stop themselves at a chosen point, so a test interrupts them exactly there.

A test that kills a run "once X has happened" by polling for X races the run: on a loaded
machine the run may be well past X, or finished, when the signal lands. Instead the child
runs under this script, which wraps one function so that after it returns (and, with
`--when-exists`, only once that path exists) the process sends itself SIGSTOP, every time.
The test waits until the child is stopped (`wait_stopped`), looks at or uses the state it
left while nothing moves, and then kills it (SIGKILL works on a stopped process) or lets it
go on (SIGCONT; a SIGTERM sent before SIGCONT is handled as soon as it runs again).

    python tests/stopping.py --after MODULE:QUALNAME [--when-exists PATH] -- MODULE ARGS...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]


def command(after: str, module: str, *argv: str, when_exists: Path | None = None) -> list[str]:
    """The argv of `python -m MODULE ARGV...` that stops itself after each return of `after`."""
    condition = ["--when-exists", str(when_exists)] if when_exists is not None else []
    return [sys.executable, str(HERE), "--after", after, *condition, "--", module, *map(str, argv)]


def environment(**extra: str) -> dict[str, str]:
    """os.environ with this checkout first on the path (the child must import this tree's bench)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def wait_stopped(process: subprocess.Popen, timeout: float = 300) -> None:
    """Block until `process` has stopped itself; fail (with its stderr) if it ends first or the
    generous deadline passes (it is a deadline for a hung child, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(process.pid, os.WUNTRACED | os.WNOHANG)
        if pid and os.WIFSTOPPED(status):
            return
        if pid:  # it ended: record what Popen would have, then report
            process.returncode = os.waitstatus_to_exitcode(status)
            stderr = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the child ended (rc {process.returncode}) before its stop point: {stderr}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"the child did not reach its stop point in {timeout} s")
        time.sleep(0.01)


def kill(process: subprocess.Popen) -> None:
    """kill -9 a child (stopped or not), drain its pipes, and check that the signal ended it."""
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def _install(after: str, when_exists: str | None) -> None:
    import importlib
    import inspect

    module_name, _, qualname = after.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    static = inspect.getattr_static(owner, name)
    function = static.__func__ if isinstance(static, (classmethod, staticmethod)) else static

    def stopping(*args, **kwargs):
        result = function(*args, **kwargs)
        if when_exists is None or os.path.exists(when_exists):
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGSTOP)
        return result

    wrapped = type(static)(stopping) if isinstance(static, (classmethod, staticmethod)) else stopping
    setattr(owner, name, wrapped)


def main(argv: list[str]) -> None:
    import argparse
    import runpy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--after", required=True, help="MODULE:QUALNAME of the function to stop after")
    parser.add_argument("--when-exists", help="stop only once this path exists")
    parser.add_argument("module")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    _install(args.after, args.when_exists)
    sys.argv = [args.module, *args.args]
    runpy.run_module(args.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent]  # not tests/ itself
    main(sys.argv[1:])
