"""`tune`: Optuna studies of methods' hyperparameters on the validation split.

`--methods all --trials N` gives every method the same budget (one study per method, N
finished trials each), so a tuned comparison is a fair one. Several `tune` processes (on
several machines) given the same `--storage` share one study.
"""

from __future__ import annotations

import argparse
import signal

from bench.commands.common import (add_results_argument, add_settings_arguments, check_counts, given_list,
                                   settings_from_args)
from bench.config import parse_scalar
from bench.errors import BenchError
from bench.results.names import safe_name

NAME = "tune"
HELP = "search a method's hyperparameters with Optuna (validation split only; resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    chosen = parser.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--method", help="the method to tune")
    chosen.add_argument("--methods", help="comma-separated methods or 'all': one study each, the same --trials budget")
    parser.add_argument("--trials", type=int, default=50,
                        help="finished trials wanted in the study; a rerun only adds the missing ones (default: 50)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--study", help="study name (default: <dataset>-<method>, which run --use-tuned reads)")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage shared by all workers: sqlite:///FILE.db, postgresql://..., "
                             "mysql://..., or a journal file (journal:PATH or PATH.log) "
                             "(default: <results>/studies/<study>.db)")
    parser.add_argument("--heartbeat", type=int, default=60, metavar="SECONDS",
                        help="a database storage fails (and retries) a trial whose worker is silent for "
                             "twice this long (default: 60)")
    add_settings_arguments(parser)  # base settings; searched parameters take precedence (see --fix)
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="pin one searched parameter, e.g. --fix train.batch_size=128 (repeatable)")
    parser.add_argument("--startup-trials", type=int, default=5,
                        help="trials never pruned while the median builds up (default: 5)")
    parser.add_argument("--quiet", action="store_true", help="no line per finished trial")
    add_results_argument(parser)


def execute(args: argparse.Namespace) -> int:
    from bench.experiments import tuning

    from bench.registry import resolve_methods

    if args.heartbeat < 1:
        raise BenchError(f"--heartbeat {args.heartbeat}: expected a positive number of seconds")
    check_counts(args, {"trials": 1, "startup_trials": 0})
    check_counts(args, {"timeout": 0}, exclusive=True)
    methods = [args.method] if args.method is not None else resolve_methods(given_list(args.methods, "--methods"))
    if args.study and len(methods) > 1:
        raise BenchError("--study names one study; it cannot be combined with several --methods")
    if args.study is not None:  # it names files: results/studies/<study>.db and .cache/
        safe_name(args.study, "--study")
    base = settings_from_args(args)
    tuning.check_base(base)
    base.pop("methods", None)  # the shortcut reads --methods; each study tunes its own method
    # `kill` (SIGTERM) fails the current trial and removes its folder, as Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    for method in methods:
        study = tuning.tune(tuning.TuneSettings(
            method=method, base=base, trials=args.trials, root=args.results, name=args.study,
            seed=args.seed or 0, timeout=args.timeout, fixed=parse_fixed(args.fix),
            startup_trials=args.startup_trials, quiet=args.quiet, storage=args.storage,
            heartbeat=args.heartbeat,
        ))
        print(summary(study) + ("\n" if len(methods) > 1 else ""))
    return 0


def parse_fixed(assignments: list[str]) -> dict:
    """`--fix train.lr=0.001` pins one search parameter (its name as the search space gives it)."""
    fixed = {}
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise BenchError(f"--fix expects name=value, got '{assignment}'")
        fixed[key] = parse_scalar(raw)
    return fixed


def summary(study) -> str:
    """The best trial and the parameter importances, as printed after `tune`."""
    from tabulate import tabulate

    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    lines = [f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))]
    from bench.experiments import tuning

    params = tuning.best_params(study)
    if params is None:
        return "\n".join(lines + ["no complete trial yet"])
    best = study.best_trial
    lines += ["", f"best trial {best.number}: mean final validation score {best.value:.4f}", "",
              tabulate(sorted(params.items()), headers=["parameter", "value"], tablefmt="github")]
    found = tuning.importances(study)
    lines.append("")
    if isinstance(found, str):
        lines.append(found)
    else:
        lines.append(tabulate([(k, f"{v:.3f}") for k, v in found.items()],
                              headers=["parameter", "importance"], tablefmt="github"))
    return "\n".join(lines)
