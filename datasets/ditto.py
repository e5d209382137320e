"""DITTO's released data layout (SIGIR 2025, github seungyoon-Choi/DITTO_official, HEAD cfcd3b9): a
time-aware task sequence (docs/scenarios.md), read from `--data-dir`.

    task1.csv             T1: one user per line, raw item ids, left 0-padded; the last item is the target
    task2.csv, task3.csv  `sequence,,targets` (targets comma-separated): item tasks' targets are raw
                          item ids of the SAME dictionary as the inputs; class tasks' are integer labels
    task<k>_inference.csv optional: task k's data from a later time, in task k's format

Item ids are numbered as the released data_loader.py does (`Data_Loader` and `re_dict`): T1's raw
ids sorted as integers ('0' is padding, id 0; then 1, 2, ...), then each later file appends the
ids it has not seen in order of first appearance, every source sequence of the file before its
targets (class files: sources only), then the inference files in task order; items first seen
there are never trained, as in the released inference script. So task k knows ids
1..n_items_known(k), and a later task's vocabulary extends an earlier one's.

Each file is one instance per target (a line with three targets is three instances), shuffled by
`np.random.RandomState(seed)` (the released scripts seed NumPy's global state and permute), then
split as train_ditto.py L96-98 does: `dev = -int(0.2 * n)`, train `[:dev]`, valid
`[dev:int(dev * 0.75)]`, test `[int(dev * 0.75):]` (80/5/15 %). A task's `later` split is the test
part of its inference file split the same way (inference_past_tasks_update.py L96-100).
Class labels are numbered 0..k-1 in increasing order of the integer label (Data_Loader_class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.config import SEED_BOUNDS
from bench.errors import BenchError, DataFormatError
from bench.registry import DATASETS
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit
from bench.datasets.base import DatasetAdapter

TASK_FILE = re.compile(r"task(\d+)(_inference)?\.csv")
SPLIT_PERCENTAGE = 0.2  # train_ditto.py --split_percentage


@dataclass
class DittoOptions:
    class_tasks: list[int] = field(default_factory=list)  # 1-based task numbers that are classification ('5,6')
    later: bool = True  # read the task<k>_inference.csv files as the tasks' later test data
    seed: int = field(default=0, metadata=SEED_BOUNDS)  # the split seed (the released --seed)


@dataclass
class ParsedFile:
    """One file's lines as raw strings: sources (one list of ids per line) and targets (per line)."""

    path: Path
    sources: list[list[str]]
    targets: list[list[str]] | None  # None for T1 files (the target is the sequence's last item)


def find_files(directory: Path, options: DittoOptions) -> tuple[list[Path], dict[int, Path]]:
    """task1.csv .. taskN.csv (no gaps) and the inference files present, each number checked."""
    if not (directory / "task1.csv").is_file():
        raise DataFormatError(directory / "task1.csv", None,
                              "file not found; the ditto layout needs task1.csv, task2.csv, ... "
                              f"(optional task<k>_inference.csv) in {directory}")
    numbers, inference = set(), {}
    for path in directory.iterdir():
        match = TASK_FILE.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        if match.group(2):
            inference[int(match.group(1))] = path
        else:
            numbers.add(int(match.group(1)))
    n_tasks = max(numbers)
    missing = sorted(set(range(1, n_tasks + 1)) - numbers)
    if missing:
        raise DataFormatError(directory / f"task{missing[0]}.csv", None,
                              f"file not found, but task{n_tasks}.csv is there: task numbers must run 1..N without gaps")
    for number in sorted(inference):
        if number not in numbers:
            raise DataFormatError(inference[number], None, f"an inference file for task {number}, which has no task{number}.csv")
    for number in options.class_tasks:
        if not 2 <= number <= n_tasks:
            raise BenchError(f"dataset_options.class_tasks: task {number} is not one of the later tasks 2..{n_tasks}")
    return [directory / f"task{k}.csv" for k in range(1, n_tasks + 1)], inference if options.later else {}


def read_file(path: Path, with_targets: bool) -> ParsedFile:
    """Raw ids of every line; one error line naming file and line for anything malformed."""
    sources, targets = [], [] if with_targets else None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if with_targets:
                if ",," not in line:
                    raise DataFormatError(path, number, "expected 'sequence,,targets' (no ',,' on this line)")
                source, target = line.split(",,", 1)
                target_ids = [t.strip() for t in target.split(",")]
                if not target or any(not t for t in target_ids):
                    raise DataFormatError(path, number, "no target after ',,' (or an empty one)")
                targets.append(target_ids)
            else:
                source = line
            ids = [x.strip() for x in source.split(",")]
            if len(ids) < 2 or any(not x for x in ids):
                raise DataFormatError(path, number, "expected comma-separated item ids (at least two)")
            sources.append(ids)
    if not sources:
        raise DataFormatError(path, None, "no lines")
    return ParsedFile(path, sources, targets)


def check_integers(parsed: ParsedFile, what: str, values) -> None:
    for index, ids in values:
        for value in ids:
            if not value.lstrip("-").isdigit():
                raise DataFormatError(parsed.path, index + 1, f"{what} {value!r} is not an integer")


class ItemDictionary:
    """Raw id -> item id, grown as the released `re_dict` grows it (appended in first appearance)."""

    def __init__(self, t1_ids: set[str]):
        self.ids = {"0": 0}
        for raw in sorted(t1_ids - {"0"}, key=int):
            self.ids[raw] = len(self.ids)

    def extend(self, lines: list[list[str]]) -> None:
        for ids in lines:
            for raw in ids:
                if raw not in self.ids:
                    self.ids[raw] = len(self.ids)

    @property
    def n_items(self) -> int:
        return len(self.ids) - 1

    def map(self, lines: list[list[str]], path: Path) -> np.ndarray:
        width = len(lines[0])
        for index, ids in enumerate(lines):
            if len(ids) != width:
                raise DataFormatError(path, index + 1, f"{len(ids)} item ids, but the file's first line has {width}")
        return np.array([[self.ids[raw] for raw in ids] for ids in lines], dtype=np.int64)


def instances(parsed: ParsedFile, sequences: np.ndarray, target_of) -> tuple[np.ndarray, np.ndarray]:
    """One (sequence, target) per target, in line order (a line with k targets is k instances)."""
    if parsed.targets is None:
        return sequences, sequences[:, -1].copy()
    rows = np.repeat(np.arange(len(sequences)), [len(t) for t in parsed.targets])
    targets = np.array([target_of(t) for ts in parsed.targets for t in ts], dtype=np.int64)
    return sequences[rows], targets


def released_split(inputs: np.ndarray, targets: np.ndarray, seed: int, path: Path) -> dict[str, TaskSplit]:
    """Shuffle, then train_ditto.py's 80/5/15 split (train [:dev], valid [dev:int(dev*0.75)], test after)."""
    n = len(targets)
    dev = -1 * int(SPLIT_PERCENTAGE * float(n))
    valid_end = int(dev * 0.75)
    if dev == 0 or valid_end == 0:
        raise DataFormatError(path, None, f"{n} instances are too few for the 80/5/15 split (need at least 10)")
    order = np.random.RandomState(seed).permutation(np.arange(n))
    inputs, targets = inputs[order], targets[order]
    return {"train": TaskSplit(inputs[:dev], targets[:dev]),
            "valid": TaskSplit(inputs[dev:valid_end], targets[dev:valid_end]),
            "test": TaskSplit(inputs[valid_end:], targets[valid_end:])}


def left_pad(split: TaskSplit, width: int) -> TaskSplit:
    """Sequences left-padded with 0 to `width` (files of different lengths share one input width)."""
    missing = width - split.inputs.shape[1]
    if missing == 0:
        return split
    return TaskSplit(np.pad(split.inputs, ((0, 0), (missing, 0))), split.targets)


def load(directory: Path, options: DittoOptions) -> Dataset:
    paths, inference = find_files(directory, options)
    kinds = [TaskKind.NEXT_ITEM] + [TaskKind.CLASS if k in options.class_tasks else TaskKind.ITEM
                                    for k in range(2, len(paths) + 1)]
    parsed = [read_file(path, kind is not TaskKind.NEXT_ITEM) for path, kind in zip(paths, kinds)]
    later_parsed = {k: read_file(path, kinds[k - 1] is not TaskKind.NEXT_ITEM) for k, path in sorted(inference.items())}
    for file in [*parsed, *later_parsed.values()]:
        check_integers(file, "item id", enumerate(file.sources))
    for number, file in [*enumerate(parsed, start=1), *later_parsed.items()]:
        if kinds[number - 1] is not TaskKind.NEXT_ITEM:
            what = "class label" if kinds[number - 1] is TaskKind.CLASS else "target item id"
            check_integers(file, what, enumerate(file.targets))

    dictionary = ItemDictionary({raw for ids in parsed[0].sources for raw in ids})
    known, class_ids = [], {}
    for number, (file, kind) in enumerate(zip(parsed, kinds), start=1):
        dictionary.extend(file.sources)
        if kind is TaskKind.ITEM:
            dictionary.extend(file.targets)
        elif kind is TaskKind.CLASS:
            labels = sorted({t for ts in file.targets for t in ts}, key=int)
            class_ids[number] = {label: index for index, label in enumerate(labels)}
        known.append(dictionary.n_items)
    for number, file in later_parsed.items():
        dictionary.extend(file.sources)
        if kinds[number - 1] is TaskKind.ITEM:
            dictionary.extend(file.targets)

    def target_of(number: int, path: Path):
        if kinds[number - 1] is not TaskKind.CLASS:
            def item(raw):
                if dictionary.ids[raw] == 0:
                    raise DataFormatError(path, None, "target item id 0 is the padding id, never a target")
                return dictionary.ids[raw]
            return item
        labels = class_ids[number]

        def label(raw):
            if raw not in labels:
                raise DataFormatError(path, None, f"class label {raw} does not occur in task{number}.csv")
            return labels[raw]
        return label

    splits, laters = [], {}
    for number, file in enumerate(parsed, start=1):
        inputs, targets = instances(file, dictionary.map(file.sources, file.path), target_of(number, file.path))
        splits.append(released_split(inputs, targets, options.seed, file.path))
    for number, file in later_parsed.items():
        inputs, targets = instances(file, dictionary.map(file.sources, file.path), target_of(number, file.path))
        laters[number] = released_split(inputs, targets, options.seed, file.path)["test"]
    width = max(split.inputs.shape[1] for split in [*(s for task in splits for s in task.values()), *laters.values()])

    tasks = []
    for number, (kind, split) in enumerate(zip(kinds, splits), start=1):
        n_targets = len(class_ids[number]) if kind is TaskKind.CLASS else known[number - 1]
        later = left_pad(laters[number], width) if number in laters else None
        tasks.append(Task(f"T{number}-{kind.value}", kind, n_targets,
                          **{name: left_pad(s, width) for name, s in split.items()},
                          description=f"{paths[number - 1].name}" + (" (+ later data)" if later is not None else ""),
                          n_items_known=known[number - 1], shared_targets=kind is TaskKind.ITEM, later=later))
    raw_ids = [raw for raw, _ in sorted(dictionary.ids.items(), key=lambda pair: pair[1])]
    return Dataset("ditto", dictionary.n_items, tasks,
                   info={"folder": str(directory), "raw_ids": raw_ids, "class_tasks": list(options.class_tasks)})


@DATASETS.register("ditto")
class Ditto(DatasetAdapter):
    Options = DittoOptions
    needs_data_dir = True
    summary = "DITTO's released layout (task1.csv, task<k>.csv, task<k>_inference.csv): a time-aware task sequence"

    @classmethod
    def load(cls, options: DittoOptions, data_dir: Path | None) -> Dataset:
        return load(Path(data_dir), options)


def test_size(n: int) -> int:
    """Instances in the test part of a file of n instances (train_ditto.py L96-98)."""
    dev = -1 * int(SPLIT_PERCENTAGE * float(n))
    return n - (n + int(dev * 0.75)) if dev else 0


def later_lines(later: TaskSplit, seed: int) -> TaskSplit:
    """The rows of an inference file whose test part, once shuffled and split as the released
    scripts do, is exactly `later` in its order: the smallest file size with that many test
    instances, `later` at the rows the permutation sends to the test part, and the other
    rows (the train and valid parts, which nothing reads) repeating `later`."""
    m = len(later)
    n = next(n for n in range(10, 8 * m + 20) if test_size(n) == m)
    order = np.random.RandomState(seed).permutation(np.arange(n))
    rows = np.arange(n) % m
    rows[order[n - m:]] = np.arange(m)
    return later.subset(rows)


def write_release(dataset: Dataset, directory: Path, seed: int = 0) -> list[Path]:
    """Write a time-aware dataset in DITTO's layout: task<k>.csv with every instance of task k
    (train, valid, test; one target per line), and task<k>_inference.csv whose test part under
    the split `seed` is exactly task k's `later` split (`later_lines`). Raw ids are the
    dataset's item ids and class labels its class numbers. Reading the folder back splits each
    task file again (80/5/15, as the released scripts do); item ids come back numbered as the
    released loader numbers them (Dataset.info["raw_ids"] maps them back to these)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def write(path: Path, task: Task, splits: list[TaskSplit]) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for split in splits:
                for sequence, target in zip(split.inputs.tolist(), split.targets.tolist()):
                    line = ",".join(map(str, sequence))
                    handle.write(line + "\n" if task.kind is TaskKind.NEXT_ITEM else f"{line},,{target}\n")
        written.append(path)

    for number, task in enumerate(dataset.tasks, start=1):
        if number == 1 and task.kind is not TaskKind.NEXT_ITEM:
            raise BenchError("ditto layout: the first task must be the next-item task")
        if number > 1 and task.kind is TaskKind.ITEM and not task.shared_targets:
            raise BenchError(f"ditto layout: task {task.name}'s targets are not shared item ids (shared_targets)")
        write(directory / f"task{number}.csv", task, [task.train, task.valid, task.test])
        if task.later is not None:
            write(directory / f"task{number}_inference.csv", task, [later_lines(task.later, seed)])
    return written
