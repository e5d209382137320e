"""Atomic file writes: a crash mid-write never leaves a truncated result behind, and a write
that fails (read-only folder, full disk) is one error naming the file."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.errors import WriteError


def _file_mode() -> int:
    """What open() would give a new file: 0666 less the umask (mkstemp's own 0600 would keep a
    results folder shared by a group unreadable). The umask can only be read by setting it."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(path, error) from None
    try:
        os.chmod(fd, _file_mode())
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            raise WriteError(path, error) from None
        if isinstance(error, RuntimeError):  # torch.save reports a full disk as a RuntimeError
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise WriteError(path, OSError(None, reason)) from None
        raise


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda handle: handle.write(text), "w")


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_torch(path: Path, obj: Any) -> None:
    import torch

    _atomic(path, lambda handle: torch.save(obj, handle), "wb")


def previous_path(path: Path) -> Path:
    """Where `write_torch_keeping_previous` keeps the checkpoint before the latest one."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def write_torch_keeping_previous(path: Path, obj: Any) -> None:
    """Write a checkpoint atomically, first moving the last one aside: a damaged latest file
    (disk fault, a copy cut short) then falls back to the one before instead of to nothing."""
    path = Path(path)
    try:
        os.replace(path, previous_path(path))
    except FileNotFoundError:
        pass  # the first one (or another process sharing the file moved it just now)
    except OSError as error:
        raise WriteError(previous_path(path), error) from None
    write_torch(path, obj)


def load_tensors(path: Path, map_location: Any = None) -> Any:
    """A file written by `write_torch`, read as tensors and plain data only (torch.load with
    weights_only=True): a file holding anything else, a pickled object whose loading would run
    code included, raises `pickle.UnpicklingError` instead of being executed. Every file the
    harness stores with torch.save is read through here (docs/security-loading.md)."""
    import torch
    from torch.torch_version import TorchVersion

    # torch.__version__ is a str subclass: T1-cache entries written before issue 22 hold one
    with torch.serialization.safe_globals([TorchVersion]):
        return torch.load(path, map_location=map_location, weights_only=True)


#: what a damaged or foreign torch file raises in `load_tensors`
LOAD_ERRORS = (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError, AttributeError,
               TypeError, KeyError, IndexError, UnicodeDecodeError)


def load_failure(error: BaseException) -> str:
    """A damaged file's reason in a few words; a file refused by weights_only says so plainly
    (torch's own message is a page of advice to load it unsafely)."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in text.lower().replace(" ", "_"):
        return "it holds Python objects, not only tensors and plain data, and is never loaded"
    return text.split(". ")[0].strip().splitlines()[0][:200] if text.strip() else type(error).__name__


def load_torch_with_fallback(path: Path, map_location: Any = None) -> Any:
    """The latest checkpoint at `path`, or the previous one (with a warning naming the damaged
    file) when the latest is unreadable; None when neither exists. Raises `UnreadableFile`
    when the only ones there are damaged. Read by `load_tensors`: a file that holds more than
    tensors and plain data is damaged, never run."""
    path, failures = Path(path), []
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            loaded = load_tensors(candidate, map_location=map_location)
        except LOAD_ERRORS as error:
            failures.append((candidate, load_failure(error)))
            continue
        for damaged, reason in failures:
            print(f"warning: {damaged} is unreadable ({reason}); using the previous checkpoint {candidate}",
                  file=sys.stderr, flush=True)
        return loaded
    if failures:
        raise UnreadableFile(*failures[0])
    return None


class UnreadableFile(Exception):
    """A checkpoint (and its previous copy, if any) that cannot be loaded."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def remove_with_previous(path: Path) -> None:
    Path(path).unlink(missing_ok=True)
    previous_path(path).unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def probe_writable(directory: Path) -> None:
    """Write and remove a small file, so a read-only or full folder fails before any work."""
    probe = Path(directory) / ".write-probe"
    write_text(probe, "probe\n" * 512)
    probe.unlink(missing_ok=True)


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 16 MiB blocks (downloads, T1 cache entries)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def open_lock(path: Path, wait: bool = False) -> int:
    """An exclusive OS file lock (flock) on `path`, as an open descriptor; closing it releases
    the lock, and a crashed or killed holder never leaves it held. Without `wait`, a lock held
    elsewhere raises BlockingIOError at once; with it, the call blocks until the holder is done."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WriteError(path, error) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(handle)
        raise
    return handle
