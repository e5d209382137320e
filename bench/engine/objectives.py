"""Losses and evaluation scores shared by every method, by task kind."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.backbone import TiedItemHead
from bench.errors import BenchError

from bench.engine.softmax import (IGNORE, chunked_cross_entropy, exact_loss_path, fused_cross_entropy,
                                  log_uniform_probabilities, sampled_cross_entropy)
from bench.engine.tasks import Task, TaskKind


@dataclass
class LossSettings:
    """How next-item losses are computed while one `fit` runs (from TrainConfig's loss fields).

    "full" is the exact softmax over every item, in chunks of `chunk_rows` rows (None: by a
    fixed memory budget); "sampled" is Conure's sampled softmax with `negatives` classes
    (None: 20% of the items, as its generator_prune_t1.py) drawn by `sampler`.
    """

    loss: str = "full"
    negatives: int | None = None
    sampler: str = "log_uniform"
    chunk_rows: int | None = None
    _probabilities: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.loss not in ("full", "sampled"):
            raise BenchError(f"train.loss: expected 'full' or 'sampled', got {self.loss!r}")
        if self.sampler not in ("log_uniform", "popularity"):
            raise BenchError(f"train.sampler: expected 'log_uniform' or 'popularity', got {self.sampler!r}")
        for name in ("negatives", "chunk_rows"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise BenchError(f"train.{name if name == 'negatives' else 'loss_chunk_rows'}: "
                                 f"expected a positive integer, got {value!r}")

    def probabilities(self, task: Task, n_classes: int, device: torch.device) -> torch.Tensor:
        """The sampler's distribution over output ids (0 = padding, never drawn), cached per task."""
        key = (task.name, n_classes, str(device))
        if key not in self._probabilities:
            if self.sampler == "popularity":  # item frequency in the task's training sequences
                counts = np.bincount(task.train.inputs.ravel(), minlength=n_classes)[:n_classes]
                p = torch.from_numpy(counts).double()
            else:  # log_uniform: Zipf over ids 1..n, as TF's default sampler
                p = torch.cat([torch.zeros(1, dtype=torch.float64),
                               log_uniform_probabilities(n_classes - 1).double()])
            p[0] = 0.0
            self._probabilities[key] = (p / p.sum()).float().to(device)
        return self._probabilities[key]


_SETTINGS: ContextVar[LossSettings] = ContextVar("loss_settings", default=LossSettings())


@contextmanager
def loss_settings(settings: LossSettings) -> Iterator[None]:
    """Use `settings` for every `training_loss` inside the block (the fit loop sets the run's)."""
    token = _SETTINGS.set(settings)
    try:
        yield
    finally:
        _SETTINGS.reset(token)


def head_parameters(head) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (classes x d) and bias of a linear output layer, for the chunked losses."""
    if isinstance(head, TiedItemHead):
        return head.embedding.weight, head.bias
    if isinstance(head, nn.Linear) and head.bias is not None:
        return head.weight, head.bias
    raise TypeError(f"next-item loss needs a linear head with bias, got {type(head).__name__}")


def training_loss(task: Task, hidden: torch.Tensor, head, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-item: predict every next item (as NextItNet does); others: predict from the last state.

    The next-item softmax spans the whole item vocabulary at every position, so it is
    computed in bounded memory (see bench.engine.softmax) over the non-padding positions only.
    """
    if task.kind is TaskKind.NEXT_ITEM:
        next_items = inputs[:, 1:].masked_fill(inputs[:, :-1] == 0, 0).flatten()
        weight, bias = head_parameters(head)
        settings = _SETTINGS.get()
        if settings.loss == "full" and exact_loss_path(hidden.device).startswith("fused"):
            return fused_cross_entropy(hidden[:, :-1].flatten(0, 1), weight, bias,
                                       next_items.masked_fill(next_items == 0, IGNORE))  # no host sync
        rows = (next_items != 0).nonzero().squeeze(1)
        states, next_items = hidden[:, :-1].flatten(0, 1)[rows], next_items[rows]
        if settings.loss == "sampled":
            negatives = settings.negatives or max(1, int(0.2 * len(weight)))
            return sampled_cross_entropy(states, weight, bias, next_items,
                                         settings.probabilities(task, len(weight), states.device), negatives)
        return chunked_cross_entropy(states, weight, bias, next_items, settings.chunk_rows)
    return F.cross_entropy(head(hidden[:, -1]), targets)


def evaluation_scores(task: Task, hidden: torch.Tensor, head) -> torch.Tensor:
    """Scores of every candidate from the user representation (the last position)."""
    logits = head(hidden[:, -1])
    if task.item_vocabulary:  # outputs are item ids (next-item, shared-target item tasks)
        if torch.is_grad_enabled():
            logits = logits.clone()  # evaluation runs without grad and needs no second score matrix
        logits[:, 0] = float("-inf")  # padding is never a candidate
    return logits


def evaluation_pairs(task: Task, inputs, targets):
    """Next-item evaluation hides the last item and asks for it; other tasks use the split as is."""
    if task.kind is TaskKind.NEXT_ITEM:
        return inputs[:, :-1], inputs[:, -1]
    return inputs, targets
