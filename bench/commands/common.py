"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.store import DEFAULT_ROOT


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=DEFAULT_ROOT, metavar="DIR",
                        help=f"results root holding runs/ (default: {DEFAULT_ROOT})")


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="github", choices=["github", "plain", "simple", "latex"],
                        help="table style (tabulate format; default: github markdown)")
    parser.add_argument("--no-matrices", action="store_true",
                        help="print only the comparison table, not each method's matrices")


def split_list(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]
