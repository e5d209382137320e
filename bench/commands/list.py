"""`list`: the registered methods, datasets and backbones, or one method's options and their sources."""

from __future__ import annotations

import argparse

from bench.registry import BACKBONES, DATASETS, METHODS, resolve_methods

NAME = "list"
HELP = "list the available methods, datasets and backbones, or (given a method) its options and defaults"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", metavar="methods|datasets|backbones|METHOD",
                        help="list only one kind, or show one method's options")
    parser.add_argument("--dataset", default="synthetic",
                        help="with METHOD: whose method settings apply (default: synthetic)")


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.presets import PRESET_SUMMARY, PRESETS, default_preset

    if args.what not in (None, "methods", "datasets", "backbones"):
        return _method_options(args.what, args.dataset, tabulate)
    if args.what in (None, "methods"):
        rows = []
        for name in resolve_methods(["all"]):
            rows.append((name, _summary(name), METHODS.describe(name, "paper")))
            rows += [(row, _variant(row), "harness variant (not the paper's default)")
                     for row in METHODS.variant_names(name)]
        print(tabulate(rows, headers=["method", "what it does", "paper"], tablefmt="simple"))
    if args.what is None:
        print()
    if args.what in (None, "datasets"):
        rows = [(name, DATASETS.describe(name, "summary"), default_preset(name),
                 _method_settings(DATASETS.describe(name, "method_defaults", {}))) for name in DATASETS.names()]
        print(tabulate(rows, headers=["dataset", "what it is", "default preset", "its own method settings"],
                       tablefmt="simple"))
        print("\npresets (--preset): " + "; ".join(f"{name}: {PRESET_SUMMARY[name]}" for name in PRESETS))
    if args.what is None:
        print()
    if args.what in (None, "backbones"):
        _backbones(tabulate)
    return 0


def _backbones(tabulate) -> None:
    """The backbones (--set backbone.name=...) and how each method acts on each of them."""
    names = BACKBONES.names()
    rows = [(name, _first_line(BACKBONES.describe(name, "__doc__"))) for name in names]
    print(tabulate(rows, headers=["backbone", "what it is"], tablefmt="simple"))
    rows = []
    for method in resolve_methods(["all"]):
        sites = METHODS.describe(method, "sites", ())
        mechanisms = METHODS.describe(method, "mechanisms", {})
        rows.append((method, ", ".join(sites) or "none (any backbone)",
                     *(mechanisms.get(name, mechanisms.get("*", "the backbone as a whole")) for name in names)))
    print()
    print(tabulate(rows, headers=["method", "sites it needs", *(f"on {name}" for name in names)], tablefmt="simple"))


def _method_options(method: str, dataset: str, tabulate) -> int:
    from bench.config import method_option_sources

    name = METHODS.canonical(method)
    rows = [(option, value, source) for option, value, source in method_option_sources(name, dataset)]
    print(f"{name}: {_summary(name)}")
    if not rows:
        print("no options of its own (it trains with the shared train.* settings)")
        return 0
    print(f"options on dataset {DATASETS.canonical(dataset)}; change one with --set method_options.{name}.OPTION=VALUE\n")
    print(tabulate(rows, headers=["option", "default", "from"], tablefmt="simple", disable_numparse=True))
    return 0


def _summary(name: str) -> str:
    """First line of the method module's docstring, without the 'Name: ' prefix."""
    text = METHODS.describe(name, "__doc__").strip()
    first = text.splitlines()[0] if text else ""
    return first.split(": ", 1)[-1] if first.startswith(name) else first


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else ""


def _variant(row: str) -> str:
    """e.g. 'min_ratio=0.25': the option overrides that make the variant."""
    return " ".join(f"{key}={value}" for key, value in METHODS.options(row, {}).items())


def _method_settings(method_defaults: dict) -> str:
    """e.g. 'TERACON alpha=5.0 later_lr_scale=1.0' (see DatasetAdapter.method_defaults)."""
    return "; ".join(
        " ".join([method, *(f"{key}={value}" for key, value in options.items())])
        for method, options in method_defaults.items()
    ) or "–"
