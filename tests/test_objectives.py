"""The bounded-memory next-item losses: the chunked one is the full softmax, the sampled one learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.config import BackboneConfig
from bench.engine.backbone import NextItNet, TiedItemHead
from bench.engine.objectives import LossSettings, loss_settings, training_loss
from bench.engine.softmax import chunked_cross_entropy, log_uniform_probabilities, sampled_cross_entropy
from bench.engine.tasks import Task, TaskKind, TaskSplit


def next_item_task(inputs: torch.Tensor, n_items: int) -> Task:
    split = TaskSplit(inputs.numpy(), inputs[:, -1].numpy())
    return Task("T1", TaskKind.NEXT_ITEM, n_items, split, split, split)


def unchunked_loss(hidden, head, inputs):
    """The loss as it was before chunking: full logits, padding targets ignored."""
    logits = head(hidden[:, :-1])
    next_items = inputs[:, 1:].masked_fill(inputs[:, :-1] == 0, 0)
    return F.cross_entropy(logits.flatten(0, 1), next_items.flatten(), ignore_index=0)


@pytest.mark.parametrize("rows", [1, 7, None])
def test_chunked_loss_and_gradients_equal_the_full_softmax(rows):
    torch.manual_seed(0)
    n_items = 50
    inputs = torch.randint(1, n_items + 1, (6, 9))
    inputs[:2, :4] = 0  # left padding
    task = next_item_task(inputs, n_items)
    encoder = NextItNet(n_items, BackboneConfig(embedding_dim=8, dilations=[1, 2]))
    head = TiedItemHead(encoder.embedding)
    with torch.no_grad():
        head.bias.normal_()
    params = list(encoder.parameters()) + [head.bias]

    reference = unchunked_loss(encoder(inputs), head, inputs)
    expected = torch.autograd.grad(reference, params)
    with loss_settings(LossSettings(chunk_rows=rows)):
        loss = training_loss(task, encoder(inputs), head, inputs, None)
    loss.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    for param, grad in zip(params, expected):
        assert grad.abs().sum() > 0
        torch.testing.assert_close(param.grad, grad, rtol=1e-5, atol=1e-7)


def softmax_problem(seed: int, rows: int, dim: int, items: int):
    """Hidden states, head weight and bias (all requiring gradients) and targets."""
    torch.manual_seed(seed)
    return (torch.randn(rows, dim, requires_grad=True), torch.randn(items, dim, requires_grad=True),
            torch.randn(items, requires_grad=True), torch.randint(0, items, (rows,)))


def test_chunked_cross_entropy_scales_with_the_outer_gradient():
    hidden, weight, bias, targets = softmax_problem(1, rows=10, dim=4, items=30)
    (3.0 * chunked_cross_entropy(hidden, weight, bias, targets, rows=3)).backward()
    expected = torch.autograd.grad(3.0 * F.cross_entropy(hidden @ weight.T + bias, targets), [hidden, weight, bias])
    for got, want in zip((hidden.grad, weight.grad, bias.grad), expected):
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # evaluation-time use keeps no gradients
        assert chunked_cross_entropy(hidden, weight, bias, targets).item() == pytest.approx(
            F.cross_entropy(hidden @ weight.T + bias, targets).item(), rel=1e-6)


def test_sampled_softmax_learns_and_reaches_every_parameter():
    torch.manual_seed(2)
    n_items = 40
    inputs = torch.randint(1, n_items + 1, (8, 6))
    task = next_item_task(inputs, n_items)
    encoder = NextItNet(n_items, BackboneConfig(embedding_dim=8, dilations=[1]))
    head = TiedItemHead(encoder.embedding)
    for sampler in ("log_uniform", "popularity"):
        with loss_settings(LossSettings(loss="sampled", negatives=10, sampler=sampler)):
            loss = training_loss(task, encoder(inputs), head, inputs, None)
        assert math.isfinite(loss.item()) and loss.item() > 0
        grads = torch.autograd.grad(loss, [encoder.embedding.weight, head.bias, encoder.blocks[0].conv1.weight])
        assert all(g.abs().sum() > 0 for g in grads)
    popularity = LossSettings(sampler="popularity").probabilities(task, n_items + 1, torch.device("cpu"))
    counts = torch.bincount(inputs.flatten(), minlength=n_items + 1).float()
    assert popularity[0] == 0 and torch.allclose(popularity[1:], counts[1:] / counts[1:].sum())


def test_log_q_correction_is_applied():
    """With a uniform sampler logQ is one constant, which softmax ignores: the sampled loss
    equals a plain softmax over the true class and the drawn negatives; with a skewed sampler
    it differs from that plain softmax by exactly the per-class logQ shift."""
    torch.manual_seed(3)
    hidden, weight, bias = torch.randn(5, 4), torch.randn(20, 4), torch.randn(20)
    targets = torch.randint(0, 20, (5,))
    for probabilities in (torch.full((20,), 1 / 20), log_uniform_probabilities(20)):
        torch.manual_seed(4)
        loss = sampled_cross_entropy(hidden, weight, bias, targets, probabilities, negatives=12)
        torch.manual_seed(4)
        sampled = torch.multinomial(probabilities, 12, replacement=True)
        classes = torch.cat([targets[:, None], sampled[None].expand(5, -1)], dim=1)
        logits = (hidden[:, None] * weight[classes]).sum(-1) + bias[classes]
        logits = logits - torch.log(12 * probabilities[classes])
        logits[:, 1:] = logits[:, 1:].masked_fill(sampled[None] == targets[:, None], float("-inf"))
        assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.zeros(5, dtype=torch.long)).item(), rel=1e-5)
        plain = (hidden[:, None] * weight[classes]).sum(-1) + bias[classes]
        plain[:, 1:] = plain[:, 1:].masked_fill(sampled[None] == targets[:, None], float("-inf"))
        uncorrected = F.cross_entropy(plain, torch.zeros(5, dtype=torch.long)).item()
        uniform = bool((probabilities == probabilities[0]).all())
        assert (loss.item() == pytest.approx(uncorrected, rel=1e-5)) is uniform
    probabilities = log_uniform_probabilities(1000)
    assert probabilities.sum().item() == pytest.approx(1.0, rel=1e-5) and probabilities[0] > probabilities[-1]


def test_chunked_loss_under_bf16_autocast_is_close_to_fp32():
    hidden, weight, bias, targets = softmax_problem(5, rows=12, dim=16, items=40)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = chunked_cross_entropy(hidden, weight, bias, targets, rows=5)
    loss.backward()
    reference = F.cross_entropy(hidden @ weight.T + bias, targets)
    expected = torch.autograd.grad(reference, [hidden, weight, bias])
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(reference.item(), rel=3e-2)
    for got, want in zip((hidden.grad, weight.grad, bias.grad), expected):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=5e-2, atol=2e-2)


def test_exact_loss_dispatch_falls_back_to_the_chunked_loss_without_cuda_or_the_package(monkeypatch, capsys):
    from bench.engine import softmax

    assert softmax.exact_loss_path(torch.device("cpu")) == "chunked"
    monkeypatch.setattr(softmax, "_FUSED", {"kernel": "liger-kernel not importable (ModuleNotFoundError)"})
    cuda = torch.device("cuda")  # only its type is read: no GPU needed
    assert softmax.exact_loss_path(cuda).startswith("chunked (liger-kernel not importable")
    assert softmax.exact_loss_path(cuda).startswith("chunked")
    err = capsys.readouterr().err
    assert err.count("the exact loss runs the chunked path on CUDA") == 1 and err.count("\n") == 1  # said once
    monkeypatch.setattr(softmax, "_FUSED", {"kernel": object()})
    assert softmax.exact_loss_path(cuda).startswith("fused (liger-kernel")
    monkeypatch.setenv("BENCH_FUSED_LOSS", "off")
    assert softmax.exact_loss_path(cuda) == "chunked (BENCH_FUSED_LOSS=off)"


def test_fused_path_gets_every_position_with_padding_ignored(monkeypatch):
    """What the fused kernel is handed (all positions, padding as IGNORE) is the chunked loss's
    problem: F.cross_entropy with ignore_index on those inputs equals the chunked loss."""
    from bench.engine import objectives, softmax

    torch.manual_seed(0)
    n_items = 30
    inputs = torch.randint(1, n_items + 1, (5, 7))
    inputs[:2, :3] = 0
    task = next_item_task(inputs, n_items)
    encoder = NextItNet(n_items, BackboneConfig(embedding_dim=8, dilations=[1]))
    head = TiedItemHead(encoder.embedding)
    with torch.no_grad():
        head.bias.normal_()
    chunked = training_loss(task, encoder(inputs), head, inputs, None)

    def reference_kernel(hidden, weight, bias, targets):  # the fused kernel's contract, in plain torch
        return F.cross_entropy(hidden @ weight.T + bias, targets, ignore_index=softmax.IGNORE)

    monkeypatch.setattr(objectives, "exact_loss_path", lambda device: "fused (test)")
    monkeypatch.setattr(objectives, "fused_cross_entropy", reference_kernel)
    fused = training_loss(task, encoder(inputs), head, inputs, None)
    torch.testing.assert_close(fused, chunked, rtol=1e-6, atol=1e-7)


def test_a_run_records_which_loss_path_ran(tmp_path):
    from bench.experiments.runner import run
    from bench.results.store import RunStore
    from tests.conftest import tiny_config

    config = tiny_config(methods=["FineSmax"])
    config.train.epochs = 1
    store = RunStore.create(config.to_dict(), tmp_path)
    run(config, store, progress=False)
    assert store.environment["loss"] == {"next_item": "chunked"}
