"""Ranking and classification metrics, and the continual-learning summaries of R[i][j]."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among all candidates; ties count against the target."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    # greater, plus equal (the target itself included); counted a few rows at a time because
    # summing a boolean mask materialises it as int64 (2.6 GB for 512 users x 646K items)
    rows = max(1, 2**24 // max(scores.shape[1], 1))
    return torch.cat([(scores[start:start + rows] >= target_scores[start:start + rows]).sum(dim=1)
                      for start in range(0, max(len(scores), 1), rows)])


class RankingSums:
    """Streaming MRR@k, HR@k and NDCG@k over the full candidate set (no negative sampling).

    `k` is one cut-off or several (`[5, 20]`: mrr@5, hr@5, ndcg@5, mrr@20, ...). `add` keeps
    per-metric sums on the scores' device (no host sync per batch), so evaluation memory is one
    batch of scores, never users x items. `result()` hands out the sums and the instance count,
    which processes can all-reduce before `metrics(sums, count)` divides. The sampled-candidate
    protocol (bench/engine/protocols.py) ranks against drawn negatives with the same sums.
    """

    def __init__(self, k: int | Sequence[int] = 5):
        self.cutoffs = [k] if isinstance(k, int) else list(k)
        self.k = self.cutoffs[0]
        self.names = tuple(f"{metric}@{cut}" for cut in self.cutoffs for metric in ("mrr", "hr", "ndcg"))
        self.sums: torch.Tensor | None = None
        self.count = 0

    def add(self, scores: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """`rows` (the instances' indices in the split) is for protocols that need them."""
        self.add_ranks(target_ranks(scores, targets).double(), scores.gather(1, targets.unsqueeze(1)).squeeze(1))

    def add_ranks(self, ranks: torch.Tensor, target_scores: torch.Tensor) -> None:
        """Add 1-based ranks; a NaN target score makes the sums NaN."""
        # A NaN target score has no rank: it would count as rank 0 (every comparison with NaN
        # is false), making 1/rank infinite, so it makes the sums NaN instead, which the
        # training loop and the runner report as divergence.
        undefined = torch.where(target_scores.isnan(), torch.nan, 0.0)
        parts = []
        for k in self.cutoffs:
            hit = ranks <= k
            parts += [
                (torch.where(hit, 1.0 / ranks, 0.0) + undefined).sum(),
                (hit.double() + undefined).sum(),
                (torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0) + undefined).sum(),
            ]
        batch = torch.stack(parts)
        self.sums = batch if self.sums is None else self.sums + batch
        self.count += len(ranks)

    def result(self) -> tuple[torch.Tensor, int]:
        sums = self.sums if self.sums is not None else torch.zeros(len(self.names), dtype=torch.float64)
        return sums, self.count

    def metrics(self, sums: torch.Tensor | None = None, count: int | None = None) -> dict[str, float]:
        """Means from this accumulator's sums, or from sums reduced over several processes."""
        if sums is None:
            sums, count = self.result()
        values = (sums / max(int(count), 1)).tolist()
        return dict(zip(self.names, values))


class AccuracySums(RankingSums):
    """Streaming accuracy: the number of rows whose arg-max is the target."""

    def __init__(self):
        self.names = ("accuracy",)
        self.sums = None
        self.count = 0

    def add(self, scores: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        correct = (scores.argmax(dim=1) == targets).sum(dtype=torch.float64).reshape(1)
        correct = correct + torch.where(scores.isnan().any(), torch.nan, 0.0)  # no accuracy from NaN scores
        self.sums = correct if self.sums is None else self.sums + correct
        self.count += len(targets)


def ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, k: int | Sequence[int] = 5) -> dict[str, float]:
    """MRR@k, HR@k and NDCG@k of one block of scores (at each cut-off of `k`)."""
    sums = RankingSums(k)
    sums.add(scores, targets)
    return sums.metrics()


def accuracy(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    sums = AccuracySums()
    sums.add(scores, targets)
    return sums.metrics()


# --- summaries of the performance matrix R (rows: after training step i, cols: task j) ---


def final_performance(matrix: np.ndarray) -> np.ndarray:
    """Scores of every task after the last one was learnt (Conure Table 2's cells)."""
    return np.asarray(matrix, dtype=float)[-1]


def average_performance(matrix: np.ndarray) -> float:
    """Mean of the final row over the tasks it scores (NaN, without a warning, if none)."""
    final = final_performance(matrix)
    final = final[~np.isnan(final)]
    return float(final.mean()) if len(final) else math.nan


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT (Lopez-Paz & Ranzato, 2017): mean of R[T][j] - R[j][j] over j < T; negative = forgetting."""
    R = np.asarray(matrix, dtype=float)
    deltas = [R[-1, j] - R[j, j] for j in range(len(R) - 1)]
    deltas = [d for d in deltas if not math.isnan(d)]
    return float(np.mean(deltas)) if deltas else math.nan


def forward_transfer(matrix: np.ndarray, reference: np.ndarray) -> float:
    """FWT: mean of R[j][j] - b_j over j >= 2, with b_j a model trained on task j alone.

    GEM's definition evaluates a task before training it, which is chance level for the
    task-specific heads of this setting; the papers instead compare with single-task
    training, so the reference here is the from-scratch score (SinMo's diagonal).
    """
    R = np.asarray(matrix, dtype=float)
    reference = np.asarray(reference, dtype=float)
    deltas = [R[j, j] - reference[j] for j in range(1, len(R))]
    deltas = [d for d in deltas if not math.isnan(d)]
    return float(np.mean(deltas)) if deltas else math.nan


def forgetting_matrix(matrix: np.ndarray) -> np.ndarray:
    """F[i][j] = R[i][j] - R[j][j]: how far task j has moved since it was learnt."""
    R = np.asarray(matrix, dtype=float)
    diagonal = np.diag(R)
    F = R - diagonal[None, :]
    F[np.triu_indices(len(R), k=1)] = np.nan
    return F
