"""Tiny configurations shared by the tests: small enough for seconds on 2 CPU cores."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from bench.config import BackboneConfig, RunConfig, TrainConfig
from bench.engine.context import MethodContext
from bench.engine.training import as_tensors

TINY_DATA = {"n_users": 240, "n_items": 40, "seq_len": 8, "target_items": [24, 16], "seed": 0}


def tiny_config(**overrides) -> RunConfig:
    config = RunConfig(
        dataset="synthetic",
        dataset_options=dict(TINY_DATA),
        backbone=BackboneConfig(embedding_dim=16, dilations=[1, 2]),
        train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2),
        device="cpu",
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


@pytest.fixture(autouse=True)
def t1_cache_root(tmp_path, monkeypatch):
    """Every test gets its own T1 cache (bench/engine/t1cache.py): on, as by default, but never
    shared with another test or with the user's ~/.cache/bench."""
    root = tmp_path / "t1-cache"
    monkeypatch.setenv("BENCH_T1_CACHE", str(root))
    return root


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global RNG states (Python, NumPy, torch), whatever ran
    before it: a test's random data must not change with `-k`, `-m "not slow"` or test order."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Every test gets its own $BENCH_DATA (downloads and parsed-data caches never leak between
    tests, nor into ~/.cache/bench), and the developer's BENCH_FUSED_LOSS does not choose its loss."""
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "bench-data"))
    monkeypatch.delenv("BENCH_FUSED_LOSS", raising=False)


@pytest.fixture
def results_root(tmp_path):
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors run faster on one thread, and benchmark timings do not fight over the CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def synthetic_context(tasks, n_items: int, backbone: BackboneConfig, train: TrainConfig) -> MethodContext:
    """One CPU context for a test module (seeded), so its shared T1 model is trained once."""
    torch.manual_seed(0)
    return MethodContext(n_items=n_items, backbone=backbone, train=train, device=torch.device("cpu"), seed=0,
                         first_task=tasks[0])


def inputs_of(task) -> torch.Tensor:
    return as_tensors(task.test, torch.device("cpu"))[0]


@torch.no_grad()
def logits(method, tasks) -> list[torch.Tensor]:
    """Every task's test scores, in eval mode."""
    method.eval()
    return [method.scores(task, inputs_of(task)) for task in tasks]
