"""One process of a grid: a run (`bench grid _run RUN_ID`) or a T1 job (`bench grid _t1 INDEX`).

Both launchers start this same process (local.py as a subprocess per run, slurm.py inside
each array task), so a run behaves the same everywhere: it creates its run folder, or
resumes it as `bench run --resume` does (finished steps kept, the interrupted step from its
in-task checkpoint). What it is doing goes to a small state file the status view reads:

    results/grids/<name>/state/<job>.json           running (host, pid, device, job) / done / failed (error line)
    results/grids/<name>/state/<job>.progress.json  the epoch being trained (bench/engine/progress.py)
    results/grids/<name>/logs/<job>.log             the process's output
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path

from bench.errors import BenchError
from bench.grid.stages import Plan, train_t1
from bench.io import read_json, write_json


def state_path(directory: Path, job: str) -> Path:
    return Path(directory) / "state" / f"{job}.json"


def progress_path(directory: Path, job: str) -> Path:
    return Path(directory) / "state" / f"{job}.progress.json"


def log_path(directory: Path, job: str) -> Path:
    return Path(directory) / "logs" / f"{job}.log"


def read_state(directory: Path, job: str) -> dict:
    path = state_path(directory, job)
    try:
        return read_json(path) if path.exists() else {}
    except ValueError:
        return {}


def write_state(directory: Path, job: str, state: str, **values) -> None:
    write_json(state_path(directory, job), {"state": state, "time": time.time(), **values})


def execute(directory: Path, job: str) -> int:
    """Run grid job `job` (a run id, or t1-<index>); 0 when it finished, 1 with the error line."""
    from bench.registry import load_file

    plan = Plan.load(directory)
    for plugin in plan.spec.get("plugins", []):
        load_file(plugin)
    os.environ["BENCH_PROGRESS_FILE"] = str(progress_path(directory, job))
    attempt = read_state(directory, job).get("attempt", 0) + 1
    where = {"host": socket.gethostname(), "pid": os.getpid(), "attempt": attempt,
             "device": os.environ.get("CUDA_VISIBLE_DEVICES"), "slurm_job": _slurm_job_id()}
    write_state(directory, job, "running", **where)
    try:
        if job.startswith("t1-"):
            outcome = train_t1(plan, int(job[3:]))
            print(f"{job}: {'loaded' if outcome['hit'] else 'trained'} {outcome['key']}", file=sys.stderr)
        else:
            run_one(plan, job)
    except BaseException as error:  # noqa: BLE001 - every end of a run is recorded
        if isinstance(error, BenchError):
            line = f"error: {error}"
        elif isinstance(error, KeyboardInterrupt):
            line = "interrupted"
        else:
            traceback.print_exc()
            line = "".join(traceback.format_exception_only(type(error), error)).strip().splitlines()[-1]
        print(line, file=sys.stderr, flush=True)
        write_state(directory, job, "failed", error=line[:300], **where)
        return 130 if isinstance(error, KeyboardInterrupt) else 1
    write_state(directory, job, "done", **where)
    progress_path(directory, job).unlink(missing_ok=True)
    return 0


def run_one(plan: Plan, run_id: str) -> None:
    """Create the run, or resume it with its stored settings (which must be the grid's)."""
    from bench.config import build_run_config
    from bench.engine import distributed
    from bench.experiments.runner import preflight, resume_config, run
    from bench.results.store import RunStore

    entry = plan.run(run_id)
    results = Path(plan.results)
    try:
        store = RunStore.open(run_id, results)
    except BenchError:
        store = None
    if store is None:
        config = build_run_config(entry["settings"])
        _, config.methods = preflight(config)
        store = RunStore.create(config.to_dict(), results, run_id)
        store.lock()
        print(f"run {run_id} -> {store.directory}", file=sys.stderr, flush=True)
    else:
        store.lock()
        config = resume_config(store, entry["settings"])
        print(f"run {run_id}: resuming in {store.directory}", file=sys.stderr, flush=True)
    distributed.init(config.device)
    started = time.monotonic()

    def step_line(method, record) -> None:
        step = record.steps[-1]
        print(f"[{time.monotonic() - started:7.1f}s] {method}: learnt {', '.join(step['tasks'])} "
              f"in {step['seconds']:.1f}s", file=sys.stderr, flush=True)

    try:
        run(config, store, progress=False, on_step=step_line)
    finally:
        store.unlock()


def _slurm_job_id() -> str | None:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")
