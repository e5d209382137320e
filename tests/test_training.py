"""The fit loop's caps for smoke runs at full size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import TrainConfig
from bench.engine.tasks import Task, TaskKind, TaskSplit
from bench.engine.training import evaluate, fit


def test_limits_cap_training_batches_and_evaluated_users():
    rng = np.random.default_rng(0)
    split = TaskSplit(rng.integers(1, 10, (100, 5)), rng.integers(0, 3, 100))
    task = Task("T4", TaskKind.CLASS, 3, split, split, split)
    model = torch.nn.Embedding(10, 3)
    seen = {"train": 0, "scored": 0}

    def loss_fn(x, y):
        seen["train"] += 1
        return torch.nn.functional.cross_entropy(model(x[:, -1]), y)

    def score_fn(x):
        seen["scored"] += len(x)
        return model(x[:, -1])

    config = TrainConfig(epochs=2, batch_size=10, patience=5, limit_train_batches=3, limit_eval_users=25,
                         eval_batch_size=8)
    log = fit(task, model.parameters(), loss_fn, score_fn, model, config, torch.device("cpu"))
    assert seen == {"train": 2 * 3, "scored": 2 * 25} and len(log.epochs) == 2
    seen["scored"] = 0
    capped = evaluate(task, split, score_fn, torch.device("cpu"), 8, limit=25)
    assert seen["scored"] == 25
    assert capped == evaluate(task, split.subset(np.arange(25)), score_fn, torch.device("cpu"), 8)
    seen["train"] = 0
    fit(task, model.parameters(), loss_fn, score_fn, model,
        dataclasses.replace(config, epochs=1, limit_train_batches=None), torch.device("cpu"))
    assert seen["train"] == 10  # uncapped: every batch


def _recording_fit(protocol: str, n: int, batch_size: int, valid_scores: list[torch.Tensor] | None = None):
    """Fit a 1-parameter model on n rows; returns the progress values seen and the log."""
    rng = np.random.default_rng(0)
    split = TaskSplit(rng.integers(1, 10, (n, 5)), rng.integers(0, 3, n))
    task = Task("T4", TaskKind.CLASS, 3, split, split, split)
    model = torch.nn.Linear(1, 3)
    progress, epoch = [], {"n": -1}

    def loss_fn(x, y):
        return model(torch.ones(len(x), 1)).pow(2).mean()

    def score_fn(x):
        if valid_scores is None:
            return model(torch.ones(len(x), 1))
        return valid_scores[epoch["n"]][: len(x)]

    def on_batch_start(p):
        if p == 0:
            epoch["n"] += 1
        progress.append(p)

    from bench.engine.training import TrainHooks

    config = TrainConfig(epochs=1 if valid_scores is None else len(valid_scores), batch_size=batch_size,
                         patience=9, protocol=protocol, eval_batch_size=n)
    log = fit(task, model.parameters(), loss_fn, score_fn, model, config, torch.device("cpu"),
              hooks=TrainHooks(on_batch_start=on_batch_start))
    return progress, log, task


def test_released_protocol_drops_the_partial_and_last_batch_and_anneals_over_n_over_batch():
    """utils.py getBatch yields while end < n: 10 rows in batches of 4 give 2 batches, 8 rows 1;
    s follows batch_idx / (n / batch) (train_teracon.py L178-180), never reaching 1."""
    progress, _, _ = _recording_fit("released", 10, 4)
    assert progress == [0.0, 0.4]
    progress, _, _ = _recording_fit("released", 8, 4)
    assert progress == [0.0]
    progress, _, _ = _recording_fit("harness", 10, 4)
    assert progress == [0.0, 0.5, 1.0]


def test_released_protocol_selects_on_hit_at_1_with_a_strict_improvement():
    """Epoch 2 has the same hit@1 (and MRR) as epoch 1 and a lower validation loss: the
    harness keeps epoch 2 (tie broken by loss), the released protocol keeps epoch 1."""
    n = 6
    _, _, task = _recording_fit("harness", n, 6)
    y = torch.from_numpy(task.valid.targets).long()
    first = torch.zeros(n, 3)
    first[torch.arange(n), y] = 1.0  # every row right, barely
    second = first * 5  # same argmax, far lower cross-entropy
    _, harness, _ = _recording_fit("harness", n, 6, [first, second])
    _, released, _ = _recording_fit("released", n, 6, [first, second])
    assert harness.best_epoch == 2
    assert released.best_epoch == 1 and released.best_valid == 1.0
    worse = first.clone()
    worse[0] = 0
    worse[0, (y[0] + 1) % 3] = 1.0  # one row wrong at epoch 1: epoch 2 (all right) wins
    _, released, _ = _recording_fit("released", n, 6, [worse, second])
    assert released.best_epoch == 2 and released.epochs[0]["valid"] == pytest.approx(5 / 6)


def test_released_protocol_validates_on_the_full_batches_of_a_fresh_shuffle():
    """train_task1.py validates on 512-row batches, train_teracon.py on training-size ones, both
    through getBatch: 1200 rows give 1024 (T1), 2400 rows at batch 1024 give 2048."""
    from bench.engine.training import released_validation_rows

    split = TaskSplit(np.arange(1200)[:, None], np.zeros(1200, dtype=np.int64))
    first = TrainConfig(batch_size=32, eval_batch_size=512, protocol="released")
    rows, size = released_validation_rows(split, first)
    assert (len(rows.targets), size) == (1024, 512)
    again, _ = released_validation_rows(split, first)
    assert set(rows.inputs[:, 0]) != set(again.inputs[:, 0])  # a new subset every epoch
    later = TrainConfig(batch_size=1024, eval_batch_size=512, protocol="released")
    big = TaskSplit(np.arange(2400)[:, None], np.zeros(2400, dtype=np.int64))
    assert len(released_validation_rows(big, later)[0].targets) == 2048
    small = TaskSplit(np.arange(600)[:, None], np.zeros(600, dtype=np.int64))
    assert len(released_validation_rows(small, later)[0].targets) == 600
