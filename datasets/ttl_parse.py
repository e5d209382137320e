"""Vectorised reading of TTL-format files (`0,0,4,17,,311`), with exact error locations.

The fast path hands the whole file to pyarrow (C++ split and integer cast, no Python loop
per line). If anything about the file is off, it cannot say which line, so the file is
re-read with the line parser of `ttl_format`, which either raises an error naming the
file and line or, for valid-but-unusual spacing the fast path rejects, returns the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bench.errors import DataFormatError
from bench.datasets.compression import arrow_source, compression, open_text
from bench.datasets.ttl_format import checked_lines


@dataclass
class ParsedLines:
    """Non-blank lines of a TTL file: sequences (n, width) and their targets, flattened."""

    sequences: np.ndarray
    target_values: np.ndarray  # all targets, line after line
    target_counts: np.ndarray  # targets per line (0 for sequence-only files)


def read_ttl(path: Path, with_targets: bool) -> ParsedLines:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    compression(path)  # an archive is named, not parsed as garbage
    parsed = _fast(path, with_targets)
    return parsed if parsed is not None else _slow(path, with_targets)


def _read_lines(path: Path) -> pa.ChunkedArray:
    table = pacsv.read_csv(
        arrow_source(path),
        read_options=pacsv.ReadOptions(column_names=["line"], block_size=32 << 20),
        parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                                         ignore_empty_lines=True),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()},
                                             strings_can_be_null=False),
    )
    lines = pc.utf8_trim_whitespace(table.column("line"))
    return lines.filter(pc.greater(pc.utf8_length(lines), 0))


def _ints(tokens: pa.ChunkedArray) -> np.ndarray:
    flat = pc.list_flatten(tokens)
    return pc.cast(flat, pa.int64()).to_numpy() if len(flat) else np.zeros(0, dtype=np.int64)


def _lengths(tokens: pa.ChunkedArray) -> np.ndarray:
    return pc.list_value_length(tokens).to_numpy(zero_copy_only=False).astype(np.int64)


def _fast(path: Path, with_targets: bool) -> ParsedLines | None:
    """None when the file has any problem; the slow path then finds and names it."""
    try:
        lines = _read_lines(path)
        if len(lines) == 0:
            return None
        if with_targets:
            halves = pc.split_pattern(lines, ",,", max_splits=1)
            if pc.min(_as_array(pc.list_value_length(halves))).as_py() != 2:
                return None
            body, tail = pc.list_element(halves, 0), pc.list_element(halves, 1)
            target_tokens = pc.split_pattern_regex(pc.utf8_trim_whitespace(tail), "[ ,]+")
            targets, counts = _ints(target_tokens), _lengths(target_tokens)
        else:
            body, targets, counts = lines, np.zeros(0, dtype=np.int64), np.zeros(len(lines), dtype=np.int64)
        tokens = pc.split_pattern(body, ",")
        widths = _lengths(tokens)
        if widths.min() != widths.max():
            return None
        values = _ints(tokens)
        if (values < 0).any() or (len(targets) and targets.min() < 0):
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeDecodeError, OSError, EOFError):
        return None
    return ParsedLines(values.reshape(len(widths), int(widths[0])), targets, counts)


def _as_array(array):
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _slow(path: Path, with_targets: bool) -> ParsedLines:
    """Line-by-line parse that raises `DataFormatError(path, line, ...)` at the first problem."""
    sequences, targets, counts = [], [], []
    for sequence, line_targets in checked_lines(path, with_targets):
        sequences.append(sequence)
        targets.extend(line_targets)
        counts.append(len(line_targets))
    return ParsedLines(np.array(sequences, dtype=np.int64), np.array(targets, dtype=np.int64),
                       np.array(counts, dtype=np.int64))


def line_number(path: Path, row: int) -> int:
    """1-based line number of the `row`-th non-blank line (for errors found after parsing)."""
    seen = -1
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                seen += 1
                if seen == row:
                    return number
    return seen + 1
