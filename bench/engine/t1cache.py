"""Content-addressed cache of trained first-task (T1) models, shared by runs and processes.

The papers start most methods from one T1 model, and a grid (`bench grid`: one
process per method and seed) would otherwise train that model once per process. An entry is
named by a hash over everything that decides the trained weights: the task's data (a hash of
its train and validation arrays, so options and split are covered), the item count, the
backbone, the first task's train schedule, the seed, the device type, torch's version, the
data-parallel world size, the TF32 switches, which exact-loss path runs (fused or chunked),
the source of the modules that train it, and
whatever the caller adds (TERACON's masked T1 adds its own options and the RNG state it
starts from).

    <root>/<key>.pt     torch.save of {"model", "log", "rng", "meta"}
    <root>/<key>.json   {"sha256": of the .pt, "meta"}; written last, so it marks a complete entry
    <root>/<key>.lock   flock: the one process that trains an entry holds it; the others wait

The root is $BENCH_T1_CACHE, else $BENCH_DATA/cache/t1 (~/.cache/bench/cache/t1), so the
processes of a grid, tune workers and torchrun ranks find the same entries;
BENCH_T1_CACHE=off (or `bench run --no-t1-cache`) turns the cache off. A damaged entry (a
checksum that does not match, a file that does not load as tensors and plain data) is named
in one warning and trained again, never used and never run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.engine import distributed, softmax
from bench.io import file_hash, load_failure, load_tensors, open_lock, read_json, write_json, write_torch

FORMAT_VERSION = 1
OFF = ("off", "0", "false", "no", "none")
# Modules whose code shapes a trained T1 model: editing one gives new keys.
_CODE = ("backbone", "training", "objectives", "softmax", "context", "t1cache")


def default_root() -> Path | None:
    """$BENCH_T1_CACHE (a folder, or "off"), else the data root's cache/t1; None when off."""
    from bench.datasets.cache import data_root

    value = os.environ.get("BENCH_T1_CACHE", "").strip()
    if value.lower() in OFF:
        return None
    return Path(value) if value else data_root() / "cache" / "t1"


def disable() -> None:
    """`--no-t1-cache`: off for this process and the ones it starts (tune workers)."""
    os.environ["BENCH_T1_CACHE"] = "off"


def array_digest(*arrays: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def task_fingerprint(task) -> str:
    """A hash of what T1 training reads: name, kind, classes, train and validation arrays."""
    cached = getattr(task, "_t1_fingerprint", None)
    if cached is None:
        cached = f"{task.name}|{task.kind.value}|{task.output_size}|" + array_digest(
            task.train.inputs, task.train.targets, task.valid.inputs, task.valid.targets)
        try:
            task._t1_fingerprint = cached  # hashing TTL's arrays takes a second: once per task
        except AttributeError:
            pass
    return cached


def code_fingerprint(extra: tuple[str, ...] = ()) -> str:
    import bench.engine as engine

    digest = hashlib.blake2b(digest_size=8)
    for path in [Path(engine.__file__).parent / f"{name}.py" for name in _CODE] + [Path(p) for p in extra]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def backbone_source(backbone) -> tuple[str, ...]:
    """The file that defines the configured backbone: editing it gives new keys."""
    from bench.engine.backbone import backbone_class

    return (sys.modules[backbone_class(backbone).__module__].__file__,)


def rng_digest() -> str:
    """The global RNG state a training starts from (for T1s not trained under a fixed seed)."""
    states = [torch.get_rng_state().numpy()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += [state.numpy() for state in torch.cuda.get_rng_state_all()]
    return array_digest(*states)


def entry_key(kind: str, task, n_items: int, backbone, train, seed: int, device: torch.device,
              extra: dict | None = None, code: tuple[str, ...] = ()) -> tuple[str, dict]:
    """The entry's name and the settings it hashes (kept in the entry for a reader); the
    backbone fields its backbone does not read are left out (backbone.canonical)."""
    from bench.engine.backbone import canonical

    backbone = canonical(backbone)
    meta = {
        "format": FORMAT_VERSION, "kind": kind, "task": task_fingerprint(task), "n_items": n_items,
        "backbone": dataclasses.asdict(backbone), "train": dataclasses.asdict(train), "seed": seed,
        "device": device.type, "torch": str(torch.__version__), "world_size": distributed.world_size(),
        "tf32": [torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32],
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "exact_loss": softmax.exact_loss_path(device) if train.loss == "full" else "sampled",
        "code": code_fingerprint(code + backbone_source(backbone)), "extra": extra or {},
    }
    text = json.dumps(meta, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:24]}", meta


def note(message: str) -> None:
    """One line on stderr, also in --quiet logs: a grid's logs say which process trained T1."""
    if distributed.is_main():
        print(f"t1-cache: {message}", file=sys.stderr, flush=True)


def damaged(path: Path, error: BaseException) -> None:
    reason = load_failure(error)
    note(f"warning: damaged entry {path} ({reason}); training it again")
    return None


def load_model_file(path: Path, device: torch.device) -> dict | None:
    """A stored T1 model (an entry, or a run's own copy), or None after one line naming a
    damaged file (truncated by a full disk, say): it is trained again, never used. Read as
    tensors and plain data only: a file holding other Python objects (a planted pickle) is
    damaged too, never run, whatever its .json's checksum says (who can write the one can
    write the other)."""
    try:
        entry = load_tensors(path, map_location=device)
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), dict):
            raise ValueError("not a stored T1 model")
        return entry
    except Exception as error:  # noqa: BLE001 - any damage means: train again
        return damaged(path, error)


@dataclass
class Outcome:
    key: str
    hit: bool
    path: str | None  # None with the cache off

    def record(self) -> dict:
        return {"key": self.key, "hit": self.hit, "path": self.path}


class T1Cache:
    """Load-or-train of one entry at a time, under the entry's lock."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def paths(self, key: str) -> tuple[Path, Path, Path]:
        return self.root / f"{key}.pt", self.root / f"{key}.json", self.root / f"{key}.lock"

    def has(self, key: str) -> bool:
        """Whether a complete entry is there (not checked: `load` checks)."""
        return self.paths(key)[1].exists()

    def load(self, key: str, device: torch.device) -> dict | None:
        """The entry, or None if there is none; a damaged one is reported and ignored."""
        data, index, _ = self.paths(key)
        if not index.exists():
            return None  # absent, or killed before it was complete
        try:
            expected = read_json(index)["sha256"]
            actual = file_hash(data)
            if actual != expected:
                raise ValueError(f"checksum {actual[:12]} != {expected[:12]}")
        except Exception as error:  # noqa: BLE001 - any damage means: train again
            return damaged(data, error)
        return load_model_file(data, device)

    def store(self, key: str, entry: dict) -> Path:
        data, index, _ = self.paths(key)
        write_torch(data, entry)
        write_json(index, {"sha256": file_hash(data), "meta": entry.get("meta", {})})
        return data

    def load_or_train(self, key: str, meta: dict, device: torch.device,
                      train: Callable[[], dict]) -> tuple[dict, Outcome]:
        """The entry `key`, trained by `train()` (which returns the entry) if no valid one exists.

        One process at a time holds the entry's lock, so of several processes asking for the
        same entry exactly one trains it and the others load it. In a torchrun job rank 0
        decides for all ranks (every rank trains, in lockstep, or every rank loads).
        """
        data, _, lock_path = self.paths(key)
        handle = None
        try:
            usable = True
            if distributed.is_main():
                try:
                    handle = open_lock(lock_path)
                except BlockingIOError:
                    note(f"waiting for another process training {key}")
                    handle = open_lock(lock_path, wait=True)
                except OSError as error:  # an unwritable cache folder costs time, not the run
                    note(f"warning: T1 cache unusable ({error}); training without it")
                    usable = False
            if not distributed.broadcast_object(usable):
                return {**train(), "meta": meta}, Outcome(key, False, None)
            entry = self.load(key, device) if distributed.is_main() else None
            if distributed.broadcast_object(entry is not None):
                if entry is None:  # another rank: rank 0 checked the file
                    entry = load_tensors(data, map_location=device)
                note(f"loaded {key} from {data}")
                return entry, Outcome(key, True, str(data))
            note(f"training {key} (first task {meta.get('task', '').split('|')[0]}, seed {meta.get('seed')})")
            entry = {**train(), "meta": meta}
            if distributed.is_main():
                try:
                    self.store(key, entry)
                except OSError as error:  # a read-only or full cache only costs the next run time
                    note(f"warning: could not store {key}: {error}")
            return entry, Outcome(key, False, str(data))
        finally:
            if handle is not None:
                os.close(handle)

