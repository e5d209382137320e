"""`reproduce`: run a published table's grid with the paper preset; print it beside the paper's numbers."""

from __future__ import annotations

import argparse
import sys

from bench.errors import BenchError
from bench.results.names import safe_name
from bench.commands.common import add_format_arguments, add_results_argument, add_settings_arguments, settings_from_args

NAME = "reproduce"
HELP = "run the grid of a published table (results/reference/) and print harness vs published numbers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", nargs="?", help="a table under results/reference/, e.g. conure-table2-ttl (see --list)")
    parser.add_argument("--list", action="store_true", help="list the published tables and exit")
    parser.add_argument("--seeds", default="0", help="seeds to average, e.g. 0,1,2 (default: 0)")
    parser.add_argument("--run-id", help="sweep id (default: reproduce-<table>); rerunning resumes it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    add_settings_arguments(parser)  # --preset defaults to paper here; --set/--epochs make a smoke run
    add_results_argument(parser)
    add_format_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    from bench.commands.run import parse_seeds
    from bench.experiments import reproduce

    if args.list:
        for name in reproduce.available():
            print(f"{name}: {reproduce.load_reference(name).describe()}")
        return 0
    if not args.table:
        raise BenchError("reproduce: name a published table (python -m bench reproduce --list)")
    if args.run_id is not None:
        safe_name(args.run_id, "--run-id")
    reference = reproduce.load_reference(args.table)
    frame = reproduce.reproduce(reference, settings_from_args(args), args.data_dir, parse_seeds(args.seeds),
                                args.results, args.run_id, progress=not args.quiet,
                                log=lambda line: print(line, file=sys.stderr))
    print(reproduce.render_side_by_side(frame, reference, args.format))
    return 0
