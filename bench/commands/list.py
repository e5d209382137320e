"""`list`: the registered methods and datasets."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from bench.registry import DATASETS, METHODS
from bench.registry import resolve_methods

NAME = "list"
HELP = "list the available methods and datasets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=["methods", "datasets"], help="list only one kind")


def execute(args: argparse.Namespace) -> int:
    if args.what in (None, "methods"):
        rows = []
        for name in resolve_methods(["all"]):
            rows.append((name, _summary(METHODS.get(name)), METHODS.get(name).paper))
            rows += [(row, _variant(row), "harness variant (not the paper's default)")
                     for row in METHODS.variant_names(name)]
        print(tabulate(rows, headers=["method", "what it does", "paper"], tablefmt="simple"))
    if args.what is None:
        print()
    if args.what in (None, "datasets"):
        rows = [(name, DATASETS.get(name).summary, _method_settings(DATASETS.get(name)))
                for name in DATASETS.names()]
        print(tabulate(rows, headers=["dataset", "what it is", "its own method settings"], tablefmt="simple"))
    return 0


def _summary(cls) -> str:
    """First line of the method module's docstring, without the 'Name: ' prefix."""
    text = (sys.modules[cls.__module__].__doc__ or "").strip()
    first = text.splitlines()[0] if text else ""
    return first.split(": ", 1)[-1] if first.startswith(cls.registered_name) else first


def _variant(row: str) -> str:
    """e.g. 'min_ratio=0.25': the option overrides that make the variant."""
    return " ".join(f"{key}={value}" for key, value in METHODS.options(row, {}).items())


def _method_settings(adapter) -> str:
    """e.g. 'TERACON alpha=5.0 later_lr_scale=1.0' (see DatasetAdapter.method_defaults)."""
    return "; ".join(
        " ".join([method, *(f"{key}={value}" for key, value in options.items())])
        for method, options in adapter.method_defaults.items()
    ) or "–"
