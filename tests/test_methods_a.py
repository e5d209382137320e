"""Defining properties of Conure, PeterRec and MTL on tiny synthetic data (runs in seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.config import BackboneConfig, RunConfig, TrainConfig
from bench.registry import METHODS
from bench.experiments.runner import run
from bench.results.store import RunStore
from bench.results.tables import render_run
from bench.engine.training import as_tensors
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.methods.base import MethodContext, module_key
from bench.methods.conure import FREE
from bench.methods.mtl import MTL
from bench.methods.peterrec import TaskPatches
from tests.conftest import inputs_of, logits, synthetic_context

DATA = dict(n_users=200, n_items=40, seq_len=8, target_items=[20], classes=[3, 2])
BACKBONE = BackboneConfig(embedding_dim=16)
TRAIN = TrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def tasks():
    return generate(SyntheticOptions(**DATA)).tasks  # T1 next-item, T2 items, T3/T4 classes


@pytest.fixture(scope="module")
def context(tasks):
    """One context for the module, so the shared T1 model is trained once."""
    return synthetic_context(tasks, DATA["n_items"], BACKBONE, TRAIN)


# --- Conure ---------------------------------------------------------------------------------

def build_row(row, context, **options):
    torch.manual_seed(0)
    return METHODS.get(row).build(context, {**METHODS.options(row, {}), **options})


def frozen_state(method) -> dict[str, torch.Tensor]:
    """What T1 fixes for good: embeddings, conv biases, layer norms (T1's, or every task's)."""
    return {name: p.detach().clone() for name, p in method.encoder.named_parameters()
            if name == "embedding.weight" or "bias" in name and "conv" in name or "norm" in name}


# the released algorithm, and the harness's earlier default (variants)
@pytest.mark.parametrize("row", ["Conure", "Conure+postln+bias+tasknorms"])
def test_conure_old_tasks_exact_masks_disjoint_and_only_free_weights_move(tasks, context, row):
    method = build_row(row, context, prune_ratio=0.5)
    history = []  # (logits of tasks so far, ownership, conv weights, frozen T1 state) per step
    for step, task in enumerate(tasks):
        method.learn([task], context)
        convs = method.owned_convs()
        history.append((logits(method, tasks[:step + 1]), method.ownership(),
                        [c.weight.detach().clone() for c in convs], frozen_state(method)))

    final_logits, final_owner, final_weights, final_frozen = history[-1]
    for step, (old_logits, owner, weights, frozen) in enumerate(history):
        # earlier tasks' scores are bit-identical after every later task
        for before, after in zip(old_logits, final_logits):
            assert torch.equal(before, after)
        # a task's ownership never changes once it is learnt; owners are one tensor, so disjoint
        for before, after in zip(owner, final_owner):
            for position in range(1, step + 2):
                assert torch.equal(before == position, after == position)
        # embeddings, biases and the norms learnt so far never move again
        assert frozen and all(torch.equal(value, final_frozen[name]) for name, value in frozen.items())
        # later tasks only change weights that were free after this step
        for before, after, own in zip(weights, final_weights, owner):
            changed = before != after
            assert not changed[own != FREE].any()
    # every task owns some weights, and no weight has two owners (one integer per weight)
    flat = torch.cat([o.flatten().long() for o in final_owner])
    counts = torch.bincount(flat, minlength=len(tasks) + 1)
    assert all(counts[position] > 0 for position in range(1, len(tasks) + 1))
    assert counts.sum() == flat.numel()
    # pruning 50% per task: T1 keeps about half of the weights, T2 about half of the rest
    assert counts[1] / flat.numel() == pytest.approx(0.5, abs=0.01)
    assert counts[2] / flat.numel() == pytest.approx(0.25, abs=0.01)


def test_conure_reference_block_shared_norms_and_zero_biases(tasks, context):
    """ops.py: pre-LN blocks, conv biases fixed at 0 (never trained), T1's layer norms used by
    every task and frozen after T1."""
    method = build_row("Conure", context)
    method.learn(tasks[:1], context)
    block = method.encoder.blocks[0]
    norms = [p.detach().clone() for b in method.encoder.blocks for n in (b.norm1, b.norm2) for p in n.parameters()]
    assert block.pre_ln and all(conv.bias is None for conv in method.owned_convs())
    assert isinstance(block.norm1, torch.nn.LayerNorm)  # one norm for all tasks, not per task
    x = inputs_of(tasks[0])[:4]
    h = block.conv1(block.act1(block.norm1(method.encoder.embedding(x))))
    assert torch.allclose(h, torch.nn.functional.conv1d(
        torch.nn.functional.pad(block.norm1(method.encoder.embedding(x)).relu().transpose(1, 2),
                                (block.conv1.left_padding, 0)),
        block.conv1.effective_weight(), None, dilation=block.conv1.dilation).transpose(1, 2))
    method.learn(tasks[1:3], context)
    after = [p.detach() for b in method.encoder.blocks for n in (b.norm1, b.norm2) for p in n.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(norms, after))
    assert all(not p.requires_grad for p in after)
    # the harness's variant: post-LN, trained biases, a private norm per task
    variant = build_row("Conure+postln+bias+tasknorms", context)
    variant.learn(tasks[:2], context)
    vblock = variant.encoder.blocks[0]
    assert not vblock.pre_ln and vblock.conv1.bias is not None and len(vblock.norm1.norms) == 2


def test_conure_minus_variant_covers_every_task(tasks, context):
    torch.manual_seed(0)
    method = METHODS.get("Conure").build(context, {"prune_ratios": [0.7, 0.5], "retrain_epochs": 1})
    method.learn(tasks[:2], context)
    minus = method.variant_scores["Conure-"]
    assert set(minus) == {task.name for task in tasks[:2]}
    assert all(task.primary_metric in minus[task.name] for task in tasks[:2])
    assert method.options.ratio_for(1) == 0.7 and method.options.ratio_for(2) == 0.5
    assert method.options.ratio_for(3) == method.options.prune_ratio
    owned_by_t1 = sum(int((o == 1).sum()) for o in method.ownership()) / method.mask_entries()
    assert owned_by_t1 == pytest.approx(0.3, abs=0.01)


def test_conure_frozen_weights_exact_even_with_weight_decay(tasks):
    """Adam's weight decay would move frozen weights; the re-assignment must undo it exactly."""
    torch.manual_seed(0)
    decaying = MethodContext(n_items=DATA["n_items"], backbone=BACKBONE,
                             train=TrainConfig(epochs=1, batch_size=64, weight_decay=0.1),
                             device=torch.device("cpu"), seed=0, first_task=tasks[0])
    method = METHODS.get("Conure").build(decaying, {})
    method.learn(tasks[:1], decaying)
    before = logits(method, tasks[:1])[0]
    method.learn(tasks[1:2], decaying)
    assert torch.equal(before, logits(method, tasks[:1])[0])


# --- PeterRec --------------------------------------------------------------------------------

@pytest.mark.parametrize("insertion", ["serial", "parallel"])
def test_peterrec_backbone_frozen_and_old_tasks_exact(tasks, context, insertion):
    torch.manual_seed(0)
    method = METHODS.get("PeterRec").build(context, {"insertion": insertion})
    method.learn(tasks[:1], context)
    backbone = {name: p.detach().clone() for name, p in method.encoder.named_parameters()}
    first_logits = logits(method, tasks[:1])
    method.learn(tasks[1:2], context)
    second_logits = logits(method, tasks[:2])
    method.learn(tasks[2:], context)

    # the T1 backbone (embeddings, convs, T1 norms) never moves
    current = dict(method.encoder.named_parameters())
    for name, value in backbone.items():
        assert torch.equal(value, current[name]), name
    # old tasks are scored exactly as right after they were learnt
    final = logits(method, tasks)
    assert torch.equal(first_logits[0], final[0])
    assert torch.equal(second_logits[1], final[1])
    # every dilated conv carries a patch per later task, inserted as configured
    convs = [m for m in method.encoder.modules() if isinstance(m, TaskPatches)]
    assert len(convs) == 2 * len(BACKBONE.dilations)
    assert all(conv.insertion == insertion and len(conv.patches) == len(tasks) - 1 for conv in convs)
    # the patches were trained: the later task's representation differs from T1's
    with torch.no_grad():
        x = inputs_of(tasks[1])
        assert not torch.equal(method.encode(tasks[1], x), method.encode(tasks[0], x))
    # patches + norms per task are a few % of the backbone; #B stays 1
    for task in tasks[1:]:
        share = method.task_parameter_count(task) / method.backbone_parameter_count()
        assert 0.0 < share < 0.12
    assert method.n_backbones() == 1


def test_peterrec_patch_starts_near_identity(tasks, context):
    torch.manual_seed(0)
    method = METHODS.get("PeterRec").build(context, {"bottleneck_dim": 4})
    method.learn(tasks[:1], context)
    key = module_key(tasks[1])
    method._add_task_modules(tasks[1], context)
    method.positions[key] = 2
    with torch.no_grad():
        x = inputs_of(tasks[1])
        base, patched = method.encode(tasks[0], x), method.encode(tasks[1], x)
    assert (patched - base).abs().max() < 0.05 * base.abs().max()
    assert all(conv.patches[key].down.out_features == 4 for conv in method.patched_convs())


# --- MTL -------------------------------------------------------------------------------------

def test_mtl_schedule_is_t1_then_everything_jointly():
    assert MTL.schedule(MTL.__new__(MTL), 6) == [[0], [1, 2, 3, 4, 5]]
    assert MTL.schedule(MTL.__new__(MTL), 1) == [[0]]


def test_mtl_joint_loss_reaches_every_head(tasks, context):
    torch.manual_seed(0)
    method = METHODS.get("MTL").build(context, {"task_weights": [1.0, 2.0, 0.5]})
    method.learn(tasks[:1], context)
    joint = tasks[1:]
    method.add_heads(joint, context)
    batches = [tuple(t[:16] for t in as_tensors(task.train, torch.device("cpu"))) for task in joint]
    weights = method.weights_for(joint)
    loss = method.joint_loss(joint, batches, weights)
    loss.backward()
    for task in joint:
        grads = [p.grad for p in method.heads[module_key(task)].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), task.name
    # the joint loss is exactly the weighted sum of the tasks' own losses
    with torch.no_grad():
        separate = sum(w * method.joint_loss([task], [batch]) for task, batch, w in zip(joint, batches, weights))
        assert torch.allclose(loss.detach(), separate)


@pytest.mark.parametrize("include_first_task", [False, True])
def test_mtl_first_task_joins_the_objective_only_when_asked(tasks, context, include_first_task):
    torch.manual_seed(0)
    method = METHODS.get("MTL").build(context, {"include_first_task": include_first_task})
    method.learn(tasks[:1], context)
    first_bias = method.heads[module_key(tasks[0])].bias.detach().clone()
    method.learn(tasks[1:3], context)
    moved = not torch.equal(first_bias, method.heads[module_key(tasks[0])].bias)
    assert moved == include_first_task  # T1's own head only trains when T1's loss is in the sum
    assert method.learned == [task.name for task in tasks[:3]]


# --- end to end through the runner -----------------------------------------------------------

def test_runner_end_to_end(tmp_path):
    config = RunConfig(dataset_options=DATA, methods=["Conure", "PeterRec", "MTL"], device="cpu",
                       backbone=BACKBONE, train=TRAIN)
    store = RunStore.create(config.to_dict(), root=tmp_path)
    records = {record.method: record for record in run(config, store, progress=False)}
    n = len(records["MTL"].tasks)

    R = records["MTL"].matrix()
    assert np.isfinite(R[0, 0]) and np.isfinite(R[n - 1, 1:]).all()
    assert np.isnan(R[n - 1, 0]), "no final T1 entry: T1 is not in the joint objective"
    assert np.isnan(R[1:n - 1]).all()
    assert [step["row"] for step in records["MTL"].steps] == [0, n - 1]

    for name in ("Conure", "PeterRec"):
        R = records[name].matrix()
        for j in range(n):  # every column is constant below the diagonal: no forgetting at all
            assert (R[j:, j] == R[j, j]).all(), name
        assert records[name].last_step["backbones"] == 1
    assert set(records["Conure"].variants["Conure-"]) == set(records["Conure"].tasks)

    table = render_run(list(records.values()))
    assert "Conure-" in table and "MTL" in table and "PeterRec" in table
    assert not any(math.isnan(v) for v in records["PeterRec"].matrix()[-1])
