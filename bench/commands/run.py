"""`run`: train and evaluate methods over a task sequence, then print the tables."""

from __future__ import annotations

import argparse
import sys

from bench import studies, tuning
from bench.commands.common import add_format_arguments, add_results_argument, split_list
from bench.config import apply_override, build_run_config, load_config_file
from bench.errors import BenchError
from bench.runner import prepare, run
from bench.store import RunStore
from bench.tables import render_run
from datasets.base import apply_method_defaults

NAME = "run"
HELP = "train methods on a task sequence and print the comparison table and forgetting matrices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", help="comma-separated method names, or 'all' (default: all)")
    parser.add_argument("--dataset", help="dataset adapter (default: synthetic)")
    parser.add_argument("--data-dir", help="directory holding the dataset's files")
    parser.add_argument("--order", help="task order as 1-based numbers, e.g. 1,3,2,4,5,6")
    parser.add_argument("--seed", type=int, help="random seed (default: 0)")
    parser.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--epochs", type=int, help="maximum epochs per task (shortcut for --set train.epochs=N)")
    parser.add_argument("--config", help="JSON or TOML file of settings (see config.json of any run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set backbone.embedding_dim=32 (repeatable)")
    parser.add_argument("--run-id", help="name of the run directory (default: time, dataset, seed)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run where it stopped")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--use-tuned", action="store_true",
                        help="apply each method's best parameters from its `bench tune` study")
    studies.add_arguments(parser)
    add_results_argument(parser)
    add_format_arguments(parser)


def config_from_args(args: argparse.Namespace) -> dict:
    data = load_config_file(args.config) if args.config else {}
    shortcuts = {
        "methods": split_list(args.methods) if args.methods else None,
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "order": _parse_order(args.order) if args.order else None,
        "seed": args.seed,
        "device": args.device,
    }
    data.update({key: value for key, value in shortcuts.items() if value is not None})
    if args.epochs is not None:
        data.setdefault("train", {})["epochs"] = args.epochs
    for assignment in args.set:
        apply_override(data, assignment)
    if getattr(args, "use_tuned", False):
        tuning.apply_tuned(data, args.results)
    apply_method_defaults(data)
    return data


def _parse_order(text: str) -> list[int]:
    try:
        return [int(part) for part in split_list(text)]
    except ValueError:
        raise BenchError(f"--order expects task numbers such as 1,2,3, got '{text}'") from None


def execute(args: argparse.Namespace) -> int:
    if studies.requested(args) and not args.resume:
        return studies.execute(args, config_from_args(args))
    if args.resume:
        store = RunStore.open(args.resume, args.results)
        config = build_run_config(store.config)
    else:
        config = build_run_config(config_from_args(args))
        _, _, methods = prepare(config)  # fail on bad names or data before creating the run
        config.methods = methods
        store = RunStore.create(config.to_dict(), args.results, args.run_id)
    print(f"run {store.run_id} -> {store.directory}", file=sys.stderr)
    try:
        records = run(config, store, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"interrupted; resume with: python -m bench run --resume {store.run_id}", file=sys.stderr)
        return 130
    text = render_run(records, args.format, matrices=not args.no_matrices)
    print(text)
    return 0
