"""The released TTL ('ColdRec') data of PeterRec/Conure/TERACON, read from `--data-dir`.

File names are those of the public release (as used by the TERACON scripts, under
`ColdRec/`); `--data-dir` may point at the folder holding them or at its parent:

    T1 original_desen_pretrain.csv                  behaviour sequences (next item)
    T2 original_desen_finetune_click_nosuerID.csv   sequence ,, clicked item(s)
    T3 original_desen_finetune_like_nosuerID.csv    sequence ,, liked item(s)
       (or `..._nouserID.csv`, the spelling the reference scripts read)
    T4 original_desen_age.csv                       sequence ,, age class
    T5 original_desen_gender.csv                    sequence ,, gender
    T6 original_desen_lifestatus.csv                sequence ,, life status

As in the reference loader, the shared item index numbers T1's distinct ids 1..n in
increasing order (0 stays padding; written as `<key>-index.csv` in the reference code's
dict format), and each later task numbers its own targets 0..m-1 in increasing order.
Later files carry the user's T1 sequence as input, so each line is aligned to its T1 user
by that sequence; a line whose sequence is not a T1 sequence is an error unless
`require_t1_users` is off.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from bench.config import SEED_BOUNDS, from_dict
from bench.errors import BenchError, DataFormatError
from bench.registry import DATASETS
from bench.engine.tasks import Dataset, TaskKind
from bench.datasets.base import TableAdapter
from bench.datasets.cache import ArrayCache, cache_key, load_or_build, note
from bench.datasets.item_index import ItemIndex
from bench.datasets.splitting import TableTask, Tables, check_split_options
from bench.datasets.ttl_parse import line_number, read_ttl

TTL_FILES = [
    "original_desen_pretrain.csv",
    "original_desen_finetune_click_nosuerID.csv",
    "original_desen_finetune_like_nosuerID.csv",
    "original_desen_age.csv",
    "original_desen_gender.csv",
    "original_desen_lifestatus.csv",
]
TTL_KINDS = ["next_item", "item", "item", "class", "class", "class"]
TTL_NAMES = ["T1-behaviour", "T2-click", "T3-like", "T4-age", "T5-gender", "T6-lifestatus"]


@dataclass
class TTLOptions:
    files: list[str] = field(default_factory=lambda: list(TTL_FILES))
    kinds: list[Literal["next_item", "item", "class"]] = field(default_factory=lambda: list(TTL_KINDS))
    names: list[str] = field(default_factory=lambda: list(TTL_NAMES))
    split: Literal["reference", "user"] = "reference"  # or "user"; see datasets/splitting.py
    valid_fraction: float = field(default=0.05, metadata={"min": 0, "max": 1})
    test_fraction: float = field(default=0.15, metadata={"min": 0, "max": 1})
    seed: int = field(default=0, metadata=SEED_BOUNDS)
    require_t1_users: bool = True
    cache: bool = True
    cache_dir: str | None = None  # default: $BENCH_DATA/cache or ~/.cache/bench/cache

    def validate(self) -> None:
        if not (len(self.files) == len(self.kinds) == len(self.names)) or not self.files:
            raise BenchError("ttl: files, kinds and names need the same (non-zero) length")
        try:
            kinds = [TaskKind(kind) for kind in self.kinds]
        except ValueError:
            raise BenchError(f"ttl: kinds must be next_item, item or class, got {self.kinds}") from None
        if kinds[0] is not TaskKind.NEXT_ITEM or TaskKind.NEXT_ITEM in kinds[1:]:
            raise BenchError("ttl: the first file must be the next_item (T1) file, and only it")
        check_split_options(self.split, self.valid_fraction, self.test_fraction, "ttl")


# The release spells T2/T3 "nosuerID"; the runnable scripts of both reference codes read
# "nouserID". Either spelling of a name is accepted.
SPELLINGS = [("_nosuerID", "_nouserID"), ("_nouserID", "_nosuerID")]


def spellings(name: str) -> list[str]:
    """`name` first, then its other released spelling if it has one."""
    return [name] + [name.replace(old, new) for old, new in SPELLINGS if old in name]


def locate(data_dir: Path, names: list[str]) -> list[Path]:
    """The files in data_dir or data_dir/ColdRec (the release's folder name), either spelling.

    When some are missing, the error names the first missing file of the folder that holds
    most of them (data_dir when it holds none).
    """
    found = {}
    for folder in (data_dir, data_dir / "ColdRec"):
        found[folder] = [next((folder / n for n in spellings(name) if (folder / n).is_file()), None)
                         for name in names]
        if all(found[folder]):
            return found[folder]
    folder = max(found, key=lambda f: sum(path is not None for path in found[f]))
    if not any(found[folder]):
        folder = data_dir
    missing = next(name for name, path in zip(names, found[folder]) if path is None)
    also = [n for n in spellings(missing) if n != missing]
    raise DataFormatError(folder / missing, None,
                          "file not found" + (f" (nor {also[0]})" if also else "")
                          + f"; ttl needs {', '.join(names)} in {data_dir} or {data_dir / 'ColdRec'}")


def write_release(dataset: Dataset, directory: Path, chunk: int = 100_000) -> list[Path]:
    """Write a dataset as the six released files (T1 sequences; `sequence,,target` after),
    e.g. a TTL-sized synthetic set, so the adapter can be checked at the release's size."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, task in zip(TTL_FILES, dataset.tasks):
        path = directory / name
        with open(path, "w") as handle:
            for split in (task.train, task.valid, task.test):
                for start in range(0, len(split), chunk):
                    rows = pd.DataFrame(split.inputs[start:start + chunk])
                    if task.kind is not TaskKind.NEXT_ITEM:
                        rows[""] = ""  # the empty field that makes the ",," separator
                        rows["target"] = split.targets[start:start + chunk]
                    rows.to_csv(handle, header=False, index=False)
        paths.append(path)
    return paths


def row_hashes(sequences: np.ndarray) -> np.ndarray:
    """A 64-bit polynomial hash per row; matches are verified, so collisions cannot mislead."""
    hashes = np.zeros(len(sequences), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in sequences.T:
            hashes = hashes * np.uint64(1_000_003) + column.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
            hashes ^= hashes >> np.uint64(29)
    return hashes


class T1Matcher:
    """Finds, for any sequence, the first T1 row equal to it (-1 if none)."""

    def __init__(self, sequences: np.ndarray):
        self.sequences = sequences
        hashes = row_hashes(sequences)
        self.order = np.argsort(hashes, kind="stable")
        self.sorted = hashes[self.order]

    def match(self, sequences: np.ndarray) -> np.ndarray:
        hashes = row_hashes(sequences)
        position = np.minimum(np.searchsorted(self.sorted, hashes), len(self.sorted) - 1)
        rows = self.order[position]
        found = (self.sorted[position] == hashes) & (self.sequences[rows] == sequences).all(axis=1)
        return np.where(found, rows, -1)


def parse(paths: list[Path], options: TTLOptions) -> tuple[dict[str, np.ndarray], dict]:
    """Read every file into arrays: the pooled sequences and, per task, rows and targets."""
    note("ttl", f"reading {paths[0].name} (1/{len(paths)})")
    first = read_ttl(paths[0], with_targets=False)
    index = ItemIndex(first.sequences)
    t1, _ = index.map(first.sequences)
    item_ids = index.ids
    del first
    padded_end = np.flatnonzero(t1[:, -1] == 0)
    if len(padded_end):
        raise DataFormatError(paths[0], line_number(paths[0], int(padded_end[0])),
                              "sequence ends in 0; sequences are left-padded, so the last id must be an item")
    pooled, matcher = [t1], T1Matcher(t1)
    n_rows = len(t1)
    arrays = {"item_ids": item_ids, "rows_1": np.arange(len(t1), dtype=np.int64),
              "targets_1": t1[:, -1].astype(np.int64)}
    n_targets, warnings = [len(item_ids)], []
    for number, path in enumerate(paths[1:], start=2):
        note("ttl", f"reading {path.name} ({number}/{len(paths)})")
        parsed = read_ttl(path, with_targets=True)
        if options.kinds[number - 1] == "class" and (parsed.target_counts != 1).any():
            row = int(np.flatnonzero(parsed.target_counts != 1)[0])
            raise DataFormatError(path, line_number(path, row), f"{parsed.target_counts[row]} labels after ',,'; "
                                  "a line of a class task holds exactly one")
        sequences = _map_items(parsed.sequences, index, path, t1.shape[1], paths[0])
        rows = matcher.match(sequences)
        unmatched = np.flatnonzero(rows < 0)
        if len(unmatched):
            if options.require_t1_users:
                raise DataFormatError(path, line_number(path, int(unmatched[0])),
                                      f"input sequence is not a user sequence of {paths[0].name} "
                                      f"({len(unmatched)} such lines; set dataset_options.require_t1_users=false "
                                      "to keep them as extra users)")
            rows[unmatched] = n_rows + np.arange(len(unmatched))
            pooled.append(sequences[unmatched])
            n_rows += len(unmatched)
        if options.kinds[number - 1] == "class":
            conflict = label_conflict(path, rows, parsed.target_values)
            if conflict:
                print(f"warning: {conflict}", file=sys.stderr)
                warnings.append(conflict)
        target_ids, targets = np.unique(parsed.target_values, return_inverse=True)
        arrays[f"rows_{number}"] = np.repeat(rows, parsed.target_counts)
        arrays[f"targets_{number}"] = targets.astype(np.int64)
        arrays[f"target_ids_{number}"] = target_ids
        n_targets.append(len(target_ids))
    arrays["sequences"] = np.concatenate(pooled) if len(pooled) > 1 else t1
    return arrays, {"n_targets": n_targets, "n_t1_users": len(t1), "warnings": warnings}


def label_conflict(path: Path, rows: np.ndarray, labels: np.ndarray) -> str | None:
    """The first two lines of a class file that give one user (one T1 sequence) different
    labels, and how many users have such lines; None when there are none.

    The rule is the released loader's (TERACON data_loader.py Data_Loader_Sup): every line is
    an instance of its own, so both labels are kept; the warning says that they disagree."""
    if len(rows) < 2:
        return None
    order = np.lexsort((np.arange(len(rows)), rows))  # by user, then line
    same_user = rows[order][1:] == rows[order][:-1]
    differ = same_user & (labels[order][1:] != labels[order][:-1])
    if not differ.any():
        return None
    users = np.unique(rows[order][1:][differ])
    lines = np.flatnonzero(rows == rows[np.flatnonzero(np.isin(rows, users))[0]])  # the first such user's
    a = int(lines[0])
    b = int(next(line for line in lines if labels[line] != labels[a]))
    return (f"{path}: lines {line_number(path, a)} and {line_number(path, b)} give one user the labels "
            f"{labels[a]} and {labels[b]} ({len(users)} user(s) with conflicting labels); as in the released "
            "loader, each line is kept as an instance of its own")


def _map_items(sequences: np.ndarray, index: ItemIndex, path: Path, width: int, t1_path: Path) -> np.ndarray:
    if sequences.shape[1] != width:
        raise DataFormatError(path, line_number(path, 0),
                              f"input sequences have {sequences.shape[1]} items, {t1_path.name} has {width}")
    mapped, unknown = index.map(sequences)
    if unknown.any():
        row, column = np.argwhere(unknown)[0]
        raise DataFormatError(path, line_number(path, int(row)),
                              f"item {sequences[row, column]} does not occur in {t1_path.name}, so it has no index")
    return mapped


def write_index(path: Path, item_ids: np.ndarray) -> None:
    """The reference code's index.csv: a Python dict literal from raw id to index."""
    from bench.io import write_text

    body = ", ".join(f"'{item}': {index}" for index, item in enumerate(item_ids.tolist(), start=1))
    write_text(path, "{'0': 0" + (", " + body if body else "") + "}\n")


def load_tables(data_dir: Path, options: TTLOptions) -> tuple[dict[str, np.ndarray], dict, str]:
    paths = locate(data_dir, options.files)
    settings = {"files": options.files, "kinds": options.kinds,
                "require_t1_users": options.require_t1_users}
    cache = (ArrayCache(options.cache_dir, cache_key("ttl", paths, settings, options.cache_dir))
             if options.cache else None)
    arrays, meta, state = load_or_build(cache, lambda: parse(paths, options), "ttl")
    if state == "miss":
        try:
            write_index(cache.directory / f"{cache.key}-index.csv", arrays["item_ids"])
        except OSError:
            pass
    return arrays, meta, state


@DATASETS.register("ttl")
class TTL(TableAdapter):
    Options = TTLOptions
    needs_data_dir = True
    summary = "released TTL/ColdRec files (6 tasks: sequence, click, like, age, gender, life status)"

    @classmethod
    def estimated_bytes(cls, options: dict, data_dir) -> tuple[int, None] | None:
        """About four times the text: int64 per id, the pooled and per-task copies, Arrow's strings."""
        try:
            paths = locate(Path(data_dir), from_dict(TTLOptions, options, "dataset_options").files)
            return 4 * sum(path.stat().st_size for path in paths), None
        except (BenchError, OSError, TypeError):
            return None  # the load names what is wrong

    @classmethod
    def tables(cls, options: TTLOptions, data_dir: Path) -> Tables:
        options.validate()
        arrays, meta, cache_state = load_tables(Path(data_dir), options)
        if cache_state == "hit":  # the parse warned when it read the files; a cached load says it again
            for warning in meta.get("warnings", []):
                print(f"warning: {warning}", file=sys.stderr)
        tasks = [
            TableTask(name, TaskKind(kind), arrays[f"rows_{number}"], arrays[f"targets_{number}"],
                      meta["n_targets"][number - 1], f"{name} from {file}")
            for number, (name, kind, file) in enumerate(zip(options.names, options.kinds, options.files), start=1)
        ]
        return Tables("ttl", len(arrays["item_ids"]), arrays["sequences"], tasks, options.split,
                      options.valid_fraction, options.test_fraction, options.seed,
                      info={"cache": cache_state, "n_t1_users": meta["n_t1_users"]})
