"""Losses and evaluation scores shared by every method, by task kind."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.engine.tasks import Task, TaskKind


def training_loss(task: Task, hidden: torch.Tensor, head, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Next-item: predict every next item (as NextItNet does); others: predict from the last state."""
    if task.kind is TaskKind.NEXT_ITEM:
        logits = head(hidden[:, :-1])
        next_items = inputs[:, 1:].masked_fill(inputs[:, :-1] == 0, 0)
        return F.cross_entropy(logits.flatten(0, 1), next_items.flatten(), ignore_index=0)
    return F.cross_entropy(head(hidden[:, -1]), targets)


def evaluation_scores(task: Task, hidden: torch.Tensor, head) -> torch.Tensor:
    """Scores of every candidate from the user representation (the last position)."""
    logits = head(hidden[:, -1])
    if task.kind is TaskKind.NEXT_ITEM:
        logits = logits.clone()
        logits[:, 0] = float("-inf")  # padding is never a candidate
    return logits


def evaluation_pairs(task: Task, inputs, targets):
    """Next-item evaluation hides the last item and asks for it; other tasks use the split as is."""
    if task.kind is TaskKind.NEXT_ITEM:
        return inputs[:, :-1], inputs[:, -1]
    return inputs, targets
