"""`plot`: forgetting heatmaps and per-task performance curves of a stored run (PNG)."""

from __future__ import annotations

import argparse

from bench.commands.common import add_results_argument

NAME = "plot"
HELP = "write PNG forgetting heatmaps and per-task curves of a run into <run>/plots/ (needs matplotlib)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="run directory name under results/runs (or a path)")
    add_results_argument(parser)


def execute(args: argparse.Namespace) -> int:
    from bench.results.plots import plot_run
    from bench.results.store import RunStore

    for path in plot_run(RunStore.open(args.run_id, args.results)):
        print(path)
    return 0
