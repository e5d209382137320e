"""Ranking and classification metrics, and the continual-learning summaries of R[i][j]."""

from __future__ import annotations

import math

import numpy as np
import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1-based rank of each target among all candidates; ties count against the target."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    return (scores > target_scores).sum(dim=1) + (scores == target_scores).sum(dim=1)


def ranking_metrics(scores: torch.Tensor, targets: torch.Tensor, k: int = 5) -> dict[str, float]:
    """MRR@k, HR@k and NDCG@k over the full candidate set (no negative sampling)."""
    ranks = target_ranks(scores, targets).double()
    hit = ranks <= k
    return {
        f"mrr@{k}": float(torch.where(hit, 1.0 / ranks, 0.0).mean()),
        f"hr@{k}": float(hit.double().mean()),
        f"ndcg@{k}": float(torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0).mean()),
    }


def accuracy(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Share of rows whose highest score is the target (scikit-learn's import alone took 1.7 s)."""
    return {"accuracy": float((scores.argmax(dim=1) == targets).double().mean())}


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
