"""Hyperparameter search with Optuna, scored on the validation split only.

A trial is an ordinary run of one method with `eval_split="valid"`, so R is filled with
validation scores and the test split is never evaluated. The objective is the mean final
validation score over tasks; after every task step the mean over the tasks seen so far
is reported, and a MedianPruner stops trials that fall behind.

Where studies live:

    results/studies/<dataset>-<method>.db   what `bench tune` writes (yours; not committed)
    results/tuning/<dataset>-<method>.db    the published reference studies (committed, read-only)

`bench tune --storage URL` puts a study in any Optuna storage instead (sqlite:///file.db,
postgresql://..., mysql://..., or a journal file `journal:PATH` / `PATH.log`), so workers on
several machines share one study: each worker starts a trial only while the study holds fewer
than `--trials` finished plus running ones, and a worker whose trial would be one too many
(two workers started at the same instant) drops it, so together they finish exactly
`--trials`. Relational storages run Optuna's heartbeat: a killed worker's trial is failed
after the grace period and retried with the same parameters (RetryFailedTrialCallback).
Optuna's journal storage has no heartbeat; there a worker fails the RUNNING trials of dead
processes on its own host, so use a relational storage for workers on several machines.

`bench run --use-tuned` reads the best trial back from results/studies/ (or `--use-tuned
published`, or a storage URL). Trials share the T1 model in `<study>.cache/` beside the study.

Search spaces are declared by the methods (`ContinualMethod.search_space(trial)`): a
dict whose keys without a dot are fields of the method's `Options` and whose dotted keys
are run settings as for `--set`; `train.*` keys become the method's own TrainConfig
(`method_train`), so a tuned lr never changes the shared T1 model of the other methods.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import build_run_config, set_path
from bench.errors import BenchError, DivergenceError
from bench.redaction import redact, scrub
from bench.engine.metrics import average_performance
from bench.registry import METHODS

TUNING_DIR = "tuning"  # the published reference studies: read by `run --use-tuned published` only
STUDIES_DIR = "studies"  # the studies `bench tune` writes by default
TRIAL_PREFIX = "bench-trial-"  # temporary run folders of trials: bench-trial-<pid>-<random>
DEFAULT_HEARTBEAT = 60  # seconds; a trial without a heartbeat for twice that is failed and retried
MAX_RETRY = 3  # a trial that keeps killing its worker is not retried forever


def study_name(dataset: str, method: str) -> str:
    return f"{dataset}-{method}"


def storage_path(root: Path, name: str, published: bool = False) -> Path:
    """The SQLite file of a study: yours under <root>/studies/, the published one under <root>/tuning/."""
    return Path(root) / (TUNING_DIR if published else STUDIES_DIR) / f"{name}.db"


# --- storages --------------------------------------------------------------------------------

def storage_url(spec: str | Path | None, root: Path, name: str) -> str:
    """The Optuna storage a `--storage` value names: a URL as it is, a .db/.sqlite file as
    SQLite, `journal:PATH` or a .log file as a journal; None is <root>/studies/<name>.db."""
    spec = str(storage_path(root, name) if spec is None else spec)
    if spec.startswith("journal:") or "://" in spec:
        return spec
    if spec.endswith(".log"):
        return f"journal:{spec}"
    if spec.endswith((".db", ".sqlite", ".sqlite3")):
        return f"sqlite:///{spec}"
    raise BenchError(f"storage '{redact(spec)}': expected a database URL (sqlite:///FILE, postgresql://..., "
                     "mysql://...), a .db file, or a journal file (journal:PATH or PATH.log)")


def local_file(url: str) -> Path | None:
    """The file behind a SQLite or journal storage; None for a database server. A SQLite URL
    is parsed as SQLAlchemy reads it, so its query (`?timeout=5`) is no part of the path."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):])
    if url.startswith("sqlite:"):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            database = make_url(url).database
        except (ArgumentError, ValueError):  # open_storage reports it
            return None
        return Path(database) if database and database != ":memory:" else None
    return None


def _retry_callback():
    """Optuna renamed RetryFailedTrialCallback to RetryHeartbeatStaleTrialCallback (4.9)."""
    optuna = _optuna()
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    return cls(max_retry=MAX_RETRY)


# The package that provides each database driver SQLAlchemy imports. SQLAlchemy 2.1 maps
# postgresql:// to psycopg (3); postgresql+psycopg2:// and mysql:// name the others.
DRIVER_PACKAGES = {
    "psycopg": '"psycopg[binary]" (or pip install "userrep-bench[postgres]")',
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
}


def missing_driver(error: ImportError) -> str:
    """What to install for a database driver SQLAlchemy could not import (Optuna re-raises
    SQLAlchemy's ImportError with a message of its own: the module is named further down)."""
    cause: BaseException | None = error
    while cause is not None:
        module = (getattr(cause, "name", None) or "").split(".")[0]
        if module in DRIVER_PACKAGES:
            return f"its database driver '{module}' is not installed: pip install {DRIVER_PACKAGES[module]}"
        cause = cause.__cause__ or cause.__context__
    return f"{error} (install the database driver)"


def open_storage(url: str, heartbeat: int | None = None):
    """An Optuna storage; with `heartbeat` (seconds) a relational one fails the trials of
    killed workers after 2 x heartbeat and queues them again with the same parameters."""
    optuna = _optuna()
    if not url.startswith("journal:"):
        readable_url(url)
    path = local_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if url.startswith("journal:"):
            journal = getattr(optuna.storages, "journal", None)
            backend = journal.JournalFileBackend if journal is not None else optuna.storages.JournalFileStorage
            return optuna.storages.JournalStorage(backend(str(path)))
        kwargs: dict[str, Any] = {}
        if heartbeat is not None:
            parameters = inspect.signature(optuna.storages.RDBStorage).parameters
            callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in parameters
                        else "failed_trial_callback")
            kwargs = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat, callback: _retry_callback()}
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)
    except ImportError as error:
        raise BenchError(scrub(f"storage {redact(url)}: {missing_driver(error)}", url)) from None
    except Exception as error:  # sqlalchemy's URL, connection and schema errors
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchError(scrub(f"storage {redact(url)}: {message}", url)) from None


def readable_url(url: str) -> None:
    """A URL SQLAlchemy cannot parse is one error that quotes none of it: its parser's message
    may hold any piece of the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError, TypeError):
        raise BenchError(f"storage {redact(url)}: not a database URL (dialect://user:password@host:port/"
                         "database; percent-encode @ : / % in the password, e.g. @ as %40)") from None


def is_published(url: str, root: Path) -> bool:
    path = local_file(url)
    published = (Path(root) / TUNING_DIR).resolve()
    return path is not None and published in path.resolve().parents


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
    storage: str | None = None  # --storage: an Optuna storage URL or file; None: <root>/studies/<name>.db
    heartbeat: int = DEFAULT_HEARTBEAT


class SurplusTrial(Exception):
    """A trial started while the study already had enough finished and running ones."""


def _optuna():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    return optuna


def check_base(base: dict) -> None:
    """Bad base settings, data or device are one error before a study file is made."""
    from bench.experiments.runner import prepare

    prepare(build_run_config(base))


def open_study(storage: str | Path, name: str, create: bool = False, startup_trials: int = 5,
               heartbeat: int | None = None):
    """A study in a storage URL or file (see `storage_url`); `create=False` only reads it."""
    optuna = _optuna()
    url = storage_url(storage, Path("."), name)
    path = local_file(url)
    if not create and path is not None and not path.exists():
        raise BenchError(f"no tuning study '{name}' at {path}")
    for attempt in range(3):  # workers started at once may race to create the tables
        try:
            store = open_storage(url, heartbeat)
            break
        except BenchError:
            if not create or attempt == 2:
                raise
            time.sleep(1 + attempt)
    if not create:
        try:
            return optuna.load_study(study_name=name, storage=store)
        except KeyError:
            raise BenchError(f"no tuning study '{name}' in {redact(url)}") from None
    return optuna.create_study(
        study_name=name, storage=store, direction="maximize", load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1),
    )


def make_objective(settings: TuneSettings):
    optuna = _optuna()
    from optuna.trial import TrialState
    from bench.experiments.runner import run
    from bench.results.store import RunStore

    method_cls = METHODS.get(settings.method)
    seeded = False

    def objective(trial) -> float:
        nonlocal seeded
        ahead = [t for t in trial.study.get_trials(deepcopy=False)
                 if t.number < trial.number and (t.state is TrialState.RUNNING or counted(t))]
        if len(ahead) >= settings.trials:  # another worker took the last slot at the same instant
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number} is one too many for --trials {settings.trials}")
        if not seeded:  # seed from the first trial's number: one worker reproduces, two differ
            trial.study.sampler, seeded = make_sampler(settings, trial.number), True
        trial.set_user_attr("worker", worker_id(trial.number))
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

        # bench-trial-<pid>-*: a later `tune` removes the folders of killed processes
        with tempfile.TemporaryDirectory(prefix=f"{TRIAL_PREFIX}{os.getpid()}-") as tmp:
            store = RunStore.create(config.to_dict(), Path(tmp), f"trial-{trial.number}")
            shared = t1_cache(settings, config)
            shared.mkdir(parents=True, exist_ok=True)
            store.cache_dir.symlink_to(shared.resolve(), target_is_directory=True)
            try:
                records = run(config, store, progress=False, on_step=report)
            except DivergenceError as error:  # Optuna fails a trial whose value is NaN: never a score
                trial.set_user_attr("diverged", str(error))
                if not settings.quiet:
                    print(f"trial {trial.number}: diverged: {error}", file=sys.stderr)
                return math.nan
        R = records[0].matrix()
        trial.set_user_attr("valid_R", [[None if math.isnan(v) else v for v in row] for row in R.tolist()])
        return average_performance(R)

    return objective


def make_sampler(settings: TuneSettings, seed_offset: int):
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler(seed=(settings.seed + seed_offset) % 2**32)  # numpy's range
    if settings.fixed:
        sampler = optuna.samplers.PartialFixedSampler(settings.fixed, sampler)
    return sampler


def t1_cache(settings: TuneSettings, config) -> Path:
    """Where trials share the T1 model: it depends only on the run-wide settings, not on the
    method's own (searched) ones, so it is trained once per distinct setting, not per trial."""
    keys = ("dataset", "data_dir", "dataset_options", "order", "seed", "backbone", "train")
    data = config.to_dict()
    digest = hashlib.sha1(json.dumps({k: data[k] for k in keys}, sort_keys=True, default=str).encode())
    name = settings.name or study_name(data["dataset"], settings.method)
    return Path(settings.root) / STUDIES_DIR / f"{name}.cache" / digest.hexdigest()[:12]


def tune(settings: TuneSettings):
    """Run trials until the study holds `settings.trials` finished (complete or pruned) ones,
    together with any other workers on the same storage."""
    method = METHODS.canonical(settings.method)
    settings.method = method
    dataset = settings.base.get("dataset", "synthetic")
    name = settings.name or study_name(dataset, method)
    url = storage_url(settings.storage, settings.root, name)
    if is_published(url, settings.root):
        raise BenchError(f"{local_file(url)} is a published reference study and stays as committed; "
                         "tune into your own storage (the default is results/studies/)")
    clean_stale_trial_dirs()
    study = open_study(url, name, create=True, startup_trials=settings.startup_trials,
                       heartbeat=settings.heartbeat)
    previous = study.user_attrs.get("method")
    if previous is not None and previous != method:
        raise BenchError(f"study '{name}' tunes {previous}, not {method}; choose another --study")
    study.set_user_attr("method", method)
    study.set_user_attr("dataset", dataset)
    finished = _finished(study)
    print(f"study {name} ({redact(url)}): {len(finished)} finished trial(s), "
          f"running up to {max(0, settings.trials - len(finished))} more", file=sys.stderr)
    study.sampler = make_sampler(settings, len(study.trials))  # replaced at the first trial
    run_trials(study, settings, make_objective(settings))
    return study


def run_trials(study, settings: TuneSettings, objective) -> None:
    """Start one trial at a time while finished + running trials stay below the target; wait
    for the other workers' trials (a killed one is failed by the heartbeat and retried here)."""
    optuna = _optuna()
    from optuna.trial import TrialState

    deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
    callbacks = [] if settings.quiet else [_print_trial]
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        fail_dead_local_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = sum(counted(t) for t in trials)
        running = sum(t.state is TrialState.RUNNING for t in trials)
        if finished >= settings.trials:
            return
        if finished + running >= settings.trials:
            time.sleep(min(5, settings.heartbeat))  # the other workers' trials fill the study
            continue
        study.optimize(objective, n_trials=1, callbacks=callbacks, catch=(SurplusTrial,))


def counted(trial) -> bool:
    """A trial that used its share of --trials: complete, pruned, or failed by divergence (a
    diverged trial is not retried: the same parameters would diverge again)."""
    from optuna.trial import TrialState

    return (trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (trial.state is TrialState.FAIL and "diverged" in trial.user_attrs))


def fail_dead_local_trials(study) -> None:
    """Fail (and queue again) RUNNING trials of dead processes on this host: the journal
    storage has no heartbeat, and a relational one only fails them after the grace period."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a retry carries its failed original's attribute until its worker writes its own
        owner, _, number = str(trial.user_attrs.get("worker", "")).rpartition(":")
        machine, _, pid = owner.rpartition(":")
        if (number == str(trial.number) and machine == _machine() and pid.isdigit()
                and int(pid) != os.getpid() and not _alive(int(pid))):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError):
                continue  # another worker failed it first
            _retry_callback()(study, study.get_trials(deepcopy=False)[trial.number])


def clean_stale_trial_dirs() -> None:
    """Remove the temporary trial folders of `tune` processes that were killed (kill -9)."""
    for path in Path(tempfile.gettempdir()).glob(f"{TRIAL_PREFIX}*"):
        pid = path.name[len(TRIAL_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def worker_id(trial_number: int, pid: int | None = None) -> str:
    """Who runs a trial: <host>/<pid namespace>:<pid>:<trial number>."""
    return f"{_machine()}:{os.getpid() if pid is None else pid}:{trial_number}"


def _machine() -> str:
    """Host name and PID namespace: containers that share a host name see different pids."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finished(study) -> list:
    return [trial for trial in study.get_trials(deepcopy=False) if counted(trial)]


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
        with warnings.catch_warnings():  # a few trials give equal importances, which it warns about
            warnings.simplefilter("ignore", UserWarning)
            return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError) as error:
        return f"parameter importances unavailable: {error}"


PUBLISHED = "published"  # `run --use-tuned published`


def apply_tuned(data: dict, root: Path, source: str | None = None) -> dict:
    """`run --use-tuned [SOURCE]`: each method's best parameters from its study <dataset>-<method>:
    in <root>/studies/ (what `bench tune` wrote; the default), in the published reference
    studies <root>/tuning/ (`published`), or in a storage URL or file (as `tune --storage`).

    Method options and train settings are per method; other run settings (backbone.*)
    are shared, so methods whose studies disagree on them are an error.
    """
    from bench.registry import resolve_methods

    dataset = data.get("dataset", "synthetic")
    applied, shared = [], {}
    for method in resolve_methods(data.get("methods", ["all"])):
        name = study_name(dataset, method)
        where = (storage_path(root, name, published=source == PUBLISHED) if source in (None, PUBLISHED)
                 else storage_url(source, root, name))
        try:
            study = open_study(where, name)
        except BenchError as error:
            print(f"--use-tuned: {error}; keeping the defaults of {method}", file=sys.stderr)
            continue
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
        where = {None: Path(root) / STUDIES_DIR, PUBLISHED: Path(root) / TUNING_DIR}.get(source) or redact(source)
        hint = "; `--use-tuned published` reads the committed reference studies" if source is None else ""
        raise BenchError(f"--use-tuned: no tuning study for these methods in {where}{hint}")
    return data
