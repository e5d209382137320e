"""`list`: the registered methods and datasets."""

from __future__ import annotations

import argparse
import sys

from tabulate import tabulate

from bench.presets import PRESET_SUMMARY, PRESETS, default_preset
from bench.registry import DATASETS, METHODS
from bench.registry import resolve_methods

NAME = "list"
HELP = "list the available methods and datasets"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=["methods", "datasets"], help="list only one kind")


def execute(args: argparse.Namespace) -> int:
    if args.what in (None, "methods"):
        rows = [(name, _summary(METHODS.get(name)), METHODS.get(name).paper)
                for name in resolve_methods(["all"])]
        print(tabulate(rows, headers=["method", "what it does", "paper"], tablefmt="simple"))
    if args.what is None:
        print()
    if args.what in (None, "datasets"):
        rows = [(name, DATASETS.get(name).summary, default_preset(name), _method_settings(DATASETS.get(name)))
                for name in DATASETS.names()]
        print(tabulate(rows, headers=["dataset", "what it is", "default preset", "its own method settings"],
                       tablefmt="simple"))
        print("\npresets (--preset): " + "; ".join(f"{name}: {PRESET_SUMMARY[name]}" for name in PRESETS))
    return 0


def _summary(cls) -> str:
    """First line of the method module's docstring, without the 'Name: ' prefix."""
    text = (sys.modules[cls.__module__].__doc__ or "").strip()
    first = text.splitlines()[0] if text else ""
    return first.split(": ", 1)[-1] if first.startswith(cls.registered_name) else first


def _method_settings(adapter) -> str:
    """e.g. 'TERACON alpha=5.0 later_lr_scale=1.0' (see DatasetAdapter.method_defaults)."""
    return "; ".join(
        " ".join([method, *(f"{key}={value}" for key, value in options.items())])
        for method, options in adapter.method_defaults.items()
    ) or "–"
