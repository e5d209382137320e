"""Delimited rating/profile tables read by pyarrow, with a line-exact error when they are bad.

pyarrow parses and converts in C++ (multi-threaded), which is what makes 25M-row
`ratings.csv` files load in seconds; but its errors do not reliably name the line. When it
fails, a plain line scan over the same file finds the first bad line and says what is wrong.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from bench.errors import DataFormatError
from bench.datasets.compression import DECOMPRESS_ERRORS, arrow_source, compression, open_text, read_bytes

ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}


@dataclass
class Column:
    name: str
    type: str = "int"  # int, float or str


def read_table(path: Path, columns: list[Column], sep: str, header: bool = False,
               encoding: str = "utf-8") -> pd.DataFrame:
    """Every line must have exactly len(columns) fields; returns a DataFrame of those columns."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "file not found")
    compression(path)  # an archive is named, not parsed as garbage
    try:
        return _fast(path, columns, sep, header, encoding)
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError, OSError, EOFError):
        _locate(path, columns, sep, header, encoding)
        raise DataFormatError(path, None, "could not be parsed as a table separated by "
                              f"'{_show(sep)}' with columns {', '.join(c.name for c in columns)}") from None


def _fast(path: Path, columns: list[Column], sep: str, header: bool, encoding: str) -> pd.DataFrame:
    source: object = arrow_source(path)
    delimiter = sep
    if len(sep) > 1:  # pyarrow takes one-byte delimiters only (ML-1M uses '::')
        delimiter = "\x1f"
        source = io.BytesIO(read_bytes(path).replace(sep.encode(), b"\x1f"))
    table = pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=[c.name for c in columns], skip_rows=int(header),
                                       encoding=encoding, block_size=64 << 20),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, quote_char=False, escape_char=False),
        convert_options=pacsv.ConvertOptions(column_types={c.name: ARROW_TYPES[c.type] for c in columns},
                                             strings_can_be_null=False, quoted_strings_can_be_null=False),
    )
    if any(table.column(c.name).null_count for c in columns):
        raise pa.ArrowInvalid("empty field")
    return table.to_pandas()


def _show(sep: str) -> str:
    return {"\t": "\\t"}.get(sep, sep)


def _locate(path: Path, columns: list[Column], sep: str, header: bool, encoding: str) -> None:
    """Raise DataFormatError at the first line the fast path would reject."""
    with open_text(path, encoding=encoding, errors="strict", newline="") as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if header and number == 1:
                    continue
                line = line.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split(sep)
                if len(fields) != len(columns):
                    raise DataFormatError(path, number, f"expected {len(columns)} fields separated by "
                                          f"'{_show(sep)}' ({', '.join(c.name for c in columns)}), got {len(fields)}")
                for column, value in zip(columns, fields):
                    problem = _check(column, value)
                    if problem:
                        raise DataFormatError(path, number, problem)
        except UnicodeDecodeError:
            raise DataFormatError(path, number + 1 if "number" in locals() else 1,
                                  f"not {encoding} text") from None
        except DECOMPRESS_ERRORS as error:
            raise DataFormatError(path, None, f"damaged compressed data ({error})") from None


def _check(column: Column, value: str) -> str | None:
    if value == "":
        return f"empty {column.name}"
    try:
        if column.type == "int":
            int(value)
        elif column.type == "float":
            float(value)
    except ValueError:
        return f"{column.name} '{value}' is not {'an integer' if column.type == 'int' else 'a number'}"
    return None
