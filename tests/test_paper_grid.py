"""benchmarks/paper_grid.sh: one run per method and seed, resumed by a second call, publishable."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results import leaderboard
from tests import stopping

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--epochs", "1", "--limit-train-batches", "1", "--limit-eval-users", "20", "--device", "cpu",
         "--set", "backbone.embedding_dim=8", "--set", "dataset_options.n_users=60"]


def _grid(results: Path, seconds: int = 0, stopping_after: str | None = None) -> subprocess.CompletedProcess:
    """Run the grid script; with `stopping_after` every run stops itself after that function
    (tests/stopping.py), so the script's time limit cuts the grid however fast the machine is."""
    python = Path(sys.executable).parent
    env = {**os.environ, "PAPER_GRID_METHODS": "SinMo DNN", "PAPER_GRID_SEEDS": "0"}
    if stopping_after is not None:
        python = results.parent / "bin"  # its `python -m bench ...` runs under tests/stopping.py
        python.mkdir(exist_ok=True)
        stopped = shlex.join(stopping.command(stopping_after, "MODULE")[:-1])  # ... -- (then MODULE ARGS)
        (python / "python").write_text(f'#!/bin/sh\n[ "$1" = -m ] && shift\nexec {stopped} "$@"\n')
        (python / "python").chmod(0o755)
        env = stopping.environment(**{k: v for k, v in env.items() if k.startswith("PAPER_GRID_")})
    env["PATH"] = f"{python}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "paper_grid.sh"), str(results), "2", str(seconds),
                           *SMALL], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_grid_runs_each_method_alone_resumes_and_publishes(tmp_path):
    results = tmp_path / "results"
    # cut by its time limit part-way (or before a run began): the next call goes on. The runs stop
    # themselves after their first step, so the limit cuts the grid even on a machine fast enough
    # to finish it in time.
    cut = _grid(results, seconds=2, stopping_after="bench.results.store:RunStore.save_record")
    assert cut.returncode == 124, cut.stderr
    done = _grid(results)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()[0::3]) == ["synthetic-paper-DNN-s0", "synthetic-paper-SinMo-s0"]
    assert "rc=0" in done.stdout and "rc=1" not in done.stdout and "rc=2" not in done.stdout
    for method in ("DNN", "SinMo"):
        config = json.loads((results / "runs" / f"synthetic-paper-{method}-s0" / "config.json").read_text())
        assert config["preset"] == "paper" and config["methods"] == [method]
        assert config["backbone"]["dilations"] == [1, 4, 1, 4, 1, 4, 1, 4]  # the preset, under the --set
    again = _grid(results)  # finished runs: --resume has nothing left to do
    assert again.returncode == 0 and again.stdout.count("rc=0") == 2, again.stdout
    for method in ("DNN", "SinMo"):
        leaderboard.publish(results, f"synthetic-paper-{method}-s0")
    text = leaderboard.generate(results)
    assert text.count("### paper defaults") == 1 and "| SinMo " in text and "| DNN " in text


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_grid_trains_one_t1_model_per_seed_for_the_methods_that_share_it(tmp_path, t1_cache_root):
    """3 methods x 3 seeds, 3 processes at a time: the T1 cache trains each seed's T1 once, and a
    run without the cache gets the same numbers, bit for bit."""
    from bench.cli import main
    from bench.results.store import RunStore

    env = {**os.environ, "PAPER_GRID_METHODS": "SinMoAll FineSmax SinMo", "PAPER_GRID_SEEDS": "0 1 2",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "paper_grid.sh"), str(tmp_path), "3", "0", *SMALL],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.count("rc=0") == 9, done.stdout + done.stderr
    logs = [path.read_text() for path in sorted((tmp_path / "logs").glob("*.log"))]
    trained = [line.split()[2] for log in logs for line in log.splitlines() if line.startswith("t1-cache: training")]
    loaded = [line.split()[2] for log in logs for line in log.splitlines() if line.startswith("t1-cache: loaded")]
    assert len(trained) == len(set(trained)) == 3 and sorted(set(loaded)) == sorted(trained) and len(loaded) == 6
    assert main(["run", "--preset", "paper", "--methods", "SinMoAll", "--seed", "1", "--run-id", "alone", "--quiet",
                 "--no-t1-cache", "--results", str(tmp_path), *SMALL]) == 0
    grid, alone = (RunStore.open(name, tmp_path).load_record("SinMoAll") for name in ("synthetic-paper-SinMoAll-s1",
                                                                                         "alone"))
    assert json.dumps([s["scores"] for s in grid.steps]) == json.dumps([s["scores"] for s in alone.steps])
