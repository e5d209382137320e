"""`leaderboard`: regenerate (or check) results/LEADERBOARD.md from results/published/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.common import add_results_argument

NAME = "leaderboard"
HELP = "publish curated runs and write results/LEADERBOARD.md from results/published/ (--check: fail if stale)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--publish", nargs="+", metavar="RUN_ID", default=[],
                        help="first copy these runs' light files from runs/ to published/")
    parser.add_argument("--force", action="store_true", help="with --publish: replace an already published run")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the leaderboard file differs from what would be generated")
    parser.add_argument("--output", metavar="FILE", help="leaderboard file (default: LEADERBOARD.md in --results)")
    parser.add_argument("--site", metavar="DOCS", type=Path,
                        help="also write the site's results pages and figures under DOCS/results/ and the README's "
                             "snapshot (default: docs/ beside the results folder when mkdocs.yml is there)")
    parser.add_argument("--no-site", action="store_true", help="write (or check) LEADERBOARD.md only")
    add_results_argument(parser)


def execute(args: argparse.Namespace) -> int:
    from bench.io import write_text
    from bench.results import leaderboard, site

    path = Path(args.output) if args.output else args.results / leaderboard.LEADERBOARD
    for run_id in args.publish:
        print(f"published {leaderboard.publish(args.results, run_id, args.force)}", file=sys.stderr)
    docs = None if args.no_site else (args.site or site.docs_dir(args.results))
    if args.check:
        stale = ([] if leaderboard.check(args.results, path) else [str(path)]) \
            + (site.stale(args.results, docs) if docs else [])
        if stale:
            print(f"error: {', '.join(stale[:5])}{' …' if len(stale) > 5 else ''} stale; regenerate with: "
                  "python -m bench leaderboard"
                  + (f" --results {args.results}" if str(args.results) != "results" else ""), file=sys.stderr)
            return 1
        print(f"{path}{' and the site pages' if docs else ''} up to date", file=sys.stderr)
        return 0
    write_text(path, leaderboard.generate(args.results))
    print(path)
    if docs:
        for note in site.write(args.results, docs):
            print(note, file=sys.stderr)
        print(docs / site.SITE)
    return 0
