"""Hyperparameter search with Optuna, scored on the validation split only.

A trial is an ordinary run of one method with `eval_split="valid"`, so R is filled with
validation scores and the test split is never evaluated. The objective is the mean final
validation score over tasks; after every task step the mean over the tasks seen so far
is reported, and a MedianPruner stops trials that fall behind. Studies live in SQLite,

    results/tuning/<dataset>-<method>.db

so an interrupted `bench tune` resumes where it stopped, and `bench run --use-tuned`
reads the best trial back. Trials share the T1 model in results/tuning/<study>.cache/.

Search spaces are declared by the methods (`ContinualMethod.search_space(trial)`): a
dict whose keys without a dot are fields of the method's `Options` and whose dotted keys
are run settings as for `--set`; `train.*` keys become the method's own TrainConfig
(`method_train`), so a tuned lr never changes the shared T1 model of the other methods.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import build_run_config, set_path
from bench.errors import BenchError
from bench.engine.metrics import average_performance
from bench.registry import METHODS

TUNING_DIR = "tuning"


def study_name(dataset: str, method: str) -> str:
    return f"{dataset}-{method}"


def storage_path(root: Path, name: str) -> Path:
    return Path(root) / TUNING_DIR / f"{name}.db"


def apply_params(data: dict, method: str, params: dict[str, Any]) -> dict:
    """Write a search-space dict into a run-config dict (see the module docstring)."""
    for key, value in params.items():
        if "." not in key:
            data.setdefault("method_options", {}).setdefault(method, {})[key] = value
        elif key.startswith("train."):
            data.setdefault("method_train", {}).setdefault(method, {})[key.split(".", 1)[1]] = value
        else:
            set_path(data, key, value)
    return data


# --- the study -------------------------------------------------------------------------------

@dataclass
class TuneSettings:
    method: str
    base: dict  # run-config dict (dataset, --set overrides, ...)
    trials: int  # total finished trials wanted in the study
    root: Path
    name: str | None = None
    seed: int = 0
    timeout: float | None = None
    fixed: dict[str, Any] | None = None  # search parameters pinned by --fix
    startup_trials: int = 5
    quiet: bool = False


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def check_base(base: dict) -> None:
    """Bad base settings, data or device are one error before a study file is made."""
    from bench.experiments.runner import prepare

    prepare(build_run_config(base))


def open_study(path: Path, name: str, create: bool, startup_trials: int = 5):
    optuna = _optuna()
    if not create and not path.exists():
        raise BenchError(f"no tuning study '{name}' at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        study_name=name, storage=f"sqlite:///{path}", direction="maximize", load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1),
    )


def make_objective(settings: TuneSettings):
    optuna = _optuna()
    from bench.experiments.runner import run
    from bench.results.store import RunStore

    method_cls = METHODS.get(settings.method)

    def objective(trial) -> float:
        params = method_cls.search_space(trial)
        trial.set_user_attr("params", params)
        data = apply_params(copy.deepcopy(settings.base), settings.method, params)
        data.update(methods=[settings.method], eval_split="valid")
        config = build_run_config(data)

        def report(_method: str, record) -> None:
            row = record.matrix()[record.steps[-1]["row"]]
            step = len(record.steps) - 1
            trial.report(float(np.nanmean(row)), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after step {step + 1}")

        with tempfile.TemporaryDirectory(prefix="bench-trial-") as tmp:
            store = RunStore.create(config.to_dict(), Path(tmp), f"trial-{trial.number}")
            shared = t1_cache(settings, config)
            shared.mkdir(parents=True, exist_ok=True)
            store.cache_dir.symlink_to(shared.resolve(), target_is_directory=True)
            records = run(config, store, progress=False, on_step=report)
        R = records[0].matrix()
        trial.set_user_attr("valid_R", [[None if math.isnan(v) else v for v in row] for row in R.tolist()])
        return average_performance(R)

    return objective


def t1_cache(settings: TuneSettings, config) -> Path:
    """Where trials share the T1 model: it depends only on the run-wide settings, not on the
    method's own (searched) ones, so it is trained once per distinct setting, not per trial."""
    keys = ("dataset", "data_dir", "dataset_options", "order", "seed", "backbone", "train")
    data = config.to_dict()
    digest = hashlib.sha1(json.dumps({k: data[k] for k in keys}, sort_keys=True, default=str).encode())
    name = settings.name or study_name(data["dataset"], settings.method)
    return Path(settings.root) / TUNING_DIR / f"{name}.cache" / digest.hexdigest()[:12]


def tune(settings: TuneSettings):
    """Run trials until the study holds `settings.trials` finished (complete or pruned) ones."""
    optuna = _optuna()
    method = METHODS.canonical(settings.method)
    settings.method = method
    dataset = settings.base.get("dataset", "synthetic")
    name = settings.name or study_name(dataset, method)
    path = storage_path(settings.root, name)
    study = open_study(path, name, create=True, startup_trials=settings.startup_trials)
    previous = study.user_attrs.get("method")
    if previous is not None and previous != method:
        raise BenchError(f"study '{name}' tunes {previous}, not {method}; choose another --study")
    study.set_user_attr("method", method)
    study.set_user_attr("dataset", dataset)
    finished = _finished(study)
    remaining = settings.trials - len(finished)
    print(f"study {name} ({path}): {len(finished)} finished trial(s), running {max(0, remaining)} more",
          file=sys.stderr)
    if remaining > 0:
        sampler = optuna.samplers.TPESampler(seed=settings.seed + len(study.trials))
        if settings.fixed:
            sampler = optuna.samplers.PartialFixedSampler(settings.fixed, sampler)
        study.sampler = sampler
        study.optimize(make_objective(settings), n_trials=remaining, timeout=settings.timeout,
                       callbacks=[] if settings.quiet else [_print_trial])
    return study


def _finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def _print_trial(study, trial) -> None:
    value = "–" if trial.value is None else f"{trial.value:.4f}"
    print(f"trial {trial.number}: {trial.state.name.lower()} {value} {trial.params}", file=sys.stderr)


def best_params(study) -> dict[str, Any] | None:
    """The search-space dict of the best complete trial, or None when no trial completed."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    return best.user_attrs.get("params", best.params)


def importances(study) -> dict[str, float] | str:
    """fANOVA importances, or the reason they cannot be computed yet."""
    optuna = _optuna()
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"parameter importances need at least 2 complete trials (have {len(complete)})"
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as error:
        return f"parameter importances unavailable: {error}"


def apply_tuned(data: dict, root: Path) -> dict:
    """`run --use-tuned`: each method's best parameters from results/tuning/<dataset>-<method>.db.

    Method options and train settings are per method; other run settings (backbone.*)
    are shared, so methods whose studies disagree on them are an error.
    """
    from bench.registry import resolve_methods

    dataset = data.get("dataset", "synthetic")
    applied, shared = [], {}
    for method in resolve_methods(data.get("methods", ["all"])):
        path = storage_path(root, study_name(dataset, method))
        if not path.exists():
            print(f"--use-tuned: no study for {method} ({path}); keeping its defaults", file=sys.stderr)
            continue
        study = open_study(path, study_name(dataset, method), create=False)
        params = best_params(study)
        if params is None:
            print(f"--use-tuned: study of {method} has no complete trial; keeping its defaults", file=sys.stderr)
            continue
        for key, value in params.items():
            if "." in key and not key.startswith("train."):
                if key in shared and shared[key][1] != value:
                    raise BenchError(f"--use-tuned: {method} and {shared[key][0]} were tuned with different "
                                     f"{key} ({value} vs {shared[key][1]}), which all methods share")
                shared[key] = (method, value)
        apply_params(data, method, params)
        data.setdefault("tuned_trials", {})[method] = len(_finished(study))  # the leaderboard's "N trials"
        applied.append(method)
        print(f"--use-tuned: {method} <- {params}", file=sys.stderr)
    if not applied:
        raise BenchError(f"--use-tuned: no tuning study for these methods under {Path(root) / TUNING_DIR}")
    return data
