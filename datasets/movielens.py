"""MovieLens as a continual user-representation benchmark (TTL-shaped when profiles exist).

The papers use ML-25M with T1 = next-item prediction over each user's time-ordered
watching sequence and further item tasks predicted from that sequence; their code ships
no ML preprocessing, so the item tasks are defined here, keeping TTL's structure (later
tasks take the T1 sequence as input and predict something the sequence does not contain):

* T1 `next-item`: each user's first `max_len` ratings in time order (left 0-padded;
  shortened to leave `min_future` later ratings, users under `min_len` dropped).
* T2 `watch-next` (TTL's click): the next `targets_per_user` movies rated after the
  T1 window, whatever the rating; own 0-based vocabulary.
* T3 `liked` (TTL's like): the first `targets_per_user` movies rated at least
  `like_threshold` (4.5 = five stars on ML-100K/1M, 4.5-5 on ML-25M) after the T2
  span, so T2 and T3 never share an instance; users without one are absent, as in TTL.
* T4..T6 `age`, `gender`, `occupation` where the release has user profiles (ML-100K,
  ML-1M, RecBole `.user`): ages use ML-1M's seven brackets, so both releases agree.

Parsed and derived arrays are cached (datasets/cache.py); splits as in datasets/splitting.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import SEED_BOUNDS
from bench.errors import BenchError, DataFormatError
from bench.registry import DATASETS
from bench.engine.tasks import Dataset, TaskKind
from bench.datasets.base import TableAdapter
from bench.datasets.cache import ArrayCache, cache_key, load_or_build, note
from bench.datasets.item_index import ItemIndex
from bench.datasets.movielens_formats import Ratings, detect, read
from bench.datasets.splitting import TableTask, Tables, check_split_options

PROFILE_TASKS = ("age", "gender", "occupation")


@dataclass
class MovieLensOptions:
    format: Literal["auto", "ml-25m", "ml-1m", "ml-100k", "recbole"] = "auto"
    max_len: int = field(default=30, metadata={"min": 2})
    min_len: int = field(default=5, metadata={"min": 2})
    min_future: int = field(default=5, metadata={"min": 1})
    targets_per_user: int = field(default=3, metadata={"min": 1})
    like_threshold: float = 4.5
    profile_tasks: bool = True
    split: Literal["reference", "user"] = "reference"  # or "user"; see datasets/splitting.py
    valid_fraction: float = field(default=0.05, metadata={"min": 0, "max": 1})
    test_fraction: float = field(default=0.15, metadata={"min": 0, "max": 1})
    seed: int = field(default=0, metadata=SEED_BOUNDS)
    cache: bool = True
    cache_dir: str | None = None

    def validate(self) -> None:
        if not 2 <= self.min_len <= self.max_len or self.min_future < 1 or self.targets_per_user < 1:
            raise BenchError("movielens: need 2 <= min_len <= max_len, min_future >= 1 and targets_per_user >= 1")
        check_split_options(self.split, self.valid_fraction, self.test_fraction, "movielens")

    def derivation(self) -> dict:
        """The settings that shape the cached arrays (splitting ones do not)."""
        return {key: getattr(self, key) for key in ("max_len", "min_len", "min_future", "targets_per_user",
                                                    "like_threshold", "profile_tasks")}


def _rank_within_user(users: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal (sorted) user codes."""
    return np.arange(len(users)) - np.searchsorted(users, users, side="left")


def time_order(users: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Stable order by (user, timestamp): one int64 key sorts ~6x faster than np.lexsort."""
    if stamps.dtype.kind == "f":
        whole = np.isfinite(stamps).all() and (stamps == np.round(stamps)).all()
        stamps = stamps.astype(np.int64) if whole else np.unique(stamps, return_inverse=True)[1]
    users = users - users.min()
    stamps = stamps - stamps.min()
    span = int(stamps.max()) + 1
    if (int(users.max()) + 1) * span < 2**63:
        return np.argsort(users * span + stamps, kind="stable")
    return np.lexsort((stamps, users))


def derive(data: Ratings, options: MovieLensOptions) -> tuple[dict[str, np.ndarray], dict]:
    frame = data.ratings
    order = time_order(frame["user"].to_numpy(), frame["timestamp"].to_numpy())
    raw_users = frame["user"].to_numpy()[order]
    items = frame["item"].to_numpy()[order]
    ratings = frame["rating"].to_numpy(dtype=np.float64)[order]
    del order
    first = np.ones(len(raw_users), dtype=bool)
    first[1:] = raw_users[1:] != raw_users[:-1]
    user_ids, starts = raw_users[first], np.flatnonzero(first)
    codes = np.cumsum(first) - 1
    del raw_users, first
    counts = np.diff(np.append(starts, len(codes)))
    position = np.arange(len(codes)) - starts[codes]
    window = np.minimum(options.max_len, counts - options.min_future)
    kept = window >= options.min_len
    if not kept.any():
        raise BenchError(f"movielens: no user has {options.min_len + options.min_future} ratings")
    new_id = np.cumsum(kept) - 1  # index among kept users
    user_window = window[codes]
    in_kept = kept[codes]

    t1 = in_kept & (position < user_window)
    index = ItemIndex(items[t1])
    item_ids = index.ids
    sequences = np.zeros((int(kept.sum()), options.max_len), dtype=np.int32)
    column = options.max_len - user_window[t1] + position[t1]
    sequences[new_id[codes[t1]], column] = index.map(items[t1])[0]
    del t1, column

    k = options.targets_per_user
    after = in_kept & (position >= user_window)
    tables = {"next-item": (np.arange(len(sequences)), sequences[:, -1].astype(np.int64))}
    next_mask = after & (position < user_window + k)
    tables["watch-next"] = (new_id[codes[next_mask]], items[next_mask])
    liked = np.flatnonzero(after & (position >= user_window + k) & (ratings >= options.like_threshold))
    liked = liked[_rank_within_user(codes[liked]) < k]
    tables["liked"] = (new_id[codes[liked]], items[liked])
    del next_mask, after, liked, position, items, ratings

    arrays = {"sequences": sequences, "item_ids": item_ids, "user_ids": user_ids[kept]}
    meta = {"names": [], "kinds": [], "n_targets": [], "descriptions": []}

    def add(name, kind, rows, values, description, remap=True):
        number = len(meta["names"]) + 1
        if remap:
            target_ids, values = np.unique(values, return_inverse=True)
            arrays[f"target_ids_{number}"] = np.asarray(target_ids)
        arrays[f"rows_{number}"] = np.asarray(rows, dtype=np.int64)
        arrays[f"targets_{number}"] = np.asarray(values, dtype=np.int64)
        meta["names"].append(f"T{number}-{name}")
        meta["kinds"].append(kind.value)
        meta["n_targets"].append(len(item_ids) if not remap else int(len(arrays[f"target_ids_{number}"])))
        meta["descriptions"].append(description)

    add("next-item", TaskKind.NEXT_ITEM, *tables["next-item"],
        f"next movie in the first {options.max_len} ratings", remap=False)
    add("watch-next", TaskKind.ITEM, *tables["watch-next"],
        f"the {k} movies rated right after the T1 window")
    add("liked", TaskKind.ITEM, *tables["liked"],
        f"first {k} movies rated >= {options.like_threshold} after the T2 span")
    if options.profile_tasks and data.profiles is not None:
        profiles = data.profiles.drop_duplicates("user").set_index("user")
        for name in PROFILE_TASKS:
            if name not in profiles:
                continue
            labels = profiles[name].reindex(arrays["user_ids"])
            present = labels.notna().to_numpy()
            add(name, TaskKind.CLASS, np.flatnonzero(present), labels[present].astype(str).to_numpy(),
                f"user {name} from the profile file")
            arrays[f"target_ids_{len(meta['names'])}"] = arrays[f"target_ids_{len(meta['names'])}"].astype(str)
    return arrays, meta


def check_profiles(profiles, path: Path, header: bool) -> None:
    """A user on two lines of the profile file with different values is an error naming both
    lines: the class tasks would otherwise keep whichever line came first, without a word.
    Repeated identical lines are harmless and kept once."""
    from bench.datasets.ttl_parse import line_number

    repeated = profiles[profiles["user"].duplicated(keep=False)]
    if repeated.empty:
        return
    columns = [column for column in profiles.columns if column != "user"]
    for user, group in repeated.groupby("user", sort=False):
        first = group.iloc[0]
        for position, row in group.iloc[1:].iterrows():
            for column in columns:
                if row[column] != first[column] and not (pd.isna(row[column]) and pd.isna(first[column])):
                    line, earlier = (line_number(path, int(index) + header) for index in (position, group.index[0]))
                    raise DataFormatError(path, line, f"user {user} has {column} {row[column]} here but "
                                          f"{first[column]} on line {earlier}; give each user one profile line")


def load_tables(data_dir: Path, options: MovieLensOptions) -> tuple[dict[str, np.ndarray], dict, str]:
    source = detect(data_dir, options.format)
    key = (cache_key(f"movielens-{source.format}", source.files, options.derivation(), options.cache_dir)
           if options.cache else None)
    cache = ArrayCache(options.cache_dir, key) if key is not None else None

    def build():
        note("movielens", f"reading {', '.join(p.name for p in source.files)} ({source.format})")
        ratings = read(source)
        if ratings.profiles is not None:
            check_profiles(ratings.profiles, source.files[-1], header=source.format == "recbole")
        note("movielens", f"deriving the tasks from {len(ratings.ratings):,} ratings")
        arrays, meta = derive(ratings, options)
        meta["source"] = f"{source.format} ({', '.join(p.name for p in source.files)})"
        return arrays, meta

    return load_or_build(cache, build, "movielens")


@DATASETS.register("movielens")
class MovieLens(TableAdapter):
    Options = MovieLensOptions
    needs_data_dir = True
    summary = "GroupLens ML-25M/1M/100K or RecBole files (next item, 2 item tasks, profiles if present)"

    @classmethod
    def tables(cls, options: MovieLensOptions, data_dir: Path) -> Tables:
        options.validate()
        arrays, meta, cache_state = load_tables(Path(data_dir), options)
        tasks = [TableTask(name, TaskKind(kind), arrays[f"rows_{number}"], arrays[f"targets_{number}"],
                           n_targets, description)
                 for number, (name, kind, n_targets, description)
                 in enumerate(zip(meta["names"], meta["kinds"], meta["n_targets"], meta["descriptions"]), start=1)]
        empty = [task.name for task in tasks if len(task.rows) == 0]
        if empty:
            raise BenchError(f"movielens: no instances for {', '.join(empty)}; "
                             "lower min_len/min_future or like_threshold")
        return Tables("movielens", len(arrays["item_ids"]), arrays["sequences"], tasks, options.split,
                      options.valid_fraction, options.test_fraction, options.seed,
                      info={"cache": cache_state, "source": meta["source"]})
