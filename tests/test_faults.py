"""Faults a multi-hour GPU run must survive (issue 17), one test (or a few) per row of the
issue's table: divergence, kills inside a task, damaged files, unfinished runs published,
up-front checks, resume of the stored settings, SIGTERM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import TrainConfig
from bench.engine import checkpoints
from bench.experiments.runner import run
from bench.io import read_json
from bench.results.store import RunStore
from tests.conftest import tiny_config


def _fit_logs(store: RunStore, method: str) -> list[dict]:
    """epochs.json without the wall-clock seconds (the one thing a resume may change)."""
    return [{k: v for k, v in log.items() if k != "seconds"}
            for log in read_json(store.method_dir(method) / "epochs.json")]


def _interrupt_after_writes(monkeypatch, n: int, seen: list):
    """Raise KeyboardInterrupt (as Ctrl-C or SIGTERM does) right after the n-th in-task
    checkpoint is written, remembering where inside its fit it was."""
    original = checkpoints.Journal.write

    def write(self):
        original(self)
        if self.position is not None:  # inside a fit (not the record of a finished one)
            seen.append(dict(self.position["loop"], call=self.position["call"], scope=self.scope))
            if len(seen) == n:
                raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.Journal, "write", write)


def _count_optimiser_steps(monkeypatch) -> list[int]:
    count, original = [0], torch.optim.Adam.step

    def step(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return count


# ------------------------------------------------- row 2: a kill in the middle of a task


@pytest.mark.parametrize("method, writes", [("SinMo", 2), ("SinMo", 9), ("TERACON", 9), ("Conure", 32),
                                            ("MTL", 8)])
def test_kill_inside_a_task_resumes_mid_epoch_bit_identical(method, writes, results_root, monkeypatch):
    """The in-task checkpoint: the resumed run's R and epoch logs equal an uninterrupted one's
    exactly (CPU), and it continued in the middle of an epoch instead of the task's start."""
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, patience=2, checkpoint_every_steps=2)
    config = tiny_config(methods=[method], train=train)
    steps = _count_optimiser_steps(monkeypatch)
    reference = RunStore.create(config.to_dict(), results_root / "reference")
    (expected,) = run(config, reference, progress=False)
    total, steps[0] = steps[0], 0

    store = RunStore.create(config.to_dict(), results_root / "killed")
    seen: list = []
    with monkeypatch.context() as patch:
        _interrupt_after_writes(patch, writes, seen)
        with pytest.raises(KeyboardInterrupt):
            run(config, store, progress=False)
    assert seen[-1]["index"] > 0, "stopped in the middle of an epoch"
    if method == "Conure":
        assert seen[-1]["call"] == 1, "Conure's retrain: the step's first fit had finished"
    assert list(store.directory.rglob("*.fit.pt")) or (store.method_dir(method) / "fit.pt").exists()

    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "killed"), progress=False)
    assert steps[0] == total, "no optimiser step done twice: the kill came right after a checkpoint"
    np.testing.assert_array_equal(resumed.matrix(), expected.matrix())
    assert _fit_logs(store, method) == _fit_logs(reference, method)
    assert not list(store.directory.rglob("fit*.pt")) and not list(store.directory.rglob("*.fit*.pt"))
