"""GroupLens MovieLens releases and RecBole atomic files, read into one shape.

Every reader returns ratings as (user, item, rating, timestamp) and, where the release
has them, user profiles as (user, age, gender, occupation). Which reader applies is
detected from the file names in `--data-dir` (or one folder below it, as unzipped):

    ratings.csv            ML-25M / ML-20M / ml-latest  (header userId,movieId,rating,timestamp)
    ratings.dat, users.dat ML-1M                        ('::'-separated, no header)
    u.data, u.user         ML-100K                      (tab- and '|'-separated, no header)
    NAME.inter, NAME.user  RecBole atomic files         (tab-separated, header 'field:type')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError, DataFormatError
from bench.datasets.tabular import Column, read_table

RATING_COLUMNS = [Column("user"), Column("item"), Column("rating", "float"), Column("timestamp")]
FORMATS = ("ml-25m", "ml-1m", "ml-100k", "recbole")
MARKERS = {"ml-25m": "ratings.csv", "ml-1m": "ratings.dat", "ml-100k": "u.data", "recbole": "*.inter"}


@dataclass
class Source:
    """Where a release lies and which reader it needs."""

    format: str
    directory: Path
    files: list[Path] = field(default_factory=list)  # every file read (for the cache key)


@dataclass
class Ratings:
    ratings: pd.DataFrame
    profiles: pd.DataFrame | None  # user, age, gender, occupation


def detect(data_dir: Path, wanted: str = "auto") -> Source:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise BenchError(f"movielens: data directory {data_dir} does not exist")
    formats = FORMATS if wanted == "auto" else (wanted,)
    if wanted not in FORMATS + ("auto",):
        raise BenchError(f"movielens: format must be auto or one of {', '.join(FORMATS)}, got '{wanted}'")
    for directory in [data_dir] + sorted(p for p in data_dir.iterdir() if p.is_dir()):
        for name in formats:
            files = sorted(directory.glob(MARKERS[name]))
            if files:
                return _source(name, directory, files)
    raise BenchError(
        f"movielens: no MovieLens files in {data_dir}; expected ratings.csv (ML-25M), ratings.dat (ML-1M), "
        "u.data (ML-100K) or NAME.inter (RecBole), here or one folder below. "
        "Get them with: python -m bench data fetch movielens-25m"
    )


def _source(name: str, directory: Path, found: list[Path]) -> Source:
    if name == "recbole":
        if len(found) > 1:
            raise BenchError(f"movielens: several .inter files in {directory}: {', '.join(p.name for p in found)}")
        user_file = found[0].with_suffix(".user")
        return Source(name, directory, found + ([user_file] if user_file.is_file() else []))
    profile = {"ml-1m": "users.dat", "ml-100k": "u.user"}.get(name)
    extra = [directory / profile] if profile and (directory / profile).is_file() else []
    return Source(name, directory, found + extra)


def read(source: Source) -> Ratings:
    return {"ml-25m": _ml25m, "ml-1m": _ml1m, "ml-100k": _ml100k, "recbole": _recbole}[source.format](source)


def _ml25m(source: Source) -> Ratings:
    path = source.files[0]
    with open(path, errors="replace") as handle:
        first = handle.readline().strip()
    if not first.lower().startswith("userid"):
        raise DataFormatError(path, 1, f"expected the header userId,movieId,rating,timestamp, got '{first[:60]}'")
    return Ratings(read_table(path, RATING_COLUMNS, ",", header=True), None)


def _ml1m(source: Source) -> Ratings:
    ratings = read_table(source.files[0], RATING_COLUMNS, "::")
    profiles = None
    if len(source.files) > 1:
        users = read_table(source.files[1], [Column("user"), Column("gender", "str"), Column("age"),
                                             Column("occupation"), Column("zip", "str")], "::", encoding="latin-1")
        profiles = users[["user", "age", "gender", "occupation"]]
    return Ratings(ratings, profiles)


def _ml100k(source: Source) -> Ratings:
    ratings = read_table(source.files[0], RATING_COLUMNS, "\t")
    profiles = None
    if len(source.files) > 1:
        users = read_table(source.files[1], [Column("user"), Column("age"), Column("gender", "str"),
                                             Column("occupation", "str"), Column("zip", "str")], "|",
                           encoding="latin-1")
        profiles = users[["user", "age", "gender", "occupation"]].assign(age=age_bracket(users["age"]))
    return Ratings(ratings, profiles)


def age_bracket(ages: pd.Series) -> np.ndarray:
    """Raw ages to ML-1M's seven age codes (1, 18, 25, 35, 45, 50, 56), so both releases agree."""
    edges = np.array([18, 25, 35, 45, 50, 56])
    codes = np.array([1, 18, 25, 35, 45, 50, 56])
    return codes[np.searchsorted(edges, np.asarray(ages), side="right")]


def _recbole_header(path: Path) -> list[tuple[str, str]]:
    with open(path, errors="replace") as handle:
        first = handle.readline().rstrip("\r\n")
    fields = []
    for token in first.split("\t"):
        name, colon, kind = token.partition(":")
        if not colon:
            raise DataFormatError(path, 1, f"header field '{token}' is not 'name:type' (RecBole atomic files "
                                  "are tab-separated with a header like user_id:token)")
        fields.append((name, kind))
    return fields


def _recbole_table(path: Path, required: list[str]) -> pd.DataFrame:
    fields = _recbole_header(path)
    names = [name for name, _ in fields]
    missing = [name for name in required if name not in names]
    if missing:
        raise DataFormatError(path, 1, f"header lacks {', '.join(missing)} (has {', '.join(names)})")
    columns = [Column(name, "float" if kind == "float" else "str") for name, kind in fields]
    return read_table(path, columns, "\t", header=True)


def _token_ids(values: pd.Series) -> np.ndarray:
    """RecBole tokens are strings; MovieLens ones are integers, kept as such when they are."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        return numeric.to_numpy(dtype=np.int64)
    return pd.factorize(values, sort=True)[0].astype(np.int64) + 1


def _recbole(source: Source) -> Ratings:
    path = source.files[0]
    table = _recbole_table(path, ["user_id", "item_id"])
    ratings = pd.DataFrame({
        "user": _token_ids(table["user_id"]),
        "item": _token_ids(table["item_id"]),
        "rating": table["rating"].to_numpy(dtype=np.float64) if "rating" in table else np.nan,
        "timestamp": (table["timestamp"].to_numpy(dtype=np.float64) if "timestamp" in table
                      else np.arange(len(table), dtype=np.float64)),
    })
    profiles = None
    if len(source.files) > 1:
        users = _recbole_table(source.files[1], ["user_id"])
        profiles = pd.DataFrame({"user": _token_ids(users["user_id"])})
        for name in ("age", "gender", "occupation"):
            if name in users:
                profiles[name] = users[name].to_numpy()
        if "age" in profiles:
            ages = pd.to_numeric(profiles["age"], errors="coerce")
            if ages.notna().all() and not set(ages.unique()) <= {1, 18, 25, 35, 45, 50, 56}:
                profiles["age"] = age_bracket(ages)
    return Ratings(ratings, profiles)
