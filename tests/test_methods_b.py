"""Defining properties of HAT and TERACON on tiny synthetic data."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

import bench.methods  # noqa: F401  (registers every method)
import bench.methods.teracon as teracon_module
from bench.config import BackboneConfig, TrainConfig
from bench.engine.metrics import backward_transfer
from bench.engine.objectives import evaluation_pairs, training_loss
from bench.registry import METHODS
from bench.engine.training import as_tensors, evaluate
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.methods._gates import Annealing, UnitGate, annealed_s, masked
from bench.methods.base import MethodContext, module_key
from bench.methods.hat import GradientAttenuation
from bench.methods.teracon import TERACONOptions

torch.set_num_threads(1)


def make_context(dataset, epochs=2, dim=16, lr=1e-3):
    return MethodContext(n_items=dataset.n_items, backbone=BackboneConfig(embedding_dim=dim),
                         train=TrainConfig(epochs=epochs, lr=lr), device=torch.device("cpu"),
                         seed=0, first_task=dataset.tasks[0])


@pytest.fixture(scope="module")
def tiny():
    dataset = generate(SyntheticOptions(n_users=200, n_items=40, seq_len=8))
    # T1 (next item), T2 (items of another domain), T4 (classes): one task of every kind
    return dataset, [dataset.tasks[i] for i in (0, 1, 3)], make_context(dataset)


def build(name, context, **options):
    """A method row (variants allowed, e.g. "HAT+binary") with extra options on top."""
    torch.manual_seed(0)
    return METHODS.get(name).build(context, {**METHODS.options(name, {}), **options})


def sample_inputs(task, n=32):
    inputs, _ = evaluation_pairs(task, *as_tensors(task.test, torch.device("cpu")))
    return inputs[:n]


@torch.no_grad()
def all_scores(method, tasks):
    method.eval()
    return {t.name: method.scores(t, sample_inputs(t)).clone() for t in tasks}


# --- HAT ------------------------------------------------------------------------------


def test_annealing_schedule_endpoints():
    smax = 400.0
    assert annealed_s(0.0, smax) == pytest.approx(1 / smax)
    assert annealed_s(1.0, smax) == pytest.approx(smax)
    values = [annealed_s(p, smax) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    annealing = Annealing(smax)
    assert annealing.s == smax  # validation/test before any batch: s = smax
    annealing(0.0)
    assert annealing.s == pytest.approx(1 / smax)


# the reference HAT (kept mask sigmoid(smax e), gates after the ReLU only) and the harness's
# exact variant (binarised kept masks, gates before the LayerNorm as well)
HAT_ROWS = ["HAT", "HAT+binary+lngate"]


@pytest.fixture(scope="module", params=HAT_ROWS)
def hat_run(tiny, request):
    _, tasks, context = tiny
    method = build(request.param, context)
    history = []
    for task in tasks:
        method.learn([task], context)
        history.append(all_scores(method, tasks[:len(history) + 1]))
    return method, history


def test_hat_earlier_tasks_are_protected(hat_run, tiny):
    """Exact variant: bit-identical. Reference HAT: a LayerNorm mixes every channel and kept
    masks stay fractional, so earlier scores move, but little (measured: < 5 % of their scale)."""
    method, history = hat_run
    _, tasks, _ = tiny
    exact = method.options.binarize and method.options.gate_conv_outputs
    for step in range(1, len(tasks)):
        for task in tasks[:step]:
            after, before = history[step][task.name], history[step - 1][task.name]
            if exact:
                assert torch.equal(after, before), (step, task.name)
            else:
                finite = torch.isfinite(before)
                change = (after[finite] - before[finite]).abs().max()
                assert change < 0.1 * before[finite].abs().max(), (step, task.name, change)
    # ...and the backbone did learn the later tasks (free units were trained)
    assert method.used.sum() > 0 and (method.used < 1).any()


def test_hat_reference_keeps_sigmoid_masks_and_no_gate_before_layernorm(hat_run):
    method, _ = hat_run
    key = next(iter(method.task_embeddings))
    block = method.encoder.blocks[0]
    if method.options.binarize:
        assert set(method.kept_mask(key).unique().tolist()) <= {0.0, 1.0}
    else:
        expected = torch.sigmoid(method.options.smax * method.task_embeddings[key])
        assert torch.equal(method.kept_mask(key), expected)
    assert isinstance(block.gate1.hook, UnitGate)
    assert isinstance(block.prenorm_gate1.hook, UnitGate) is method.options.gate_conv_outputs


def inner(conv):
    return conv


def test_hat_attenuation_zeroes_gradients_of_owned_weights(hat_run, tiny):
    method, _ = hat_run
    _, tasks, _ = tiny
    method = copy.deepcopy(method)
    task = tasks[1]
    key = module_key(task)
    method.task_embeddings[key].requires_grad_(True)
    method.heads[key].requires_grad_(True)
    annealing = Annealing(method.options.smax)
    annealing(0.5)
    attenuation = GradientAttenuation(method, method.task_embeddings[key], annealing)
    x, y = as_tensors(task.train, torch.device("cpu"))
    method.zero_grad()
    mask = method.gate(key, annealing.s)
    with masked(method.encoder, mask):
        loss = training_loss(task, method.encoder(x), method.heads[key], x, y)
    loss.backward()
    attenuation.after_backward()

    conv2 = inner(method.encoder.blocks[0].conv2)
    out, inp = method.used[1], method.used[0]
    owned = (out[:, None] == 1) & (inp[None, :] == 1)
    assert owned.any() and (~owned).any()
    grad = conv2.weight.grad
    assert torch.all(grad[owned] == 0)
    assert grad[~owned].abs().sum() > 0
    conv1 = inner(method.encoder.blocks[0].conv1)
    assert torch.all(conv1.weight.grad[method.used[0] == 1] == 0)
    assert torch.all(conv1.bias.grad[method.used[0] == 1] == 0)
    norm = method.encoder.blocks[0].norm1
    assert torch.all(norm.weight.grad[method.used[0] == 1] == 0)


def test_hat_counts_task_embeddings_and_pickles(hat_run, tiny):
    method, _ = hat_run
    _, tasks, _ = tiny
    n_layers, d = method.used.shape
    embeddings = sum(p.numel() for p in method.task_embeddings.parameters())
    assert embeddings == len(tasks) * n_layers * d
    assert method.parameter_count() == sum(p.numel() for p in {id(p): p for p in method.parameters()}.values())
    assert method.n_backbones() == 1
    buffer = io.BytesIO()
    torch.save(method, buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    assert torch.equal(all_scores(restored, tasks)[tasks[0].name], all_scores(method, tasks)[tasks[0].name])


# --- TERACON --------------------------------------------------------------------------


def backbone_snapshot(method):
    encoder = method.net.encoder
    return {name: p.detach().clone() for name, p in encoder.named_parameters()}


def test_teracon_trains_the_shared_backbone_on_every_task(tiny):
    _, tasks, context = tiny
    method = build("TERACON", context)
    previous = None
    for task in tasks:
        method.learn([task], context)
        snapshot = backbone_snapshot(method)
        if previous is not None:
            for name in ("embedding.weight", "blocks.0.conv1.weight", "blocks.1.conv2.weight"):
                assert not torch.equal(snapshot[name], previous[name]), (task.name, name)
        previous = snapshot
    assert all(p.requires_grad for p in method.parameters())
    assert method.n_backbones() == 1
    n_layers, d = method.net.n_layers, method.net.d
    embeddings = sum(p.numel() for p in method.net.task_embeddings)
    mixers = sum(p.numel() for p in method.net.mixers.parameters())
    assert embeddings == len(tasks) * n_layers * d
    assert mixers == len(tasks) * n_layers * (2 * len(tasks) - 1 + 1)
    torch.save(method, io.BytesIO())  # picklable for the runner's checkpoints


def test_teracon_retention_loss_is_zero_for_the_frozen_copy(tiny):
    _, tasks, context = tiny
    method = build("TERACON", context)
    method.learn([tasks[0]], context)
    method.net.add_task(tasks[1])
    teacher = copy.deepcopy(method.net).requires_grad_(False)
    x, _ = as_tensors(tasks[1].train, torch.device("cpu"))
    rows = [torch.arange(len(x))]
    loss, _ = teracon_module.retention_loss(method.net, teacher, x, 10.0, [0.9], rows)
    assert loss.item() == 0.0
    with torch.no_grad():
        method.net.encoder.blocks[0].conv1.weight.add_(0.1)
    moved, _ = teracon_module.retention_loss(method.net, teacher, x, 10.0, [0.9], rows)
    assert moved.item() > 0
    moved.backward()
    assert method.net.encoder.blocks[0].conv1.weight.grad.abs().sum() > 0


def test_teracon_alpha_zero_disables_retention(tiny, monkeypatch):
    _, tasks, context = tiny
    calls = []
    original = teracon_module.retention_loss

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(teracon_module, "retention_loss", counting)
    for alpha, expect_calls in ((0.0, False), (0.7, True)):
        calls.clear()
        method = build("TERACON", context, alpha=alpha)
        method.learn([tasks[0]], context)
        method.learn([tasks[1]], context)
        assert bool(calls) is expect_calls, alpha


def performance_matrix(method, tasks, context):
    R = np.full((len(tasks), len(tasks)), np.nan)
    for i, task in enumerate(tasks):
        method.learn([task], context)
        method.eval()
        for j in range(i + 1):
            score = lambda x, t=tasks[j]: method.scores(t, x)  # noqa: E731
            R[i, j] = evaluate(tasks[j], tasks[j].test, score, context.device)[tasks[j].primary_metric]
    return R


@pytest.fixture(scope="module")
def forgetting_setting():
    # large enough that T1 is really learnt (so there is something to forget)
    dataset = generate(SyntheticOptions(n_users=1000, n_items=50, seq_len=12))
    context = make_context(dataset, epochs=4, dim=16, lr=1e-2)
    tasks = [dataset.tasks[i] for i in (0, 1, 3)]
    return tasks, context, performance_matrix(build("SinMoAll", context), tasks, context)


def test_teracon_forgets_less_than_sinmoall(forgetting_setting):
    """The released algorithm (no floor, int rows): with 128-row batches the near-parallel
    masks give r_i ~ 0.0025, i.e. int(0.3) = 0 retention rows, so only the soft masks protect.
    Measured BWT (seeds 0-3 of this setting): TERACON -0.17/-0.22/-0.17/-0.16 against
    SinMoAll -0.24/-0.27/-0.21/-0.17; the floor variant below is what forgets far less."""
    tasks, context, sinmoall = forgetting_setting
    teracon = performance_matrix(build("TERACON", context), tasks, context)
    bwt_teracon, bwt_sinmoall = backward_transfer(teracon), backward_transfer(sinmoall)
    assert bwt_sinmoall < -0.05, sinmoall  # the setting really causes forgetting
    assert bwt_teracon > bwt_sinmoall, (teracon, sinmoall)
    assert teracon[-1, 0] > sinmoall[-1, 0]


def test_teracon_floor_variant_forgets_far_less_than_sinmoall(forgetting_setting):
    tasks, context, sinmoall = forgetting_setting
    teracon = performance_matrix(build("TERACON+floor", context), tasks, context)
    bwt_teracon, bwt_sinmoall = backward_transfer(teracon), backward_transfer(sinmoall)
    # seed 0 gives about -0.02 against -0.24: assert less than half the forgetting
    assert bwt_teracon > bwt_sinmoall / 2, (teracon, sinmoall)
    assert teracon[-1, 0] > sinmoall[-1, 0]


def test_teracon_first_task_trains_once_with_its_mask(tiny, monkeypatch):
    """train_task1.py: T1 is learnt once, masked, from a fresh model (no shared T1 model);
    the `sharedt1` variant starts from the shared model (trained unmasked) instead."""
    _, tasks, _ = tiny
    original = MethodContext.fit
    for row, expected in (("TERACON", ["TERACON"]), ("TERACON+sharedt1", ["pretrain", "TERACON"])):
        context = make_context(tiny[0], epochs=1)  # a fresh context: no shared model cached yet
        fits = []

        def recording(self, task, *args, **kwargs):
            fits.append(kwargs.get("description", "").split()[0])
            return original(self, task, *args, **kwargs)

        monkeypatch.setattr(MethodContext, "fit", recording)
        method = build(row, context)
        method.learn([tasks[0]], context)
        assert fits == expected, row
        assert method.net.tasks[0].name == tasks[0].name


def test_teracon_rows_truncate_as_the_code():
    """int(r * batch) rows (train_teracon.py); the `ceil` variant keeps at least one."""
    state = teracon_module.RetentionState(0.0025, 1)
    assert [len(rows) for rows in state.sample_rows(128, "cpu")] == [0]
    state.ratios = [0.3]
    assert [len(rows) for rows in state.sample_rows(128, "cpu")] == [38]  # int(38.4)
    ceil = teracon_module.RetentionState(0.0025, 1, rows="ceil")
    assert [len(rows) for rows in ceil.sample_rows(128, "cpu")] == [1]
    assert TERACONOptions().min_ratio == 0.0 and TERACONOptions().rows == "int"


def test_teracon_expected_rows_keep_the_fraction_of_any_batch():
    """Stochastic rounding: E[rows] = r * batch, so 128-row batches keep retention (~0.32 rows
    per batch at r = 0.0025) where int() keeps none, and 1024-row ones keep 2.56 on average."""
    torch.manual_seed(0)
    for batch, ratio in ((128, 0.0025), (1024, 0.0025), (128, 0.3)):
        state = teracon_module.RetentionState(ratio, 1, rows="expected")
        counts = [len(state.sample_rows(batch, "cpu")[0]) for _ in range(4000)]
        exact = batch * ratio
        assert set(counts) <= {int(exact), int(exact) + 1}
        assert abs(np.mean(counts) - exact) < 0.05 * max(1.0, exact), (batch, ratio, np.mean(counts))


def test_teracon_sampling_ratio_follows_mask_similarity():
    masks = torch.rand(4, 16) + 0.1
    same = float(teracon_module.sampling_ratio(masks, masks, 6.0))
    assert same == pytest.approx(1 - torch.sigmoid(torch.tensor(6.0)).item(), abs=1e-5)
    disjoint = torch.zeros(4, 16)
    disjoint[:, :8] = 1
    assert float(teracon_module.sampling_ratio(disjoint, 1 - disjoint, 6.0)) == pytest.approx(0.5)
    state = teracon_module.RetentionState(0.9, 2)
    assert [len(rows) for rows in state.sample_rows(100, torch.device("cpu"))] == [90, 90]
    state.update([masks, 1 - disjoint], disjoint, 6.0, floor=0.25)
    assert state.ratios == [pytest.approx(0.25), pytest.approx(0.5)]
    assert all(len(rows) >= 1 for rows in teracon_module.RetentionState(0.001, 1, "ceil").sample_rows(128, "cpu"))


def test_teracon_initialises_heads_embedding_and_norms_as_released(tiny):
    """Issue 19's main cause: released heads are separate Linear layers, N(0, 0.01), bias 0.1
    (teracon.py L241-244), T1's too; the item embedding is U(+-sqrt(1/rows)) with a trained
    padding row and the LayerNorms use eps 1e-8. `heads/embedding_init=harness` keep the old ones."""
    dataset, tasks, _ = tiny
    context = make_context(dataset, epochs=1, dim=64)
    torch.manual_seed(0)
    method = build("TERACON", context)
    method.learn(tasks[:2], context)
    for head, task in zip(method.net.heads, tasks):
        assert isinstance(head, torch.nn.Linear) and head.out_features == task.output_size
    fresh = teracon_module.task_head(tasks[2], method.net.encoder, "released")
    assert fresh.weight.std().item() == pytest.approx(0.01, rel=0.15)
    assert torch.all(fresh.bias == 0.1)
    encoder = teracon_module.released_encoder(
        teracon_module.build_encoder(dataset.n_items, BackboneConfig(embedding_dim=64)), TERACONOptions())
    weight = encoder.embedding.weight
    bound = (1 / weight.shape[0]) ** 0.5
    assert weight.abs().max() <= bound and weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.1)
    assert weight[0].abs().sum() > 0 and encoder.embedding.padding_idx is None
    assert {m.eps for m in encoder.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-8}
    encoder(torch.zeros(2, 4, dtype=torch.long)).sum().backward()
    assert weight.grad[0].abs().sum() > 0  # the padding row is trained, as in the code

    old = build("TERACON", context, heads="harness", embedding_init="harness", norm_eps=1e-5)
    old.learn(tasks[:2], context)
    assert isinstance(old.net.heads[0], teracon_module.make_head(tasks[0], old.net.encoder).__class__)
    assert old.net.encoder.embedding.padding_idx == 0
    assert old.net.heads[1].bias.abs().max() < 0.5 and not torch.all(old.net.heads[1].bias == 0.1)


def test_teracon_first_task_loss_counts_padding_targets(tiny):
    """train_task1.py trains on every position, padding targets (item 0) included; the harness's
    loss skips them (t1_padding_loss=False)."""
    _, tasks, _ = tiny
    torch.manual_seed(0)
    inputs = torch.tensor([[0, 0, 3, 5, 7], [0, 2, 4, 6, 8]])
    hidden = torch.randn(2, 5, 8)
    head = torch.nn.Linear(8, 41)
    padded = teracon_module.padded_next_item_loss(hidden, head, inputs)
    expected = torch.nn.functional.cross_entropy(head(hidden[:, :-1]).reshape(-1, 41), inputs[:, 1:].reshape(-1))
    assert padded.item() == pytest.approx(expected.item(), rel=1e-5)
    assert padded.item() != pytest.approx(training_loss(tasks[0], hidden, head, inputs, None).item(), rel=1e-3)
    assert TERACONOptions().t1_padding_loss is True


def test_teracon_uses_the_padded_loss_on_the_first_task_only_when_set(tiny, monkeypatch):
    dataset, tasks, _ = tiny
    calls = []
    original = teracon_module.padded_next_item_loss
    monkeypatch.setattr(teracon_module, "padded_next_item_loss",
                        lambda *args: calls.append(1) or original(*args))
    for enabled in (True, False):
        calls.clear()
        context = make_context(dataset, epochs=1)
        build("TERACON", context, t1_padding_loss=enabled).learn(tasks[:2], context)
        assert bool(calls) is enabled
