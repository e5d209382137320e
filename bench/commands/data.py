"""`data`: fetch GroupLens releases and print a dataset's per-task statistics (Conure's Table 1)."""

from __future__ import annotations

import argparse

from bench.commands.common import add_set_argument
from bench.config import apply_override
from bench.datasets.grouplens import RELEASES

NAME = "data"
HELP = "download GroupLens releases (fetch) or print a dataset's task statistics (info)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="action")
    get = actions.add_parser("fetch", help="download, verify (MD5) and unpack a GroupLens release",
                             description="download, verify (MD5) and unpack a GroupLens release "
                                         "under $BENCH_DATA (default ~/.cache/bench)")
    get.add_argument("release", choices=sorted(RELEASES))
    get.add_argument("--root", help="where to unpack (default: $BENCH_DATA or ~/.cache/bench)")
    get.add_argument("--force", action="store_true", help="download again even if already unpacked")
    info = actions.add_parser("info", help="per-task statistics in the layout of Conure's Table 1")
    info.add_argument("dataset", help="dataset adapter, e.g. movielens, ttl, synthetic")
    info.add_argument("--data-dir", help="directory holding the dataset's files")
    add_set_argument(info, "dataset_options.max_len=50")
    info.add_argument("--format", default="simple", choices=["github", "plain", "simple", "latex"])


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.config import build_run_config
    from bench.datasets.base import describe_dataset
    from bench.datasets.grouplens import fetch

    if args.action == "fetch":
        folder = fetch(args.release, args.root, args.force)
        print(f"{args.release} is in {folder}; use --dataset movielens --data-dir {folder}")
        return 0
    settings = {"dataset": args.dataset}
    for assignment in args.set:
        apply_override(settings, assignment)
    config = build_run_config(settings)  # unknown names and settings fail before any loading
    dataset, statistics = describe_dataset(config.dataset, config.dataset_options, args.data_dir or config.data_dir)
    rows = [[row["task"], row["name"], row["kind"], f"{row['instances']:,}", f"{row['|X|']:,}",
             f"{row['|Y|']:,}", row["train/valid/test"]] for row in statistics]
    headers = ["task", "name", "kind", "instances", "|X|", "|Y|", "train/valid/test"]
    if any("known items" in row for row in statistics):  # the time-aware scenario: vocabulary growth
        headers += ["known items", "later"]
        for cells, row in zip(rows, statistics):
            cells += [f"{row.get('known items', dataset.n_items):,}", f"{row.get('later', 0):,}"]
    print(f"{dataset.name}: {dataset.n_items:,} input items, sequence length {dataset.seq_len}"
          + "".join(f", {key} {value}" for key, value in dataset.info.items() if isinstance(value, (str, int))))
    print(tabulate(rows, headers=headers, tablefmt=args.format, disable_numparse=True))
    return 0

