"""The fit loop's caps for smoke runs at full size."""

from __future__ import annotations

import dataclasses

import numpy as np
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
