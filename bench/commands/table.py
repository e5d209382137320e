"""`table`: print the comparison table and forgetting matrices of a stored run."""

from __future__ import annotations

import argparse

from bench.commands.common import add_format_arguments, add_results_argument

NAME = "table"
HELP = "print the paper-style table and forgetting matrices of a stored run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="run directory name under results/runs (or a path), or a study id")
    add_results_argument(parser)
    add_format_arguments(parser)


def execute(args: argparse.Namespace) -> int:
    from bench.experiments import sweeps
    from bench.results.store import RunStore
    from bench.results.tables import render_run

    if sweeps.is_sweep(args.run_id, args.results):
        print(sweeps.render_sweep(sweeps.Sweep.load(args.results, args.run_id), args.results, args.format))
        return 0
    store = RunStore.open(args.run_id, args.results)
    print(render_run(store.records(), args.format, matrices=args.matrices))
    return 0
