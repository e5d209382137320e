"""The TTL/ColdRec line format, the harness's interchange format for tasks.

A line is a 0-padded input sequence, optionally followed by `,,` and the targets
(separated by spaces or commas):

    0,0,0,17,4,92,,311            (T2/T3: one target item; T4..T6: one class label)
    0,0,17,4,92,8                 (T1: the sequence alone)

`write_dataset` / `read_dataset` store a whole `Dataset` as one such file per task and
split plus a small `manifest.json`, so every dataset in the harness can be exported and
re-read exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from bench.errors import BenchError, DataFormatError
from bench.io import read_json, write_json, write_text
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit
from bench.datasets.compression import DECOMPRESS_ERRORS, open_text

SPLITS = ("train", "valid", "test")
MANIFEST = "manifest.json"
MAX_ID = 2**63 - 1  # ids are stored as int64


def format_line(sequence: Iterable[int], targets: Iterable[int] | None = None) -> str:
    line = ",".join(str(int(item)) for item in sequence)
    if targets is not None:
        line += ",," + " ".join(str(int(target)) for target in targets)
    return line


def parse_line(line: str, path: Path | str = "<string>", number: int | None = None) -> tuple[list[int], list[int]]:
    """Split one line into (sequence, targets); errors name the file and line."""
    body, separator, tail = line.strip().partition(",,")
    try:
        sequence = [int(token) for token in body.split(",")] if body else []
        targets = [int(token) for token in tail.replace(",", " ").split()] if separator else []
    except ValueError as error:
        raise DataFormatError(path, number, f"non-integer id ({error.args[0].split(': ')[-1]})") from None
    if not sequence:
        raise DataFormatError(path, number, "empty input sequence")
    if separator and not targets:
        raise DataFormatError(path, number, "',,' is followed by no target")
    if min(sequence) < 0 or (targets and min(targets) < 0):
        raise DataFormatError(path, number, "negative id")
    if max(sequence) > MAX_ID or (targets and max(targets) > MAX_ID):
        raise DataFormatError(path, number, f"id larger than {MAX_ID}")
    return sequence, targets


def checked_lines(path: Path, with_targets: bool) -> Iterator[tuple[list[int], list[int]]]:
    """(sequence, targets) of every non-blank line, checked: equal widths, targets where due.

    Every problem raises `DataFormatError(path, line, ...)`; the released-file parser uses
    this as its slow path to locate what its vectorised path rejected.
    """
    width = None
    try:
        handle = open_text(path)
    except OSError as error:
        raise BenchError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        for number, line in _lines(handle, path):
            if not line.strip():
                continue
            try:
                sequence, line_targets = parse_line(line, path, number)
            except DataFormatError as error:
                if any(mark in line for mark in ("\t", ";", "|")):
                    raise DataFormatError(path, number, f"{error.problem}; wrong delimiter? "
                                          "TTL lines are comma-separated ids, ',,' before the targets") from None
                raise
            if width is None:
                width = len(sequence)
            elif len(sequence) != width:
                raise DataFormatError(path, number, f"ragged line: {len(sequence)} items, expected {width}")
            if with_targets and not line_targets:
                raise DataFormatError(path, number, "missing ',,' and target(s)")
            if not with_targets and line_targets:
                raise DataFormatError(path, number, "unexpected ',,' in a sequence-only (T1) file")
            yield sequence, line_targets
    if width is None:
        raise DataFormatError(path, None, "no data lines")


def _lines(handle, path: Path) -> Iterator[tuple[int, str]]:
    """(number, line) pairs; a damaged compressed file is an error at the line it breaks."""
    number = 0
    try:
        for number, line in enumerate(handle, start=1):
            yield number, line
    except DECOMPRESS_ERRORS as error:
        raise DataFormatError(path, number + 1, f"damaged compressed data ({error})") from None


def read_lines(path: Path, with_targets: bool) -> TaskSplit:
    """Read a TTL file into instances: one per target (T1: the last item is the target)."""
    inputs, targets = [], []
    for sequence, line_targets in checked_lines(path, with_targets):
        for target in line_targets if with_targets else [sequence[-1]]:
            inputs.append(sequence)
            targets.append(target)
    return TaskSplit(np.array(inputs, dtype=np.int64), np.array(targets, dtype=np.int64))


def write_lines(path: Path, split: TaskSplit, with_targets: bool) -> None:
    lines = (
        format_line(sequence, [target] if with_targets else None)
        for sequence, target in zip(split.inputs.tolist(), split.targets.tolist())
    )
    write_text(path, "\n".join(lines) + "\n")


def _file_name(number: int, split: str) -> str:
    return f"T{number}.{split}.txt"


def write_dataset(dataset: Dataset, directory: Path) -> None:
    directory = Path(directory)
    manifest = {"name": dataset.name, "n_items": dataset.n_items, "tasks": []}
    for number, task in enumerate(dataset.tasks, start=1):
        with_targets = task.kind is not TaskKind.NEXT_ITEM
        for split in SPLITS:
            write_lines(directory / _file_name(number, split), task.split(split), with_targets)
        manifest["tasks"].append(
            {"name": task.name, "kind": task.kind.value, "n_targets": task.n_targets,
             "description": task.description}
        )
    write_json(directory / MANIFEST, manifest)


def read_dataset(directory: Path) -> Dataset:
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise BenchError(f"{directory}: no {MANIFEST}; is this a directory written by write_dataset?")
    try:
        manifest = read_json(manifest_path)
        tasks = []
        for number, entry in enumerate(manifest["tasks"], start=1):
            kind = TaskKind(entry["kind"])
            splits = {
                split: read_lines(directory / _file_name(number, split), kind is not TaskKind.NEXT_ITEM)
                for split in SPLITS
            }
            tasks.append(Task(entry["name"], kind, int(entry["n_targets"]), **splits,
                              description=entry.get("description", "")))
        return Dataset(manifest["name"], int(manifest["n_items"]), tasks)
    except (KeyError, ValueError, TypeError) as error:
        raise DataFormatError(manifest_path, None, f"malformed manifest ({error})") from None
