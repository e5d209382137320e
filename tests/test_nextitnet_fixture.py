"""NextItNet results stay bit-identical across the backbone seam (issue 23).

tests/fixtures/nextitnet_r_before_seam.json holds, for every method and named variant on the
tiny config (one seed, CPU), every metric of every step and extra row, made on the commit it
names before the backbone seam. This test reruns them all and asserts exact equality (floats
round-trip through JSON exactly), plus the parameter count and #B of every step.

Regenerate (only when a result is *meant* to change, saying why in the commit):
    python tests/test_nextitnet_fixture.py --write
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "nextitnet_r_before_seam.json"


def rows() -> list[str]:
    from bench.registry import METHODS, resolve_methods

    names = resolve_methods(["all"])
    return [row for base in names for row in [base, *METHODS.variant_names(base)]]


def results(root: Path, methods: list[str]) -> dict[str, dict]:
    """Every row's steps (scores, parameters, #B) and extra rows, on the tiny config."""
    from bench.experiments.runner import run
    from bench.results.store import RunStore
    from tests.conftest import tiny_config

    config = tiny_config(methods=methods)
    store = RunStore.create(config.to_dict(), root)
    out = {}
    for record in run(config, store, progress=False):
        out[record.method] = {
            "steps": [{"row": s["row"], "scores": s["scores"], "parameters": s["parameters"],
                       "backbones": s["backbones"]} for s in record.steps],
            "variants": record.variants,
        }
    return out


def test_every_method_is_bit_identical_to_the_stored_results(tmp_path):
    stored = json.loads(FIXTURE.read_text())
    now = results(tmp_path, list(stored["methods"]))
    for method, expected in stored["methods"].items():
        assert now[method] == expected, f"{method} differs from {FIXTURE.name} (made on {stored['commit']})"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import os
    import tempfile

    import torch

    torch.set_num_threads(1)
    os.environ["BENCH_T1_CACHE"] = tempfile.mkdtemp()  # a fresh T1 cache, as the test's
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip()
    with tempfile.TemporaryDirectory() as root:
        data = {"commit": commit, "config": "tests/conftest.py tiny_config, seed 0, CPU, 1 thread",
                "methods": results(Path(root), rows())}
    FIXTURE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(data['methods'])} rows, commit {commit})")
elif __name__ == "__main__":
    pytest.main([__file__, "-q"])
