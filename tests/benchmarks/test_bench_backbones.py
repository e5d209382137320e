"""Speed of SASRec against NextItNet at the same width and sequence length (issue 23).

Train step (one Adam step of the next-item loss, batch 128) and evaluation (full-softmax
scores of 512 users) for each backbone, d=64, L=20, 1000 items; `extra_info` has items/s.
CPU by default; BENCH_BENCHMARK_DEVICE=cuda times them on a GPU (benchmarks/gpu_check.sh):

    python -m pytest tests/benchmarks/test_bench_backbones.py --benchmark-enable
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.config import BackboneConfig
from bench.engine.backbone import TiedItemHead, build_encoder

N_ITEMS, SEQ_LEN, DIM, BATCH, EVAL_BATCH = 1000, 20, 64, 128, 512
DEVICE = torch.device(os.environ.get("BENCH_BENCHMARK_DEVICE", "cpu"))
BACKBONES = {
    "nextitnet": BackboneConfig(embedding_dim=DIM),  # dilations (1, 4): 2 blocks
    "sasrec": BackboneConfig(embedding_dim=DIM, name="sasrec"),  # 2 blocks, 1 head
}


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def _model(name: str):
    torch.manual_seed(0)
    encoder = build_encoder(N_ITEMS, BACKBONES[name]).to(DEVICE)
    return encoder, TiedItemHead(encoder.embedding).to(DEVICE)


def _sequences(n: int) -> torch.Tensor:
    # a quarter of each row left-padded, as real data: SASRec takes its masked attention path
    rows = torch.randint(1, N_ITEMS + 1, (n, SEQ_LEN), generator=torch.Generator().manual_seed(1))
    rows[: n // 2, : SEQ_LEN // 4] = 0
    return rows.to(DEVICE)


def _rate(benchmark, per_call: int, name: str) -> None:
    if benchmark.stats:
        benchmark.extra_info["items_per_s"] = per_call / benchmark.stats.stats.mean
    benchmark.extra_info.update(backbone=name, device=str(DEVICE), threads=torch.get_num_threads())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_train_step(benchmark, name):
    encoder, head = _model(name)
    optimizer = torch.optim.Adam(list(encoder.parameters()) + [head.bias], lr=1e-3)
    inputs = _sequences(BATCH)

    def step():
        optimizer.zero_grad(set_to_none=True)
        logits = head(encoder(inputs)[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs[:, 1:].flatten(), ignore_index=0)
        loss.backward()
        optimizer.step()
        _sync()
        return float(loss.detach())

    assert benchmark(step) > 0
    _rate(benchmark, BATCH * (SEQ_LEN - 1), name)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_eval_step(benchmark, name):
    encoder, head = _model(name)
    encoder.eval()
    inputs = _sequences(EVAL_BATCH)

    @torch.no_grad()
    def step():
        scores = head(encoder(inputs[:, :-1])[:, -1])
        _sync()
        return scores

    assert benchmark(step).shape == (EVAL_BATCH, N_ITEMS + 1)
    _rate(benchmark, EVAL_BATCH, name)
