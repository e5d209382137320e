"""`python -m bench <command>`: every sub-command lives in its own module in bench/commands/.

Command modules import their heavy dependencies (torch, pandas, optuna) inside `execute`,
so `--help` and `list` answer quickly (tests/test_packaging.py checks the import set).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from bench.errors import BenchError
from bench.registry import load_file

# Sub-command modules; each defines NAME, HELP, add_arguments(parser) and execute(args) -> int.
COMMANDS = ["run", "table", "list", "data", "tune", "plot", "leaderboard", "reproduce", "grid", "site"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark continual user-representation learning methods (Conure/TERACON protocol).",
    )
    add_global_options(parser, "plugin")
    # The same options after the command (`run --plugin F.py`): parsed into their own name so
    # that a value given before the command is not reset by the sub-command's default.
    after = argparse.ArgumentParser(add_help=False)
    add_global_options(after, "plugin_after")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module_name in COMMANDS:
        module = importlib.import_module(f"bench.commands.{module_name}")
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP, parents=[after])
        module.add_arguments(sub)
        sub.set_defaults(execute=module.execute)
    return parser


def add_global_options(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py", dest=dest,
                        help="import a Python file that registers methods or datasets (repeatable; "
                             "before or after the command)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for path in args.plugin + args.plugin_after:
            load_file(path)
        code = int(args.execute(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that left is a BrokenPipeError here, not at exit
        return code
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as error:  # beyond the up-front estimate (bench/experiments/memory.py)
        print(f"error: out of memory{f' ({error})' if str(error) else ''}; use less data or a larger machine",
              file=sys.stderr)
        return 2
    except BrokenPipeError:  # `bench list | head`: the reader left; say nothing more, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for a writer ended by SIGPIPE
