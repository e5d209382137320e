"""Preprocessed-data cache: parsing 25M ratings once is slow, reloading NumPy arrays is not.

An entry is one uncompressed `.npz` (arrays) plus a `.json` (metadata) under the cache
root, named by a key over the source files' names, sizes and the sha256 of their whole
content, plus whatever options shaped the parse. Any change to a source file's bytes gives a
new key, so a stale entry is never read (an edit in the middle of a GB file that keeps its
size and modification time included: before issue 22 only the first and last MiB were hashed).

Hashing the whole file costs about 3.5 s per GiB on one core here (sha256, 1 GiB measured,
docs/security-loading.md), so a file's digest is computed once and remembered under
`<cache root>/digests/`, beside the stat fields that say the file is the same one unchanged
(device, inode, size, mtime and ctime, in ns). ctime cannot be set back by a user (utime sets
it to now), so an edit whose mtime is restored is still seen; a digest taken within a few
seconds of the file's last change is not remembered (as git's "racy" index entries: a
timestamp tick may hide a change made right after), so such a file is hashed again next time.

The metadata also records the entry's key and array names, so a damaged entry (a truncated
.npz, a well-formed but foreign .json or .npz; arrays are read with allow_pickle=False) is
reported with its path and rebuilt, never trusted; a cache folder that takes no writes is
said once.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from bench.io import _atomic, file_hash, read_json, write_json

FORMAT_VERSION = 3  # 2: the metadata records its key and arrays; 3: keyed by the whole content
_RACY_NS = 3_000_000_000  # a digest taken this soon after the file changed is not remembered


def data_root() -> Path:
    """Where downloads and caches live: $BENCH_DATA, else ~/.cache/bench."""
    return Path(os.environ.get("BENCH_DATA") or Path.home() / ".cache" / "bench")


def default_cache_dir() -> Path:
    return data_root() / "cache"


def _identity(stat: os.stat_result) -> list[int]:
    """What says a file is the one a remembered digest was taken of, unchanged since."""
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def content_digest(path: Path, directory: Path | None = None) -> str:
    """The sha256 of the whole file, remembered under `directory`/digests (the cache root)
    and reused only while the file's identity (device, inode, size, mtime, ctime) is the same."""
    path = Path(path).resolve()
    memo = (Path(directory) if directory is not None else default_cache_dir()) / "digests" / (
        hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
    before = path.stat()
    try:
        saved = read_json(memo)
        if saved["path"] == str(path) and saved["identity"] == _identity(before):
            return str(saved["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # none yet, or unreadable: hash the file
    digest = file_hash(path, "sha256")
    after = path.stat()
    settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > _RACY_NS
    if _identity(after) == _identity(before) and settled:
        try:
            write_json(memo, {"path": str(path), "identity": _identity(after), "sha256": digest})
        except OSError:
            pass  # a read-only cache only costs the hash again
    return digest


def file_fingerprint(path: Path, directory: Path | None = None) -> dict:
    """Name, size and the sha256 of the whole content (remembered: `content_digest`)."""
    path = Path(path)
    return {"name": path.name, "size": path.stat().st_size, "sha256": content_digest(path, directory)}


def cache_key(kind: str, files: list[Path], settings: dict, directory: Path | None = None) -> str:
    """The entry name for `files` parsed under `settings`; `directory` is the cache root (where
    the files' digests are remembered), the default one when None."""
    payload = {"version": FORMAT_VERSION, "kind": kind, "settings": settings,
               "files": [file_fingerprint(Path(path), directory) for path in files]}
    text = json.dumps(payload, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}"


class ArrayCache:
    """Load or store one entry: a dict of arrays plus a JSON-able metadata dict."""

    def __init__(self, directory: Path | None, key: str):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.key = key
        self.arrays_path = self.directory / f"{key}.npz"
        self.meta_path = self.directory / f"{key}.json"

    def load(self) -> tuple[dict[str, np.ndarray], dict] | None:
        if not (self.arrays_path.exists() and self.meta_path.exists()):
            return None
        try:
            meta = read_json(self.meta_path)
            entry = meta.pop(ENTRY) if isinstance(meta, dict) and isinstance(meta.get(ENTRY), dict) else {}
            with np.load(self.arrays_path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            problem = ("its metadata records no key" if not entry else
                       "its metadata belongs to another entry" if entry.get("key") != self.key else
                       "its arrays are not the ones recorded" if sorted(arrays) != entry.get("arrays") else None)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            problem = str(error).split("\n")[0] or type(error).__name__
        if problem is not None:  # a damaged entry is rebuilt, never trusted
            print(f"warning: damaged cache entry {self.arrays_path} ({problem}); parsing the data again",
                  file=sys.stderr, flush=True)
            return None
        return arrays, meta

    def store(self, arrays: dict[str, np.ndarray], meta: dict) -> bool:
        """Write the entry; False (said once per folder) when the folder takes no writes."""
        try:
            _atomic(self.arrays_path, lambda handle: np.savez(handle, **arrays), "wb")
            # written last: its presence marks a complete entry, and it names what that entry holds
            write_json(self.meta_path, {**meta, ENTRY: {"key": self.key, "arrays": sorted(arrays)}})
        except OSError as error:  # a read-only cache only costs speed
            if self.directory not in _UNWRITABLE:
                _UNWRITABLE.add(self.directory)
                print(f"warning: cache folder {self.directory} takes no writes ({error.strerror or error}); "
                      "the parsed data is not cached (set dataset_options.cache_dir, or cache=false)",
                      file=sys.stderr, flush=True)
            return False
        return True


ENTRY = "_cache_entry"  # the metadata's record of its own key and array names
_UNWRITABLE: set[Path] = set()  # cache folders already reported as taking no writes


Arrays = tuple[dict[str, np.ndarray], dict]


def load_or_build(cache: ArrayCache | None, build: Callable[[], Arrays], kind: str) -> tuple[dict[str, np.ndarray], dict, str]:
    """The cached entry if there is one, else `build()` (stored when caching is on); with the
    state "hit", "miss" or "off" that the dataset's info reports."""
    if cache is not None:
        hit = cache.load()
        if hit is not None:
            note(kind, f"loaded cached arrays {cache.arrays_path}")
            return hit[0], hit[1], "hit"
    arrays, meta = build()
    if cache is None:
        return arrays, meta, "off"
    if cache.store(arrays, meta):
        note(kind, f"cached the parsed arrays as {cache.arrays_path}")
    return arrays, meta, "miss"


_START = time.monotonic()


def note(kind: str, message: str) -> None:
    """One progress line on stderr per phase of a load (a large parse takes minutes)."""
    print(f"[{time.monotonic() - _START:7.1f}s] {kind}: {message}", file=sys.stderr, flush=True)
