"""Turn parsed tables (one shared sequence matrix, per-task rows and targets) into a Dataset.

Parsing is cached; splitting is not, because it is cheap and depends on the seed. Two
schemes:

* `reference` (default): what the released Conure/TERACON code does. Each task's
  instances are shuffled on their own and cut 80/5/15 (train/valid/test), the holdout's
  first quarter being validation (`split_percentage=0.2`, then `0.75` of it for test).
* `user`: a seeded user-level split shared by all tasks, so a user tested on one task
  is never trained on in another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.errors import BenchError
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit

SPLITS = ("train", "valid", "test")


@dataclass
class TableTask:
    """One task before splitting: instance k is (sequences[rows[k]], targets[k])."""

    name: str
    kind: TaskKind
    rows: np.ndarray
    targets: np.ndarray
    n_targets: int
    description: str = ""


def check_split_options(split: str, valid_fraction: float, test_fraction: float, where: str) -> None:
    if split not in ("reference", "user"):
        raise BenchError(f"{where}: split must be 'reference' or 'user', got '{split}'")
    if not (valid_fraction >= 0 and test_fraction > 0 and valid_fraction + test_fraction < 1):
        raise BenchError(f"{where}: need valid_fraction >= 0, test_fraction > 0 and their sum < 1")


def reference_split(n: int, rng: np.random.Generator, valid_fraction: float,
                    test_fraction: float) -> dict[str, np.ndarray]:
    """Shuffle, then train = first part, valid = next, test = last (as the released code)."""
    order = rng.permutation(n)
    n_holdout = int((valid_fraction + test_fraction) * n)
    n_test = int(n_holdout * test_fraction / (valid_fraction + test_fraction))
    return {"train": order[:n - n_holdout], "valid": order[n - n_holdout:n - n_test],
            "test": order[n - n_test:]}


def user_assignment(n_users: int, seed: int, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """0 = train, 1 = valid, 2 = test, one draw per user."""
    draws = np.random.default_rng([seed, 7919]).random(n_users)
    return np.where(draws < test_fraction, 2, np.where(draws < test_fraction + valid_fraction, 1, 0))


def build_dataset(name: str, n_items: int, sequences: np.ndarray, tasks: list[TableTask],
                  split: str = "reference", valid_fraction: float = 0.05, test_fraction: float = 0.15,
                  seed: int = 0, info: dict | None = None) -> Dataset:
    assignment = user_assignment(len(sequences), seed, valid_fraction, test_fraction) if split == "user" else None
    built = []
    for number, table in enumerate(tasks, start=1):
        if assignment is None:
            parts = reference_split(len(table.rows), np.random.default_rng([seed, number]),
                                    valid_fraction, test_fraction)
        else:
            where = assignment[table.rows]
            parts = {name_: np.flatnonzero(where == code) for code, name_ in enumerate(SPLITS)}
        splits = {part: TaskSplit(sequences[table.rows[index]], table.targets[index])
                  for part, index in parts.items()}
        built.append(Task(table.name, table.kind, int(table.n_targets), **splits,
                          description=table.description))
    return Dataset(name, int(n_items), built, info=info or {})
