import math

import numpy as np
import pytest
import torch

from bench.engine.metrics import (accuracy, average_performance, backward_transfer, forgetting_matrix,
                           forward_transfer, ranking_metrics, target_ranks)


def test_ranks_and_ranking_metrics_by_hand():
    scores = torch.tensor([
        [0.1, 0.9, 0.3, 0.2, 0.0, 0.5, 0.4],  # target 1 ranked 1st
        [0.1, 0.9, 0.3, 0.2, 0.0, 0.5, 0.4],  # target 2 ranked 4th (0.9, 0.5, 0.4 above)
        [0.1, 0.9, 0.3, 0.2, 0.0, 0.5, 0.4],  # target 4 ranked 7th: outside the top 5
    ])
    targets = torch.tensor([1, 2, 4])
    assert target_ranks(scores, targets).tolist() == [1, 4, 7]
    metrics = ranking_metrics(scores, targets, k=5)
    assert metrics["mrr@5"] == pytest.approx((1 + 1 / 4 + 0) / 3)
    assert metrics["hr@5"] == pytest.approx(2 / 3)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 3)


def test_ties_count_against_the_target():
    scores = torch.zeros(1, 10)
    assert ranking_metrics(scores, torch.tensor([3]))["mrr@5"] == 0.0


def test_accuracy():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert accuracy(scores, torch.tensor([0, 1, 1, 1]))["accuracy"] == pytest.approx(0.75)


R = np.array([
    [0.50, np.nan, np.nan],
    [0.40, 0.60, np.nan],
    [0.30, 0.55, 0.70],
])


def test_bwt_average_and_forgetting_matrix_by_hand():
    assert backward_transfer(R) == pytest.approx(((0.30 - 0.50) + (0.55 - 0.60)) / 2)
    assert average_performance(R) == pytest.approx((0.30 + 0.55 + 0.70) / 3)
    F = forgetting_matrix(R)
    assert F[2, 0] == pytest.approx(-0.20) and F[1, 0] == pytest.approx(-0.10)
    assert F[2, 1] == pytest.approx(-0.05) and F[2, 2] == 0.0
    assert np.isnan(F[0, 1]) and np.isnan(F[0, 2])


def test_fwt_against_single_task_reference():
    reference = np.array([0.50, 0.50, 0.80])
    assert forward_transfer(R, reference) == pytest.approx(((0.60 - 0.50) + (0.70 - 0.80)) / 2)


def test_no_forgetting_gives_zero_bwt():
    stable = np.tril(np.tile([0.2, 0.4, 0.6], (3, 1)))
    stable[np.triu_indices(3, 1)] = np.nan
    assert backward_transfer(stable) == 0.0


def test_streaming_evaluation_equals_whole_split():
    """Batch-by-batch sums give the metrics of the concatenated score matrix, for any batch size."""
    from bench.engine.metrics import RankingSums
    from bench.engine.tasks import Task, TaskKind, TaskSplit
    from bench.engine.training import evaluate

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(1, 30, (103, 6), generator=generator).numpy()
    table = torch.randn(31, 31, generator=generator)
    table[:, :2] = 0.0  # ties with the target count against it
    score = lambda x: table[x[:, -1]]  # noqa: E731
    item = Task("T1", TaskKind.NEXT_ITEM, 30, *[TaskSplit(inputs, inputs[:, -1])] * 3)
    labels = torch.randint(0, 4, (103,), generator=generator).numpy()
    profile = Task("T4", TaskKind.CLASS, 4, *[TaskSplit(inputs, labels)] * 3)
    for task in (item, profile):
        whole = evaluate(task, task.test, score, torch.device("cpu"), batch_size=1000)
        for batch_size in (1, 7, 64):
            streamed = evaluate(task, task.test, score, torch.device("cpu"), batch_size=batch_size)
            assert streamed.keys() == whole.keys()
            assert streamed == pytest.approx(whole, abs=1e-12)
    x = torch.from_numpy(inputs[:, :-1])
    reference = ranking_metrics(table[x[:, -1]], torch.from_numpy(inputs[:, -1]))
    assert whole != {} and evaluate(item, item.test, score, torch.device("cpu"), 10) == pytest.approx(reference)
    sums = RankingSums()
    sums.add(table[x[:50, -1]], torch.from_numpy(inputs[:50, -1]))
    total, count = sums.result()
    assert count == 50 and total.shape == (3,) and total.dtype == torch.float64


def test_accuracy_sums_reduce_like_counts():
    from bench.engine.metrics import AccuracySums

    sums = AccuracySums()
    sums.add(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
    sums.add(torch.tensor([[0.6, 0.4]]), torch.tensor([0]))
    total, count = sums.result()
    assert total.tolist() == [2.0] and count == 3
    assert sums.metrics(total * 2, count * 2)["accuracy"] == pytest.approx(2 / 3)
