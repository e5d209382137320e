"""Atomic writes leave files with the permissions the user's umask allows, as open() would."""

import os
import stat

import pytest

from bench.io import write_json, write_text


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        write_text(tmp_path / "table.md", "| a |\n")
        write_json(tmp_path / "sub" / "config.json", {"seed": 0})
    finally:
        os.umask(previous)
    for path in (tmp_path / "table.md", tmp_path / "sub" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == expected
    assert (tmp_path / "table.md").read_text() == "| a |\n"
