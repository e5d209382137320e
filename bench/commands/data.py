"""`data`: fetch GroupLens releases and print a dataset's per-task statistics (Conure's Table 1)."""

from __future__ import annotations

import argparse
import json

from tabulate import tabulate

from bench.errors import BenchError
from bench.registry import DATASETS
from bench.datasets.base import describe_dataset
from bench.datasets.grouplens import RELEASES, fetch

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
    info.add_argument("--options", help="dataset options as JSON, e.g. '{\"max_len\": 50}'")
    info.add_argument("--format", default="simple", choices=["github", "plain", "simple", "latex"])


def execute(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        folder = fetch(args.release, args.root, args.force)
        print(f"{args.release} is in {folder}; use --dataset movielens --data-dir {folder}")
        return 0
    DATASETS.get(args.dataset)  # unknown names fail before any loading
    options = _options(args.options)
    dataset, statistics = describe_dataset(args.dataset, options, args.data_dir)
    rows = [[row["task"], row["name"], row["kind"], f"{row['instances']:,}", f"{row['|X|']:,}",
             f"{row['|Y|']:,}", row["train/valid/test"]] for row in statistics]
    headers = ["task", "name", "kind", "instances", "|X|", "|Y|", "train/valid/test"]
    print(f"{dataset.name}: {dataset.n_items:,} input items, sequence length {dataset.seq_len}"
          + "".join(f", {key} {value}" for key, value in dataset.info.items() if isinstance(value, (str, int))))
    print(tabulate(rows, headers=headers, tablefmt=args.format, disable_numparse=True))
    return 0


def _options(text: str | None) -> dict:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise BenchError(f"--options: not JSON ({error})") from None
    if not isinstance(options, dict):
        raise BenchError("--options: expected a JSON object")
    return options
