"""The cause of the T2/T3 diagonal gap in docs/parity-ditto.md, measured on one model.

Trains the harness's DITTO on T1..Tk of the parity data (k = 2 or 3; the parity run's settings,
the released protocol) and scores Tk's test with the harness's sampled protocol twice: over Tk's
own vocabulary (the released test's candidates, `len(items)` at its step) and over the
vocabulary the runner's row k has grown to for T1's later data (never-trained items included).
The second is the runner's row-k score to the last digit. As in the runner, a task after T2
trains at the grown vocabulary (its training negatives span the never-trained items too).

    OMP_NUM_THREADS=1 python benchmarks/parity_ditto_candidates.py \\
        results/parity/ditto/u12000-i600+120-l20-iic-d64-1x4-e5x5/data SEED [K]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.config import BackboneConfig, EvalConfig, FirstTaskSchedule, TrainConfig  # noqa: E402
from bench.datasets.base import load_dataset  # noqa: E402
from bench.engine.context import MethodContext  # noqa: E402
from bench.engine.protocols import Protocol  # noqa: E402
from bench.registry import METHODS  # noqa: E402
import bench.methods  # noqa: E402,F401  (registers DITTO)


def sampled_mrr(method, task, seed: int) -> float:
    inputs, targets = torch.as_tensor(task.test.inputs), torch.as_tensor(task.test.targets)
    with torch.no_grad():
        scores = method.scores(task, inputs)
    sums = Protocol(EvalConfig(protocol="sampled", negatives=99), seed).sums(task)
    sums.add(scores, targets, torch.arange(len(targets)))
    return sums.metrics()["mrr@5"]


def main(data: str, seed: int, through: int = 2) -> None:
    dataset = load_dataset("ditto", {"class_tasks": [4], "seed": seed}, data)
    t1, last = dataset.tasks[0], dataset.tasks[through - 1]
    train = TrainConfig(epochs=5, batch_size=512, lr=5e-4, patience=2, min_epochs=1, protocol="released",
                        first_task=FirstTaskSchedule(epochs=5, batch_size=512, lr=0.01, patience=3))
    torch.manual_seed(seed)
    context = MethodContext(n_items=t1.n_items_known, backbone=BackboneConfig(embedding_dim=64, dilations=[1, 4]),
                            train=train, device=torch.device("cpu"), seed=seed, first_task=t1)
    method = METHODS.get("DITTO").build(context, METHODS.options("DITTO", {}))
    grown = int(t1.later.inputs.max())  # what T1's later data holds: the runner's row vocabulary
    for step, task in enumerate(dataset.tasks[:through]):
        if task.n_items_known > context.n_items:
            context.n_items = task.n_items_known
            method.grow_items(task.n_items_known, context)
        method.learn([task], context)
        if 0 < step < through - 1:  # the runner's row scores T1's later data: grown, never shrunk
            method.grow_items(grown, context)
            context.n_items = grown
    method.eval()
    own = sampled_mrr(method, last, seed)
    method.grow_items(grown, context)
    context.n_items = method.n_items = grown
    wide = sampled_mrr(method, dataclasses.replace(last, n_targets=grown), seed)
    print(f"seed {seed}: {last.name} MRR@5 over its own {last.n_items_known} items {own:.4f}; "
          f"over {grown} items {wide:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 2)
