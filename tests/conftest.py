"""Shared test setup: every test gets its own data root, so caches never leak between tests."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "bench-data"))
