"""Speed of the NextItNet backbone and of one tiny end-to-end run.

Save a baseline, then compare a later checkout against it (fails on a >30% slowdown):

    python -m pytest tests/benchmarks --benchmark-enable \\
        --benchmark-storage=file://benchmarks/baseline --benchmark-save=baseline
    python -m pytest tests/benchmarks --benchmark-enable \\
        --benchmark-storage=file://benchmarks/baseline --benchmark-compare --benchmark-compare-fail=mean:30%
"""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.engine.backbone import NextItNet, TiedItemHead
from bench.cli import main
from bench.config import BackboneConfig
from bench.engine.metrics import ranking_metrics

N_ITEMS, SEQ_LEN, BATCH, EVAL_BATCH = 1000, 20, 128, 512


@pytest.fixture
def model():
    torch.manual_seed(0)
    encoder = NextItNet(N_ITEMS, BackboneConfig())  # the default shape: d=64, dilations (1, 4)
    return encoder, TiedItemHead(encoder.embedding)


def _sequences(n: int) -> torch.Tensor:
    return torch.randint(1, N_ITEMS + 1, (n, SEQ_LEN), generator=torch.Generator().manual_seed(1))


def _rate(benchmark, per_call: int, unit: str) -> None:
    if benchmark.stats:  # absent when benchmarks are disabled
        benchmark.extra_info[f"{unit}_per_s"] = per_call / benchmark.stats.stats.mean
    benchmark.extra_info["threads"] = torch.get_num_threads()


def test_train_step(benchmark, model):
    """One Adam step of the next-item loss on a batch of 128 sequences (items = predicted positions)."""
    encoder, head = model
    params = list(encoder.parameters()) + [head.bias]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    inputs = _sequences(BATCH)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = head(encoder(inputs)[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    loss = benchmark(step)
    assert loss > 0
    _rate(benchmark, BATCH * (SEQ_LEN - 1), "items")


def test_eval_step(benchmark, model):
    """Full-softmax scoring and MRR/HR/NDCG@5 of 512 users (items = users ranked)."""
    encoder, head = model
    encoder.eval()
    inputs = _sequences(EVAL_BATCH)

    @torch.no_grad()
    def step():
        scores = head(encoder(inputs[:, :-1])[:, -1])
        return ranking_metrics(scores, inputs[:, -1])

    metrics = benchmark(step)
    assert 0.0 <= metrics["mrr@5"] <= 1.0
    _rate(benchmark, EVAL_BATCH, "items")


def test_tiny_default_run(benchmark, tmp_path):
    """The whole pipeline (data, three baselines over six tasks, evaluation, store) at a small size."""
    counter = itertools.count()

    def one_run():
        return main(["run", "--methods", "SinMo,SinMoAll,FineSmax", "--epochs", "1", "--quiet",
                     "--no-matrices", "--set", "dataset_options.n_users=200",
                     "--results", str(tmp_path), "--run-id", f"r{next(counter)}"])

    assert benchmark.pedantic(one_run, rounds=3, iterations=1) == 0
    _rate(benchmark, 1, "runs")
