"""DITTO (methods/ditto.py): its heads, losses, sampling ratios, transfer losses, the
vectorised augmentations against literal transcriptions of the released loops (utils.py,
train_ditto.py), and end-to-end runs on NextItNet and SASRec with resume."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import BackboneConfig, TrainConfig
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.engine.tasks import TaskSplit
from bench.errors import BenchError
from bench.experiments.runner import run
from bench.methods.ditto import (DITTO, bpr_loss, choose_positions, distinct_above, in_batch_similarity, info_nce,
                                 mask_positions, released_t1_probabilities, rows_to_take, substitute_positions)
from bench.methods.teracon import RetentionState
from bench.registry import METHODS, resolve_methods
from bench.results.store import RunStore
from tests import test_security_load as security
from tests.conftest import synthetic_context, tiny_config

DATA = dict(n_users=120, n_items=40, seq_len=8, target_items=[20, 12], classes=[3])
NEXTITNET = BackboneConfig(embedding_dim=16, dilations=[1, 2])
TRAIN = TrainConfig(epochs=1, batch_size=64, lr=3e-3, patience=1)


@pytest.fixture(scope="module")
def tasks():
    return generate(SyntheticOptions(**DATA)).tasks  # T1 next-item, T2, T3 items, T4 classes


@pytest.fixture(scope="module")
def context(tasks):
    return synthetic_context(tasks, DATA["n_items"], NEXTITNET, TRAIN)


def time_aware(tasks, known=(30, 34, 36, 40)):
    """The tasks with growing vocabularies (the encoder is built at the final 40 items; the
    splits keep their ids, which is enough to reach the new-item code paths)."""
    return [dataclasses.replace(task, n_items_known=v) for task, v in zip(tasks, known)]


def structured(context, tasks, **options):
    """DITTO with the structure after `tasks[:-1]`, a frozen teacher of it, then the last task
    added (untrained weights, random mean embeddings): what a later task's batch sees."""
    torch.manual_seed(0)
    method = DITTO.build(context, options)
    method.restore(tasks[:-1], context)
    method.mean_embeddings = torch.randn_like(method.mean_embeddings)
    teacher = copy.deepcopy(method.net).requires_grad_(False).eval()
    method._add_task(tasks[-1], context)
    return method, teacher


def batch_of(task, rows=64):
    return torch.as_tensor(task.train.inputs[:rows], dtype=torch.long)


def transfer(method, teacher, tasks, ratios=None, s=5.0):
    k = len(tasks) - 1
    old = tasks[k - 1].n_items_known or method.n_items
    torch.manual_seed(1)
    return method.transfer_losses(teacher, batch_of(tasks[k]), s, k, old, ratios or [0.9] * k)


# ------------------------------------------------------------------ heads and task losses

def test_every_head_is_linear_d_by_d_with_the_released_init(context, tasks):
    method, _ = structured(context, tasks)
    d = NEXTITNET.embedding_dim
    assert len(method.net.heads) == len(tasks)
    for head in method.net.heads:
        assert isinstance(head, nn.Linear) and head.weight.shape == (d, d)
        assert torch.equal(head.bias, torch.full((d,), 0.1))
        assert head.weight.abs().max() < 0.06  # N(0, 0.01)
    # the own-vocabulary item tasks (synthetic targets are not item ids) get a target table
    assert {key: table.num_embeddings for key, table in method.targets.items()} == {"T2-items": 20, "T3-items": 12}


def test_bpr_is_summed_over_rows_and_the_negatives_count(context, tasks):
    method, _ = structured(context, tasks[:2], negatives=7)
    head = method.net.heads[1]
    with torch.no_grad():
        head.weight.zero_(), head.bias.zero_()  # every score 0: each (row, negative) pair adds log 2
    y = torch.as_tensor(tasks[1].train.targets[:10])
    loss = method.task_loss(1, tasks[1], torch.randn(10, NEXTITNET.embedding_dim), y)
    assert loss.item() == pytest.approx(10 * 7 * math.log(2), rel=1e-6)
    # bpr_loss by hand: -sum log sigmoid(pos - neg), for a small table (scored whole, then
    # gathered) and a large one (gathered first)
    for rows in (6, 40):
        out, weight = torch.randn(3, 4, dtype=torch.float64), torch.randn(rows, 4, dtype=torch.float64)
        targets, negatives = torch.randint(0, rows, (3,)), torch.randint(0, rows, (3, 5))
        by_hand = sum(-math.log(torch.sigmoid(out[r] @ weight[targets[r]] - out[r] @ weight[negatives[r, j]]).item())
                      for r in range(3) for j in range(5))
        assert bpr_loss(out, weight, targets, negatives, "user").item() == pytest.approx(by_hand, rel=1e-10)


def test_released_bpr_pairs_each_negative_with_the_tiled_positives_as_the_code():
    """train_ditto.py L290-295 (and train_task1.py L159-167), transcribed: the default pairs as the
    code; `pairs="user"` (DITTO+userpairs) is the paper's per-row BPR, and they differ."""
    torch.manual_seed(0)
    n_neg = 5
    outputs, table = torch.randn(3, 4, dtype=torch.float64), torch.randn(30, 4, dtype=torch.float64)
    target, neg_target = torch.randint(0, 30, (3,)), torch.randint(0, 30, (3 * n_neg,))
    target_emb_positive, target_emb_negative = table[target], table[neg_target]
    outputs_dup = outputs.unsqueeze(1).repeat(1, n_neg, 1).view(-1, outputs.size(1))
    pos_logits = torch.sum((outputs * target_emb_positive), dim=-1)
    pos_logits = pos_logits.unsqueeze(1).repeat(1, n_neg, 1).squeeze(2)
    pos_logits = pos_logits.squeeze(0)
    neg_logits = torch.sum((outputs_dup * target_emb_negative), dim=-1)
    released = -(pos_logits - neg_logits).sigmoid().log().sum()
    negatives = neg_target.view(3, n_neg)
    assert bpr_loss(outputs, table, target, negatives).item() == pytest.approx(released.item(), rel=1e-12)
    assert bpr_loss(outputs, table, target, negatives, "user").item() != pytest.approx(released.item(), rel=1e-3)
    assert METHODS.options("DITTO+userpairs", {})["pairs"] == "user"


def test_scores_item_tables_with_padding_excluded_and_class_tasks_over_all_d_outputs(context, tasks):
    method, _ = structured(context, tasks)
    method.eval()
    x = batch_of(tasks[0], 5)
    with torch.no_grad():
        first = method.scores(tasks[0], x)
        own = method.scores(tasks[1], x)
        label = method.scores(tasks[3], x)
    assert first.shape == (5, DATA["n_items"] + 1) and torch.isinf(first[:, 0]).all()
    assert torch.isfinite(first[:, 1:]).all()
    assert own.shape == (5, 20)
    assert label.shape == (5, NEXTITNET.embedding_dim)  # argmax over all d outputs, as model_test_acc


def test_more_classes_than_outputs_is_one_error(context, tasks):
    too_many = dataclasses.replace(tasks[3], n_targets=NEXTITNET.embedding_dim + 1)
    with pytest.raises(BenchError, match="17 classes, more than the 16 outputs"):
        structured(context, [tasks[0], too_many])


def test_released_t1_negatives_follow_the_rank_list_read_by_id():
    p = released_t1_probabilities(41, 0.3)
    expected = np.exp(-(np.arange(41) + 1) / (0.3 * 41))
    np.testing.assert_allclose(p.numpy(), expected / expected.sum())
    assert (p[1:] < p[:-1]).all()  # low ids are drawn most, whatever their popularity


# ------------------------------------------------------------------ sampling ratio and k

def test_sampling_ratio_is_one_minus_the_mean_of_sigmoid_two_cos():
    old, new = torch.rand(4, 6), torch.rand(4, 6)
    state = RetentionState(0.9, 1)
    assert state.ratios == [0.9]
    state.update([old], new, 2.0, 0.0)
    by_hand = 1 - sum(1 / (1 + math.exp(-2 * (old[l] @ new[l] / (old[l].norm() * new[l].norm())).item()))
                      for l in range(4)) / 4
    assert state.ratios[0] == pytest.approx(by_hand, rel=1e-6)


def test_rows_taken_are_the_ratio_of_the_batch_with_a_floor_of_20():
    assert rows_to_take(512, 0.1, 20) == 51
    assert rows_to_take(512, 0.01, 20) == 20
    assert rows_to_take(12, 0.01, 20) == 12  # never more than the batch
    assert rows_to_take(100, 0.999, 20) == 99  # int(), as the code


# ------------------------------------------------------------------ transfer losses

def test_forward_transfer_is_zero_with_alpha_or_switch_off_and_positive_otherwise(context, tasks):
    method, teacher = structured(context, tasks[:3])
    assert transfer(method, teacher, tasks[:3])["fkt"] > 0
    for options in ({"alpha": 0.0}, {"fkt": False}):
        method, teacher = structured(context, tasks[:3], **options)
        assert transfer(method, teacher, tasks[:3])["fkt"] == 0


def test_forward_transfer_uses_old_item_users_only(context, tasks):
    """A batch in which every user holds a new item leaves FKT nothing (and no NaN)."""
    aware = time_aware(tasks[:3], known=(5, 5, 40))
    method, teacher = structured(context, aware)
    parts = transfer(method, teacher, aware)
    assert parts["fkt"] == 0 and parts["bkt1"] > 0


def test_backward_transfer_needs_new_items(context, tasks):
    method, teacher = structured(context, tasks[:4])
    parts = transfer(method, teacher, tasks[:4])
    assert parts["bkt1"] == 0 and parts["bkt2"] == 0  # n_items_known None: no new items
    aware = time_aware(tasks[:4])
    method, teacher = structured(context, aware)
    parts = transfer(method, teacher, aware)
    assert parts["bkt1"] > 0 and parts["bkt2"] > 0 and parts["fkt"] > 0
    for switch, part in (("task1_bkt", "bkt1"), ("rest_bkt", "bkt2"), ("fkt", "fkt")):
        method, teacher = structured(context, aware, **{switch: False})
        parts = transfer(method, teacher, aware)
        assert parts[part] == 0 and all(parts[p] > 0 for p in ("fkt", "bkt1", "bkt2") if p != part)
    for weight, part in (("beta", "bkt1"), ("gamma", "bkt2")):
        method, teacher = structured(context, aware, **{weight: 0.0})
        assert transfer(method, teacher, aware)[part] == 0


def test_bkt2_users_hold_items_beyond_the_task_tables_row_count(context, tasks):
    """train_ditto.py L231 compares ids with task i's row count V_i + 1: item V_i + 1 counts as known."""
    # T2 knows 34 items; a batch whose largest id is 35 leaves BKT2 nothing, one with 36 does not
    aware = time_aware(tasks[:4], known=(30, 34, 36, 40))
    method, teacher = structured(context, aware)
    x = batch_of(aware[3]).clamp(max=35)
    parts = method.transfer_losses(teacher, x, 5.0, 3, 40, [0.9] * 3)
    assert parts["bkt2"] == 0
    x[:4, -1] = 36  # four users (InfoNCE over one user's two views is 0: the pair is the only other row)
    parts = method.transfer_losses(teacher, x, 5.0, 3, 40, [1.0] * 3)  # every row is a candidate
    assert parts["bkt2"] > 0


def test_bench_list_shows_ditto_its_options_and_variants(capsys):
    from bench.cli import main

    assert main(["list", "DITTO"]) == 0
    out = capsys.readouterr().out
    assert "dynamic time-aware continual user representation learning" in out
    for option in ("alpha", "beta", "gamma", "fkt", "task1_bkt", "rest_bkt", "negatives"):
        assert f"\n{option} " in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(row in out for row in ("DITTO+nofkt", "DITTO+notask1bkt", "DITTO+norestbkt"))


def test_the_switches_are_the_ablation_variants():
    assert METHODS.options("DITTO+nofkt", {}) == {"fkt": False}
    assert METHODS.options("DITTO+notask1bkt", {}) == {"task1_bkt": False}
    assert METHODS.options("DITTO+norestbkt", {}) == {"rest_bkt": False}
    assert resolve_methods(["all"])[-1] == "DITTO"


# ------------------------------------------------------------------ the released loops, transcribed

def released_aug_masking(input, chosen_per_row):
    """utils.py L250-270, with np.random.choice's draw given (`chosen_per_row`)."""
    aug_input = None
    for i in range(input.size(0)):
        masked_idx = np.array(chosen_per_row[i], dtype=np.int64)
        masked_idx = np.sort(masked_idx)
        masked_idx = masked_idx[::-1]
        temp_seq = input[i, :]
        for idx in masked_idx:
            temp_seq = torch.cat((temp_seq[:idx], temp_seq[idx + 1:]), dim=0)
        temp_seq = torch.cat((torch.zeros(len(masked_idx), dtype=torch.int64), temp_seq), dim=0).reshape(-1, input.size(1))
        aug_input = temp_seq if aug_input is None else torch.cat((aug_input, temp_seq), dim=0)
    return aug_input


def released_aug_substitute(input, chosen_per_row, weight):
    """utils.py L272-299 (in-place edits of `input` included), the draw given."""
    in_batch_item = torch.unique(input.reshape(-1))[1:]
    in_batch_sim = in_batch_similarity(in_batch_item, weight)  # pairwise_cosine_similarity
    aug_input = None
    for i in range(input.size(0)):
        substitute_idx = np.sort(np.array(chosen_per_row[i], dtype=np.int64))
        if len(substitute_idx) > 0:
            for idx in substitute_idx:
                v, index = torch.topk(in_batch_sim[i, :], k=2)
                temp_seq = input[i, :]
                temp_seq[idx] = in_batch_item[index[-1]]
        else:
            temp_seq = input[i, :]
        row = temp_seq.reshape(-1, len(temp_seq))
        aug_input = row if aug_input is None else torch.cat((aug_input, row), dim=0)
    return aug_input


def released_info_nce(out):
    """train_ditto.py L369-376."""
    loss = torch.zeros((), dtype=out.dtype)
    cos = nn.CosineSimilarity(dim=1, eps=1e-6)
    for idx in range(out.size(0)):
        own = torch.stack([out[idx]] * out.size(0), dim=0)
        simm = cos(own, out)
        half = int(out.size(0) / 2)
        pair = idx + half if idx < half else idx - half
        loss += -(torch.exp(simm[pair]) / torch.sum(torch.exp(simm[torch.arange(out.size(0)) != idx]))).log()
    return loss


def sample_sequences(rows=12, length=10, items=30):
    generator = torch.Generator().manual_seed(3)
    x = torch.randint(1, items + 1, (rows, length), generator=generator)
    for r in range(rows):  # left padding of varied length
        x[r, :r % 6] = 0
    return x


def test_chosen_positions_are_a_fifth_of_the_items_after_the_padding():
    x = sample_sequences()
    chosen = choose_positions(x, 0.2)
    for r in range(len(x)):
        start = int((x[r] != 0).nonzero()[0])
        assert int(chosen[r].sum()) == int(np.float32(0.2) * int((x[r] > 0).sum()))
        assert not chosen[r, :start].any()


def test_masking_equals_the_released_loop():
    x = sample_sequences()
    chosen = choose_positions(x, 0.4)
    per_row = [chosen[r].nonzero().flatten().tolist() for r in range(len(x))]
    assert torch.equal(mask_positions(x, chosen), released_aug_masking(x.clone(), per_row))


def test_substitution_equals_the_released_loop():
    x = sample_sequences()
    weight = torch.randn(31, 8)
    chosen = choose_positions(x, 0.4)
    per_row = [chosen[r].nonzero().flatten().tolist() for r in range(len(x))]
    ours = substitute_positions(x, chosen, weight)
    assert torch.equal(x, sample_sequences())  # the code edits its input in place; ours does not
    assert torch.equal(ours, released_aug_substitute(x.clone(), per_row, weight))
    assert not torch.equal(ours, x)


def test_info_nce_equals_the_released_double_loop():
    hidden = torch.randn(10, 6, dtype=torch.float64)
    assert info_nce(hidden).item() == pytest.approx(released_info_nce(hidden).item(), rel=1e-10)


def test_distinct_new_items_equal_the_released_count():
    x = sample_sequences()
    counts = [len(torch.unique(row[row > 20])) for row in x]  # train_ditto.py L338-341
    assert distinct_above(x, 20).tolist() == counts


# ------------------------------------------------------------------ end to end

@pytest.mark.parametrize("backbone", ["nextitnet", "sasrec"])
def test_ditto_runs_end_to_end(backbone, results_root):
    config = tiny_config(methods=["DITTO"], train=TRAIN)
    config.backbone = dataclasses.replace(config.backbone, name=backbone)
    (record,) = run(config, RunStore.create(config.to_dict(), results_root), progress=False)
    matrix = record.matrix()
    assert np.isfinite(matrix[np.tril_indices(len(matrix))]).all()
    assert (matrix[np.tril_indices(len(matrix))] > 0).all()


def test_learning_with_new_items_trains_every_transfer_loss(context, tasks, monkeypatch):
    torch.manual_seed(0)
    aware = time_aware(tasks)
    seen = []
    original = DITTO.transfer_losses

    def recording(self, *args):
        parts = original(self, *args)
        seen.append({name: float(parts[name].detach()) for name in ("fkt", "bkt1", "bkt2")})
        return parts

    monkeypatch.setattr(DITTO, "transfer_losses", recording)
    method = DITTO.build(context, {})
    method.learn(aware, context)
    assert all(any(batch[name] > 0 for batch in seen) for name in ("fkt", "bkt1", "bkt2"))
    assert method.mean_embeddings.shape == (4, NEXTITNET.embedding_dim)
    assert [log["task"] for log in method.fit_logs] == [t.name for t in aware]
    assert all(math.isfinite(log["best_valid"]) for log in method.fit_logs)


def test_an_item_task_with_shared_targets_trains_on_the_item_table(context, tasks):
    """DITTO's own data: later item tasks' targets are ids of the shared item dictionary."""
    def shifted(split):  # synthetic targets 0..19 -> item ids 1..20
        return TaskSplit(split.inputs, split.targets + 1)

    shared = dataclasses.replace(tasks[1], n_targets=DATA["n_items"], shared_targets=True, train=shifted(tasks[1].train),
                                 valid=shifted(tasks[1].valid), test=shifted(tasks[1].test))
    torch.manual_seed(0)
    method = DITTO.build(context, {})
    method.learn([tasks[0], shared], context)
    assert len(method.targets) == 0  # no table of its own: scored against the item embedding
    method.eval()
    with torch.no_grad():
        scores = method.scores(shared, batch_of(shared, 4))
    assert scores.shape == (4, DATA["n_items"] + 1) and torch.isinf(scores[:, 0]).all()
    assert math.isfinite(method.fit_logs[-1]["best_valid"])


def test_the_mean_embedding_is_taken_over_the_tasks_vocabulary_rows(context, tasks):
    """train_ditto.py L176: the mean of the previous model's table, padding row included."""
    torch.manual_seed(0)
    method = DITTO.build(context, {})
    method.learn(time_aware(tasks[:1]), context)
    table = method.net.encoder.embedding.weight.detach()
    assert torch.allclose(method.mean_embeddings[0], table[:31].mean(dim=0))  # T1 knows items 1..30
    assert not torch.allclose(method.mean_embeddings[0], table.mean(dim=0))


def test_the_released_protocol_selects_on_sampled_mrr_at_5(context, tasks, results_root):
    method, _ = structured(context, tasks[:2])
    method.eval()
    head = method.net.heads[1]
    with torch.no_grad():
        head.weight.zero_(), head.bias.zero_()  # every candidate ties: no negative ranks above the target
    assert method.released_validation(tasks[1], torch.device("cpu"), 8) == 1.0
    with torch.no_grad():
        head.bias.normal_()
    value = method.released_validation(tasks[1], torch.device("cpu"), 8)
    assert 0 <= value < 1 and value * 8 * 60 == pytest.approx(round(value * 8 * 60))  # one batch of 8 rows
    config = tiny_config(methods=["DITTO"], train=dataclasses.replace(TRAIN, protocol="released", epochs=2))
    (record,) = run(config, RunStore.create(config.to_dict(), results_root), progress=False)
    assert record.complete and np.isfinite(record.matrix()[-1]).all()


@pytest.mark.parametrize("name", ["DITTO", "DITTO+nofkt"])
def test_a_resumed_run_gives_the_matrix_of_an_uninterrupted_one(name, results_root):
    security.test_every_method_resumes_from_a_weights_only_checkpoint_to_the_same_matrix(name, results_root)
