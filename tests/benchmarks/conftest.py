"""Speed benchmarks run only on request: `pytest tests/benchmarks --benchmark-enable`.

pyproject's addopts disable pytest-benchmark, which would still run each benchmark once as
a plain test; they are skipped instead so the normal test run stays fast.
"""

import pytest


def pytest_collection_modifyitems(config, items):
    enabled = (config.getoption("benchmark_enable") or config.getoption("benchmark_only")
               or not config.getoption("benchmark_disable"))
    if enabled:
        return
    skip = pytest.mark.skip(reason="speed benchmark: run with --benchmark-enable")
    for item in items:
        if "benchmark" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)

