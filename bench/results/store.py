"""The results store: one directory per run, one sub-directory per method.

    results/runs/<run-id>/config.json        the resolved configuration (rerun it with --config)
    results/runs/<run-id>/environment.json   seed, versions, device, commit; T1 cache keys, loss path
    results/runs/<run-id>/cache/             the shared T1 model when the T1 cache is off
    results/runs/<run-id>/methods/<M>/result.json   per step: scores of every seen task
    results/runs/<run-id>/methods/<M>/R.csv         the primary-metric matrix R[i][j]
    results/runs/<run-id>/methods/<M>/checkpoint.pt while the method is unfinished (and
                                                    checkpoint.prev.pt, the step before)
    results/runs/<run-id>/methods/<M>/fit.pt        in-task checkpoint of the step it is learning
                                                    (and fit.prev.pt), every few minutes
    results/runs/<run-id>/changes.json       settings changed on resume with --override
    results/runs/<run-id>/.lock              held (flock) while a process works in the run

Every file is written atomically, and a method's checkpoint carries its own result record,
so a run killed at any moment resumes from the last finished step. Checkpoints hold tensors
and plain data only (the method's state_dict, never the pickled object) and are read with
weights_only=True, so loading one can never run code (docs/security-loading.md). The lock is an OS file
lock, so a crashed or killed process never leaves it held.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.config import DEFAULT_ROOT
from bench.engine import distributed
from bench.errors import BenchError, WriteError
from bench.io import (UnreadableFile, load_torch_with_fallback, open_lock, probe_writable, read_json,
                      remove_with_previous, write_json, write_text, write_torch_keeping_previous)
from bench.results.names import is_safe_name, safe_name



@dataclass
class MethodRecord:
    method: str
    tasks: list[str]  # task names in training order
    metrics: dict[str, str]  # task name -> primary metric
    steps: list[dict] = field(default_factory=list)
    variants: dict[str, dict] = field(default_factory=dict)  # e.g. "Conure-": {task: metrics}
    complete: bool = False
    # how the scores rank candidates (bench/engine/protocols.py Protocol.record); {} in runs
    # made before protocols existed, which were all full ranking @5
    evaluation: dict = field(default_factory=dict)
    # the time-aware scenario (docs/scenarios.md): {"name": "time-aware", "later": [tasks with
    # later data]}; each step then lists in "later" the tasks it scored on their later data.
    # {} for every other run.
    scenario: dict = field(default_factory=dict)

    def matrix(self, metric: str | None = None) -> np.ndarray:
        """R[i][j]: task j's score after step ending at position i (NaN where not evaluated)."""
        n = len(self.tasks)
        R = np.full((n, n), np.nan)
        for step in self.steps:
            for name, scores in step["scores"].items():
                key = metric or self.metrics[name]
                R[step["row"], self.tasks.index(name)] = scores.get(key, np.nan)
        return R

    def matrix_frame(self, metric: str | None = None) -> pd.DataFrame:
        labels = [f"T{i + 1}" for i in range(len(self.tasks))]
        return pd.DataFrame(self.matrix(metric), index=[f"after {label}" for label in labels], columns=labels)

    @property
    def last_step(self) -> dict:
        return self.steps[-1] if self.steps else {}


class RunStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = None

    # --- creation and lookup ---------------------------------------------------------------
    @classmethod
    def create(cls, config: dict, root: Path = DEFAULT_ROOT, run_id: str | None = None) -> "RunStore":
        """A new run directory (made under its lock); refused if the run exists already. In a
        distributed run rank 0 makes it and every rank gets its id (and any error).

        The folder is made with one atomic mkdir: of two processes creating the same id at
        once exactly one makes it, and the other stops without touching it."""
        if run_id is not None:
            safe_name(run_id, "run id")
        run_id = safe_name(distributed.broadcast_object(run_id or new_run_id(config)), "run id")
        store = cls(Path(root) / "runs" / run_id)
        error = None
        if distributed.is_main():
            made = False
            try:
                try:
                    store.directory.parent.mkdir(parents=True, exist_ok=True)
                    store.directory.mkdir()
                    made = True
                except FileExistsError:
                    if (store.directory / "config.json").exists():
                        raise BenchError(f"run '{run_id}' exists already; resume it with --resume {run_id}") from None
                    raise BenchError(f"run '{run_id}': {store.directory} exists but holds no run (another process "
                                     "may be creating it); choose another --run-id") from None
                except OSError as failure:
                    raise WriteError(store.directory, failure) from None
                with store.locked():
                    write_json(store.directory / "config.json", config)
                    write_json(store.directory / "environment.json", environment(config))
            except BaseException as failure:
                if made:  # only the folder this process made, never another process's run
                    shutil.rmtree(store.directory, ignore_errors=True)
                if not isinstance(failure, BenchError):
                    raise
                error = str(failure)
        error = distributed.broadcast_object(error)
        if error:
            raise BenchError(error)
        return store

    @classmethod
    def open(cls, run_id: str, root: Path = DEFAULT_ROOT) -> "RunStore":
        """A stored run: a run id under <root>/runs, or the path of a run's folder. A folder's
        own name is its id wherever it goes (published/<id>), so it must be a valid id too."""
        if is_safe_name(run_id):
            candidates = [Path(run_id), Path(root) / "runs" / run_id]
        else:
            candidates = [Path(run_id) if is_safe_name(Path(run_id).name) else Path(run_id).resolve()]
        for directory in candidates:
            if (directory / "config.json").exists():
                safe_name(directory.name, f"run folder {str(run_id)!r}: its name")
                return cls(directory)
        raise BenchError(f"no run '{run_id}' under {Path(root) / 'runs'}")

    # --- the lock: one process works in a run at a time --------------------------------------
    def lock(self) -> "RunStore":
        """Take the run's lock (or fail at once if another process holds it), then check the
        folder takes writes, so neither a second process nor a read-only disk costs training."""
        if self._lock is not None or not distributed.is_main():
            return self  # in a distributed run, rank 0 holds the lock for all ranks
        path = self.directory / ".lock"
        try:
            handle = open_lock(path)
        except BlockingIOError:
            raise BenchError(f"run '{self.run_id}' is in use by another process (lock {path}); "
                             "wait for it to finish") from None
        self._lock = handle
        try:
            probe_writable(self.directory)
            self._remove_orphan_temporaries()
        except BaseException:
            self.unlock()
            raise
        return self

    def _remove_orphan_temporaries(self) -> None:
        """Half-written `.NAME.*.tmp` files of a process killed mid-write (kill -9): under the
        lock no other process is writing here, so every one is an orphan."""
        for path in self.directory.rglob(".*.tmp"):
            path.unlink(missing_ok=True)

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the file releases the flock
            self._lock = None

    @contextlib.contextmanager
    def locked(self):
        """Hold the lock for a block (a no-op if this store holds it already)."""
        held = self._lock is not None
        self.lock()
        try:
            yield self
        finally:
            if not held:
                self.unlock()

    def record_changes(self, config: dict, changes: dict[str, tuple[Any, Any]]) -> None:
        """Store the changed config and log what changed (resume with --override)."""
        path = self.directory / "changes.json"
        log = read_json(path) if path.exists() else []
        log.append({"time": _dt.datetime.now().isoformat(timespec="seconds"),
                    "changes": {key: {"stored": old, "given": new} for key, (old, new) in changes.items()}})
        write_json(path, log)
        write_json(self.directory / "config.json", config)
        write_json(self.directory / "environment.json", {**self.environment, "config_sections": config_digests(config)})

    @property
    def run_id(self) -> str:
        return self.directory.name

    @property
    def config(self) -> dict:
        path = self.directory / "config.json"
        try:
            return read_json(path)
        except ValueError as error:
            raise BenchError(f"{path}: unreadable run config ({error})") from None

    def stored_config(self) -> dict:
        """config.json as the run wrote it: a section missing or edited since (which would
        resume with the preset's defaults, or with settings the finished steps never had) is
        an error naming it. Runs made before the digests were recorded are not checked."""
        config, recorded = self.config, self.environment.get("config_sections") or {}
        missing = [key for key in recorded if key not in config]
        edited = [key for key in recorded if key in config and config_digests({key: config[key]})[key] != recorded[key]]
        if missing or edited:
            listed = "; ".join(part for part in (f"missing: {', '.join(missing)}" if missing else "",
                                                 f"edited: {', '.join(edited)}" if edited else "") if part)
            raise BenchError(f"{self.directory / 'config.json'}: not as the run stored it ({listed}); restore it, "
                             f"or change settings with --resume {self.run_id} --override --set KEY=VALUE")
        return config

    @property
    def environment(self) -> dict:
        path = self.directory / "environment.json"
        return read_json(path) if path.exists() else {}

    def update_environment(self, section: str, values: dict) -> None:
        """Add what a run learns while it works (its T1 cache keys, the loss path that ran) to
        environment.json's `section`; rank 0 writes, under the run's lock."""
        if not distributed.is_main():
            return
        environment = self.environment
        environment[section] = {**environment.get(section, {}), **values}
        write_json(self.directory / "environment.json", environment)

    @property
    def cache_dir(self) -> Path:
        return self.directory / "cache"

    def method_dir(self, method: str) -> Path:
        return self.directory / "methods" / safe_name(method, "method row")

    # --- per-method records -------------------------------------------------------------------
    def save_record(self, record: MethodRecord) -> None:
        directory = self.method_dir(record.method)
        write_json(directory / "result.json", asdict(record))
        write_text(directory / "R.csv", record.matrix_frame().to_csv(float_format="%.6f"))

    def load_record(self, method: str) -> MethodRecord | None:
        path = self.method_dir(method) / "result.json"
        if not path.exists():
            return None
        try:
            return MethodRecord(**read_json(path))
        except (TypeError, ValueError) as error:
            raise BenchError(f"{path}: unreadable result ({error})") from None

    def records(self) -> list[MethodRecord]:
        methods_dir = self.directory / "methods"
        if not methods_dir.exists():
            return []
        order = self.config.get("methods", [])
        names = sorted((p.name for p in methods_dir.iterdir() if (p / "result.json").exists()),
                       key=lambda n: order.index(n) if n in order else len(order))
        return [record for name in names if (record := self.load_record(name))]

    def save_checkpoint(self, method_name: str, payload: dict[str, Any]) -> None:
        """The method after a finished step; the one before is kept as checkpoint.prev.pt."""
        write_torch_keeping_previous(self.method_dir(method_name) / "checkpoint.pt", payload)

    def load_checkpoint(self, method_name: str, device: torch.device) -> dict | None:
        """The latest step checkpoint, or the previous one when the latest is damaged."""
        try:
            return load_torch_with_fallback(self.method_dir(method_name) / "checkpoint.pt", device)
        except UnreadableFile as error:
            raise BenchError(f"{error.path}: unreadable checkpoint ({error.reason}); "
                             f"{self.restart_hint(method_name)}") from None

    def restart_hint(self, method_name: str) -> str:
        """How to go on from a step checkpoint that cannot be used (damaged, or written in the
        pickled format of bench before issue 22, which is never loaded since it could run code)."""
        directory = self.method_dir(method_name)
        return (f"to train {method_name} again from its start, delete {directory / 'checkpoint.pt'} and "
                f"{directory / 'checkpoint.prev.pt'} and --resume again, or start a new run "
                "(without --resume, or with a new --run-id)")

    def drop_checkpoint(self, method_name: str) -> None:
        remove_with_previous(self.method_dir(method_name) / "checkpoint.pt")
        remove_with_previous(self.fit_checkpoint_path(method_name))

    def fit_checkpoint_path(self, method_name: str) -> Path:
        """The in-task checkpoint of the step a method is learning (bench/engine/checkpoints.py)."""
        return self.method_dir(method_name) / "fit.pt"


def new_run_id(config: dict) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{config.get('dataset', 'run')}-s{config.get('seed', 0)}-{secrets.token_hex(2)}"


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5)
        return result.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(config: dict) -> dict:
    return {
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "seed": config.get("seed"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "commit": git_commit(),
        "host_cpus": os.cpu_count(),
        "world_size": distributed.world_size(),  # processes of a torchrun data-parallel run
        "config_sections": config_digests(config),  # `--resume` refuses a config.json edited since
    }


def config_digests(config: dict) -> dict[str, str]:
    """A short hash of each top-level section of a run config."""
    return {key: hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]
            for key, value in config.items()}
