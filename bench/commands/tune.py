"""`tune`: an Optuna study of one method's hyperparameters on the validation split."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from bench import tuning
from bench.commands.common import add_results_argument
from bench.commands.run import config_from_args

NAME = "tune"
HELP = "search a method's hyperparameters with Optuna (validation split only; resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="the method to tune")
    parser.add_argument("--dataset", help="dataset adapter (default: synthetic)")
    parser.add_argument("--data-dir", help="directory holding the dataset's files")
    parser.add_argument("--trials", type=int, default=50,
                        help="finished trials wanted in the study; a rerun only adds the missing ones (default: 50)")
    parser.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    parser.add_argument("--study", help="study name (default: <dataset>-<method>, which run --use-tuned reads)")
    parser.add_argument("--seed", type=int, help="seed of the runs and of the sampler (default: 0)")
    parser.add_argument("--epochs", type=int, help="maximum epochs per task of every trial")
    parser.add_argument("--config", help="JSON or TOML file of base settings")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a base setting (searched parameters take precedence; see --fix)")
    parser.add_argument("--fix", action="append", default=[], metavar="NAME=VALUE",
                        help="pin one searched parameter, e.g. --fix train.batch_size=128 (repeatable)")
    parser.add_argument("--startup-trials", type=int, default=5,
                        help="trials never pruned while the median builds up (default: 5)")
    parser.add_argument("--quiet", action="store_true", help="no line per finished trial")
    add_results_argument(parser)


def execute(args: argparse.Namespace) -> int:
    args.methods, args.order, args.device, args.use_tuned = None, None, None, False
    base = config_from_args(args)
    study = tuning.tune(tuning.TuneSettings(
        method=args.method, base=base, trials=args.trials, root=args.results, name=args.study,
        seed=args.seed or 0, timeout=args.timeout, fixed=tuning.parse_fixed(args.fix),
        startup_trials=args.startup_trials, quiet=args.quiet,
    ))
    print(summary(study))
    return 0


def summary(study) -> str:
    """The best trial and the parameter importances, as printed after `tune`."""
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    lines = [f"study {study.study_name}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))]
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
