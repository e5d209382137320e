"""The task model: what a dataset adapter hands to the runner.

Every task shares one input space (a user's 0-padded behaviour sequence over the T1 item
vocabulary) and differs only in what is predicted, which is why one user representation
can be learnt continually across them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class TaskKind(str, Enum):
    NEXT_ITEM = "next_item"  # T1: predict each next item of the sequence itself
    ITEM = "item"  # T2/T3: predict target items of another domain
    CLASS = "class"  # T4..T6: predict a user label

    @property
    def primary_metric(self) -> str:
        return "accuracy" if self is TaskKind.CLASS else "mrr@5"


@dataclass
class TaskSplit:
    """Instances of one split: `inputs[k]` is a left 0-padded sequence, `targets[k]` its label.

    For next-item tasks the target is the sequence's last item (evaluation predicts it from
    the rest); a user with several target items appears once per target.
    """

    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        # int32 sequences stay int32 (half the memory at TTL size); batches are widened on the fly
        inputs = np.asarray(self.inputs)
        self.inputs = inputs if inputs.dtype == np.int32 else inputs.astype(np.int64, copy=False)
        self.targets = np.asarray(self.targets, dtype=np.int64)
        if self.inputs.ndim != 2 or len(self.inputs) != len(self.targets):
            raise ValueError(
                f"inputs {self.inputs.shape} and targets {self.targets.shape} do not align"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> "TaskSplit":
        return TaskSplit(self.inputs[rows], self.targets[rows])


@dataclass
class Task:
    name: str
    kind: TaskKind
    n_targets: int  # items of the task's own vocabulary (ids 1..n for next_item) or classes
    train: TaskSplit
    valid: TaskSplit
    test: TaskSplit
    description: str = ""
    # The time-aware scenario (DITTO, SIGIR 2025; docs/scenarios.md). All three None/False on
    # every other dataset, where nothing below changes today's behaviour.
    # The item vocabulary once this task's data has arrived: ids 1..n_items_known (items are
    # numbered in order of arrival, so a later task's vocabulary extends an earlier one's);
    # its splits hold no larger id. None: the dataset's whole vocabulary.
    n_items_known: int | None = None
    # An item task whose targets are items of the shared vocabulary (DITTO's data: later item
    # tasks' targets share T1's item dictionary): target = item id 1..n_targets, with
    # n_targets = n_items_known, scored like next-item targets (id 0 is padding, never a candidate).
    shared_targets: bool = False
    # The task's test instances from a later time (DITTO's task{i}_inference files): every row
    # of R after the task's own step scores the task on these, its own row on `test`.
    later: TaskSplit | None = None

    def __post_init__(self) -> None:
        self.kind = TaskKind(self.kind)
        if self.shared_targets and self.kind is not TaskKind.ITEM:
            raise ValueError(f"task {self.name}: shared_targets is for item tasks, not {self.kind.value}")

    @property
    def item_vocabulary(self) -> bool:
        """Whether the outputs are the shared item ids (0 = padding): next-item tasks, and item
        tasks with shared targets."""
        return self.kind is TaskKind.NEXT_ITEM or self.shared_targets

    @property
    def primary_metric(self) -> str:
        return self.kind.primary_metric

    @property
    def output_size(self) -> int:
        """Width of the softmax: outputs over item ids keep index 0 for padding."""
        return self.n_targets + 1 if self.item_vocabulary else self.n_targets

    def split(self, name: str) -> TaskSplit:
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


@dataclass
class Dataset:
    name: str
    n_items: int  # size of the shared input vocabulary (ids 1..n_items, 0 = padding)
    tasks: list[Task]
    info: dict = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        return self.tasks[0].train.inputs.shape[1]

    def ordered(self, order: list[int]) -> list[Task]:
        """Tasks in a 1-based order such as [1, 3, 2, 4, 5, 6]."""
        return [self.tasks[number - 1] for number in order]

    def statistics(self) -> list[dict]:
        """Per-task counts in the layout of Conure's Table 1."""
        rows = []
        for number, task in enumerate(self.tasks, start=1):
            splits = (task.train, task.valid, task.test)
            n_inputs = distinct_items((split.inputs for split in splits), self.n_items)
            rows.append(statistics_row(number, task.name, task.kind, n_inputs, task.n_targets,
                                       [len(split) for split in splits]))
            if task.n_items_known is not None or task.later is not None:  # the time-aware scenario
                rows[-1] |= {"known items": task.n_items_known if task.n_items_known is not None else self.n_items,
                             "later": len(task.later) if task.later is not None else 0}
        return rows


def distinct_items(blocks, n_items: int) -> int:
    """Distinct non-padding ids over blocks of sequences: a scatter, not np.unique over everything."""
    seen = np.zeros(n_items + 1, dtype=bool)
    for block in blocks:
        seen[block] = True
    return int(np.count_nonzero(seen[1:]))


def statistics_row(number: int, name: str, kind: TaskKind, n_inputs: int, n_targets: int,
                   sizes: list[int]) -> dict:
    """One row of Conure's Table 1; sizes are train, valid and test instances."""
    return {"task": f"T{number}", "name": name, "kind": TaskKind(kind).value, "instances": int(sum(sizes)),
            "|X|": int(n_inputs), "|Y|": int(n_targets), "train/valid/test": "/".join(str(int(n)) for n in sizes)}
