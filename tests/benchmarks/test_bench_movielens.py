"""Parse-and-cache throughput of the movielens adapter on an ML-25M-sized ratings.csv.

Run for real with:  BENCH_FULL=1 python -m pytest tests/benchmarks --benchmark-enable -s
(25,000,095 rows, the size of ML-25M). Without BENCH_FULL the file has BENCH_ROWS rows
(default 200,000), so the normal test run, where pyproject disables benchmarking and
each benchmark body runs once, stays fast. Targets: first load < 60 s and < 6 GB peak,
cached load < 5 s.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from bench.registry import DATASETS
from bench.datasets.base import load_dataset

DATASETS.get("movielens")  # import torch and the adapter now, not inside the timed and traced load

FULL_ROWS = 25_000_095  # ML-25M
ROWS = FULL_ROWS if os.environ.get("BENCH_FULL") == "1" else int(os.environ.get("BENCH_ROWS", "200000"))

GENERATOR = """
import sys, numpy as np, pyarrow as pa, pyarrow.csv as pacsv
rows, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
n_users, n_items = max(20, rows * 162_541 // 25_000_095), max(50, rows * 59_047 // 25_000_095)
users = np.sort(rng.integers(1, n_users + 1, rows))
items = (rng.random(rows) ** 3 * n_items).astype(np.int64) + 1
ratings = rng.integers(1, 11, rows) / 2
stamps = rng.integers(789_652_009, 1_574_327_703, rows)
with open(path, "w") as handle:
    handle.write("userId,movieId,rating,timestamp\\n")
table = pa.table({"u": users, "m": items, "r": ratings, "t": stamps})
with open(path, "ab") as handle:
    pacsv.write_csv(table, handle, write_options=pacsv.WriteOptions(include_header=False))
"""


@pytest.fixture(scope="module")
def ratings_dir(tmp_path_factory) -> Path:
    """Written by a child process, so its memory does not count toward the load's peak."""
    folder = tmp_path_factory.mktemp("ml-synthetic")
    subprocess.run([sys.executable, "-c", GENERATOR, str(ROWS), str(folder / "ratings.csv")], check=True)
    return folder


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def test_first_load(benchmark, ratings_dir, tmp_path):
    caches = iter(range(1000))

    def first_load():
        return load_dataset("movielens", {"cache_dir": str(tmp_path / f"cache-{next(caches)}")}, ratings_dir)

    tracemalloc.start()
    started = time.perf_counter()
    dataset = benchmark.pedantic(first_load, rounds=1, iterations=1)
    seconds = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dataset.info["cache"] == "miss"
    benchmark.extra_info.update({
        "rows": ROWS, "seconds": round(seconds, 2), "rows_per_second": round(ROWS / seconds),
        "peak_traced_numpy_python_mb": round(traced_peak / 2**20),
        "peak_arrow_pool_mb": round(pa.default_memory_pool().max_memory() / 2**20),
        "peak_rss_process_mb": round(_peak_rss_bytes() / 2**20),
        "users": len(dataset.tasks[0].train) + len(dataset.tasks[0].valid) + len(dataset.tasks[0].test),
    })
    print(benchmark.extra_info)


def test_cached_load(benchmark, ratings_dir, tmp_path):
    options = {"cache_dir": str(tmp_path / "cache")}
    load_dataset("movielens", options, ratings_dir)  # fills the cache
    started = time.perf_counter()
    dataset = benchmark.pedantic(lambda: load_dataset("movielens", options, ratings_dir), rounds=3, iterations=1)
    seconds = (time.perf_counter() - started) / 3
    assert dataset.info["cache"] == "hit"
    benchmark.extra_info.update({"rows": ROWS, "seconds_per_load": round(seconds, 2)})
    print(benchmark.extra_info)
