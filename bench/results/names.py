"""The one rule for a name that becomes a file or folder of the results.

Run ids, sweep ids, published ids, study names and method rows are joined to the results
folder; a name such as `..`, `.`, `a/../../x` or an absolute path would write (or, on
`leaderboard --publish --force`, delete) outside the place it belongs to. So every such
name is one path component of safe characters, checked here before any file is written.
"""

from __future__ import annotations

import re

from bench.errors import BenchError

MAX_LENGTH = 128
# Starts with a letter or digit: never `.`/`..`, a hidden file (`.lock`) or an option (`-x`).
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def is_safe_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_LENGTH and _SAFE.fullmatch(value) is not None


def safe_name(value: object, what: str) -> str:
    """`value` unchanged when it is a safe name, else a BenchError (the CLI's one `error:`
    line) saying what `what` must look like."""
    if not is_safe_name(value):
        raise BenchError(f"{what} {value!r}: expected one name of letters, digits, '.', '_', '+' and '-', "
                         f"starting with a letter or digit, at most {MAX_LENGTH} characters (not a path)")
    return value  # type: ignore[return-value]
