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

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from bench.errors import BenchError
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit, distinct_items, statistics_row

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


@dataclass
class Tables:
    """A dataset before splitting, as table-based adapters parse (and cache) it."""

    name: str
    n_items: int
    sequences: np.ndarray
    tasks: list[TableTask]
    split: str = "reference"
    valid_fraction: float = 0.05
    test_fraction: float = 0.15
    seed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        return self.sequences.shape[1]

    def parts(self) -> Iterator[tuple[TableTask, dict[str, np.ndarray]]]:
        """Each task with its instance indices per split."""
        assignment = (user_assignment(len(self.sequences), self.seed, self.valid_fraction, self.test_fraction)
                      if self.split == "user" else None)
        for number, table in enumerate(self.tasks, start=1):
            if assignment is None:
                parts = reference_split(len(table.rows), np.random.default_rng([self.seed, number]),
                                        self.valid_fraction, self.test_fraction)
            else:
                where = assignment[table.rows]
                parts = {name: np.flatnonzero(where == code) for code, name in enumerate(SPLITS)}
            yield table, parts

    def build(self) -> Dataset:
        sequences = self.sequences.astype(np.int32, copy=False)  # splits copy rows: half the memory of int64
        built = []
        for table, parts in self.parts():
            splits = {part: TaskSplit(sequences[table.rows[index]], table.targets[index])
                      for part, index in parts.items()}
            built.append(Task(table.name, table.kind, int(table.n_targets), **splits,
                              description=table.description))
        return Dataset(self.name, int(self.n_items), built, info=self.info)

    def statistics(self) -> list[dict]:
        """Dataset.statistics() of `build()`, without copying any sequence (`bench data info`)."""
        rows, all_items = [], None
        for number, (table, parts) in enumerate(self.parts(), start=1):
            users = np.unique(table.rows)
            if len(users) == len(self.sequences):  # every user: the items of the whole matrix
                all_items = all_items if all_items is not None else distinct_items([self.sequences], self.n_items)
                n_inputs = all_items
            else:
                n_inputs = distinct_items((self.sequences[users[start:start + 100_000]]
                                           for start in range(0, len(users), 100_000)), self.n_items)
            rows.append(statistics_row(number, table.name, table.kind, n_inputs, table.n_targets,
                                       [len(parts[name]) for name in SPLITS]))
        return rows
