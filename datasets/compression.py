"""Compressed data files, recognised by their first bytes rather than their names.

A gzip file is read as the text inside it (the release's CSVs are often shipped gzipped,
and renaming does not change the bytes); other archives are named in the error instead of
failing later as "non-integer id (garbage)". Both the fast (pyarrow) and the error-locating
(line) parsers open files through here, so they see the same text: BOM stripped, any of
LF, CRLF or CR line ends.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import IO

import pyarrow as pa

from bench.errors import DataFormatError

MAGIC = {
    b"\x1f\x8b": "gzip",
    b"PK\x03\x04": "zip archive",
    b"BZh": "bzip2 file",
    b"\xfd7zXZ\x00": "xz file",
    b"\x28\xb5\x2f\xfd": "zstd file",
}


def compression(path: Path) -> str | None:
    """'gzip' for a gzip file (readable here), None for plain text; other formats are an error."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as error:
        raise DataFormatError(path, None, f"cannot read ({error.strerror})") from None
    kind = next((name for magic, name in MAGIC.items() if head.startswith(magic)), None)
    if kind not in (None, "gzip"):
        raise DataFormatError(path, None, f"is a {kind}, not text; decompress it first "
                              "(gzip files are read as they are)")
    return kind


def arrow_source(path: Path) -> object:
    """What pyarrow's CSV reader should read: the path, or a decompressing stream."""
    return pa.input_stream(str(path), compression="gzip") if compression(path) else path


def read_bytes(path: Path) -> bytes:
    """The file's (decompressed) bytes."""
    data = Path(path).read_bytes()
    return gzip.decompress(data) if compression(path) else data


def open_text(path: Path, encoding: str = "utf-8", errors: str = "replace", newline: str | None = None) -> IO[str]:
    """The file as text the way the fast path reads it (a UTF-8 BOM is not part of line 1)."""
    if encoding.replace("-", "").lower() == "utf8":
        encoding = "utf-8-sig"
    if compression(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, errors=errors, newline=newline)
    return open(path, encoding=encoding, errors=errors, newline=newline)


# Errors a damaged compressed stream raises while it is read line by line.
DECOMPRESS_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
