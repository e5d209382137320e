"""Harness growth for the time-aware scenario (docs/scenarios.md): new item rows in a trained model.

When a later task brings new items (ids numbered in order of arrival), a model built for ids
1..n must score ids 1..m, m > n. DITTO's released code (github seungyoon-Choi/DITTO_official,
HEAD cfcd3b9) builds the next task's model with the larger table, drawn as
`NextItNet_Decoder.__init__` draws it (ditto.py L216-218: U(-sqrt(1/rows), +sqrt(1/rows)) over
the new row count), and copies the old rows in (train_ditto.py L149). `grow_items` does the
same on any method's modules, in place, so a tied head that points at the item table keeps
pointing at it (the Parameter objects stay the same; only their data is replaced):

- every `nn.Embedding` with the old row count n+1 (the backbones' `embedding`): old rows
  copied, new rows U(+-sqrt(1/(m+1))) as DITTO draws them;
- `TiedItemHead.bias` (n+1 entries): new entries 0, as a new TiedItemHead has them;
- every `nn.Linear` with n+1 outputs (a head whose outputs are item ids): old rows copied,
  new rows (weight and bias) as a fresh `nn.Linear` of the new width draws them.

Any other parameter or buffer with a dimension of n+1 is per-item state the harness cannot
grow (Conure+embprune's ownership of each table entry): `GrowthError` names it, before
anything is changed. Draws come from the global CPU RNG (then moved), so a run is
reproducible whatever the device. Optimizer state needs no surgery: every `fit` builds its own.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from bench.engine.backbone import TiedItemHead
from bench.engine.tasks import Task, TaskSplit
from bench.errors import BenchError


class GrowthError(BenchError):
    """A model holds per-item state the harness cannot grow (one line naming the tensor)."""

    def __init__(self, owner: str, detail: str):
        super().__init__(f"{owner} {detail}")
        self.detail = detail


def task_vocabulary(task: Task, default: int) -> int:
    """The item vocabulary once `task`'s data has arrived (the dataset's when it does not say)."""
    return task.n_items_known if task.n_items_known is not None else default


def split_vocabulary(split: TaskSplit, task: Task) -> int:
    """The largest item id a split holds (inputs, and targets of item-vocabulary tasks)."""
    largest = int(split.inputs.max(initial=0))
    if task.item_vocabulary and len(split.targets):
        largest = max(largest, int(split.targets.max()))
    return largest


def at_vocabulary(task: Task, n_items: int) -> Task:
    """`task` as seen when the vocabulary is ids 1..n_items: an item-vocabulary task's outputs
    (and so its head, its candidates and its padding column) cover every known item; any
    other task is returned as it is."""
    if not task.item_vocabulary or task.n_targets == n_items:
        return task
    return dataclasses.replace(task, n_targets=n_items)


def is_time_aware(tasks: list[Task]) -> bool:
    """Whether a task sequence is the time-aware scenario (a task declares its vocabulary or later data)."""
    return any(task.n_items_known is not None or task.later is not None for task in tasks)


def _grown_rows(old: torch.Tensor, new_rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([old.detach(), new_rows.to(device=old.device, dtype=old.dtype)], dim=0)


def per_item_tensors(module: nn.Module, old_rows: int) -> list[str]:
    """Names of the parameters and buffers with a dimension of `old_rows` that growth does not cover."""
    covered: set[int] = set()
    for sub in module.modules():
        if isinstance(sub, nn.Embedding) and sub.num_embeddings == old_rows:
            covered.add(id(sub.weight))
        elif isinstance(sub, TiedItemHead) and sub.bias.shape[0] == old_rows:
            covered.add(id(sub.bias))
        elif isinstance(sub, nn.Linear) and sub.out_features == old_rows:
            covered.add(id(sub.weight))
            if sub.bias is not None:
                covered.add(id(sub.bias))
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, tensor in tensors
            if id(tensor) not in covered and old_rows in tuple(tensor.shape)]


def grow_module(module: nn.Module, old_items: int, new_items: int, owner: str = "the model") -> None:
    """Grow every item table and item-output head of `module` from ids 1..old_items to
    1..new_items in place (see the module docstring); `GrowthError` before any change when
    other per-item state is found."""
    if new_items <= old_items:
        return
    old_rows, new_rows, added = old_items + 1, new_items + 1, new_items - old_items
    blocked = per_item_tensors(module, old_rows)
    if blocked:
        names = ", ".join(f"'{name}'" for name in blocked)
        raise GrowthError(owner, f"cannot grow its item table for new items (the time-aware scenario): "
                                 f"{names} {'holds' if len(blocked) == 1 else 'hold'} per-item state "
                                 "the harness cannot grow")
    bound = (1.0 / new_rows) ** 0.5  # ditto.py L217: stdv = sqrt(1 / item_size), item_size = rows
    done: set[int] = set()
    with torch.no_grad():
        for sub in module.modules():
            if id(sub) in done:
                continue
            done.add(id(sub))
            if isinstance(sub, nn.Embedding) and sub.num_embeddings == old_rows:
                weight = sub.weight
                weight.data = _grown_rows(weight, torch.empty(added, weight.shape[1]).uniform_(-bound, bound))
                weight.grad = None
                sub.num_embeddings = new_rows
            elif isinstance(sub, TiedItemHead) and sub.bias.shape[0] == old_rows:
                sub.bias.data = _grown_rows(sub.bias, torch.zeros(added))
                sub.bias.grad = None
            elif isinstance(sub, nn.Linear) and sub.out_features == old_rows:
                fresh = nn.Linear(sub.in_features, added, bias=sub.bias is not None)  # draws as a new layer
                sub.weight.data = _grown_rows(sub.weight, fresh.weight)
                sub.weight.grad = None
                if sub.bias is not None:
                    sub.bias.data = _grown_rows(sub.bias, fresh.bias)
                    sub.bias.grad = None
                sub.out_features = new_rows
