"""Preprocessed-data cache: parsing 25M ratings once is slow, reloading NumPy arrays is not.

An entry is one uncompressed `.npz` (arrays) plus a `.json` (metadata) under the cache
root, named by a key over the source files' size, mtime and a hash of their head and tail,
plus whatever options shaped the parse. Any change to a source file gives a new key, so a
stale entry is never read. The metadata also records the entry's key and array names, so a
damaged entry (a truncated .npz, a well-formed but foreign .json or .npz) is reported with
its path and rebuilt, never trusted; a cache folder that takes no writes is said once.
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

from bench.io import _atomic, read_json, write_json

FORMAT_VERSION = 2  # 2: the metadata records its key and arrays
_SAMPLE = 1 << 20  # bytes hashed from each end of a source file


def data_root() -> Path:
    """Where downloads and caches live: $BENCH_DATA, else ~/.cache/bench."""
    return Path(os.environ.get("BENCH_DATA") or Path.home() / ".cache" / "bench")


def default_cache_dir() -> Path:
    return data_root() / "cache"


def file_fingerprint(path: Path) -> dict:
    """Size, mtime and a hash of the first and last MiB: cheap even for GB files."""
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_SAMPLE))
        if stat.st_size > _SAMPLE:
            handle.seek(max(_SAMPLE, stat.st_size - _SAMPLE))
            digest.update(handle.read(_SAMPLE))
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256_ends": digest.hexdigest()}


def cache_key(kind: str, files: list[Path], settings: dict) -> str:
    payload = {"version": FORMAT_VERSION, "kind": kind, "settings": settings,
               "files": [file_fingerprint(Path(path)) for path in files]}
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
