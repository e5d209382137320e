"""Downloading GroupLens releases: official URL, published MD5, unpacked under the data root.

GroupLens forbids redistribution, so nothing is bundled; `fetch` gets the archive from
files.grouplens.org, checks it against the MD5 GroupLens publishes next to each zip
(`<zip>.md5`), and unpacks it. Without network it fails in one line saying where to put
the files by hand.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.io import file_hash
from bench.datasets.cache import data_root

BASE_URL = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class Release:
    archive: str  # zip name on files.grouplens.org; it unpacks into a folder of its stem
    md5: str  # as published in <archive>.md5
    size: int | None = None  # bytes, where known


RELEASES = {
    "movielens-25m": Release("ml-25m.zip", "6b51fb2759a8657d3bfcbfc42b592ada", 261_978_986),
    "movielens-1m": Release("ml-1m.zip", "c4d9eecfca2ab87c1945afe126590906"),
    "movielens-100k": Release("ml-100k.zip", "0e33842e24a9c977be4e0107933c0723", 4_924_029),
}


def target_dir(name: str, root: Path | None = None) -> Path:
    release = RELEASES[name]
    return Path(root or data_root()) / Path(release.archive).stem


def fetch(name: str, root: Path | None = None, force: bool = False) -> Path:
    """Download, verify and unpack one release; returns the folder to pass as --data-dir."""
    if name not in RELEASES:
        raise BenchError(f"unknown release '{name}'; choose from: {', '.join(RELEASES)}")
    release = RELEASES[name]
    root = Path(root or data_root())
    folder = target_dir(name, root)
    if folder.is_dir() and any(folder.iterdir()) and not force:
        return folder
    url = BASE_URL + release.archive
    archive = root / release.archive
    partial = archive.with_suffix(".zip.part")
    root.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            shutil.copyfileobj(response, handle, length=1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise BenchError(f"cannot download {url} ({reason}); download it by hand and unzip it so that "
                         f"{folder} holds its files (or pass --data-dir to where they are)") from None
    digest = file_hash(partial, "md5")
    if digest != release.md5:
        partial.unlink(missing_ok=True)
        raise BenchError(f"{url}: MD5 {digest} does not match the published {release.md5}; download discarded")
    partial.replace(archive)
    try:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(root)
    except zipfile.BadZipFile:
        raise BenchError(f"{archive}: not a valid zip archive") from None
    archive.unlink(missing_ok=True)
    return folder
