"""`site`: build or serve the documentation site (MkDocs, the `docs` extra) of this checkout.

A thin wrapper so the README can name one command: it finds mkdocs.yml (the checkout bench
runs from, else the working folder) and becomes `python -m mkdocs` there, so a missing extra is
one error line instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from bench.errors import BenchError

NAME = "site"
HELP = "build (mkdocs build --strict) or serve (mkdocs serve) the documentation site; needs the docs extra"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["serve", "build"], help="serve on a local address, or build into site/")
    parser.add_argument("--address", default="127.0.0.1:8000", metavar="HOST:PORT",
                        help="serve: where to listen (default 127.0.0.1:8000)")


def config_file() -> Path:
    for folder in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (folder / "mkdocs.yml").exists():
            return folder / "mkdocs.yml"
    raise BenchError("site: no mkdocs.yml here or in the checkout bench runs from (the site ships with the repository)")


def command(action: str, config: Path, address: str) -> list[str]:
    if action == "serve":
        return [sys.executable, "-m", "mkdocs", "serve", "--config-file", str(config), "--dev-addr", address]
    return [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]


def execute(args: argparse.Namespace) -> int:
    config = config_file()
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        raise BenchError('site: MkDocs and mkdocs-material are not installed: pip install -e ".[docs]"')
    os.chdir(config.parent)
    # replaced by mkdocs itself, so Ctrl-C and a kill reach the server, not a wrapper around it
    os.execv(sys.executable, command(args.action, config, args.address))
