"""Task-switched layers: one module serves every task, the method says which task is active.

Conure and PeterRec keep a single backbone but give each task something of its own
(ownership masks, model patches, layer norms). Rather than copying the backbone's forward
pass, they install task-switched modules at its sites (bench/engine/backbone.py) and call
`select_task` before every forward.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from bench.engine.backbone import require_sites
from bench.engine.objectives import evaluation_scores
from bench.methods.base import SharedEncoderHeads, module_key


class TaskSwitched(nn.Module):
    """A layer whose behaviour depends on the active task (set by `select_task`)."""

    def select(self, key: str, position: int) -> None:
        """`key` names the task (ModuleDict key), `position` is its 1-based learning order."""
        raise NotImplementedError


def select_task(module: nn.Module, key: str, position: int) -> None:
    """Make every task-switched layer inside `module` serve task `key`."""
    for layer in module.modules():
        if isinstance(layer, TaskSwitched):
            layer.select(key, position)


class TaskLayerNorm(TaskSwitched):
    """One LayerNorm per task; the active task's normalises the input.

    Conure's code names its norms `<taskID>_layer_norm1/2` (one pair per task), and PeterRec
    fine-tunes the norms with the patches, so both need a private copy per task.
    """

    def __init__(self, first_key: str, first_norm: nn.LayerNorm):
        super().__init__()
        self.norms = nn.ModuleDict({first_key: first_norm})
        self.active: str | None = None

    def add_task(self, key: str, source: nn.LayerNorm | None = None) -> nn.LayerNorm:
        """A new task's norm: a copy of `source`, or a freshly initialised one (gamma 1, beta 0)."""
        template = next(iter(self.norms.values()))
        if source is not None:
            norm = copy.deepcopy(source)
        else:
            norm = nn.LayerNorm(template.normalized_shape, eps=template.eps,
                                elementwise_affine=True).to(template.weight.device)
        norm.requires_grad_(True)
        self.norms[key] = norm
        return norm

    def select(self, key: str, position: int) -> None:
        self.active = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError("TaskLayerNorm used before a task was selected")
        return self.norms[self.active](x)


def task_norms(encoder: nn.Module) -> list[TaskLayerNorm]:
    return [layer for layer in encoder.modules() if isinstance(layer, TaskLayerNorm)]


def make_norms_task_specific(encoder: nn.Module, first_key: str, method: str) -> None:
    """Replace every norm site by a TaskLayerNorm whose first task keeps the original."""
    for slot in require_sites(encoder, "norms", method):
        slot.set(TaskLayerNorm(first_key, slot.get()))


class TaskSwitchedMethod(SharedEncoderHeads):
    """One encoder whose task-switched layers are pointed at a task before every forward pass.

    `positions[key]` is the task's 1-based place in the sequence (Conure's ownership masks
    show a task the weights of every task up to that place).
    """

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.options.validate()
        self.positions: dict[str, int] = {}

    def encode(self, task, inputs: torch.Tensor) -> torch.Tensor:
        key = module_key(task)
        select_task(self.encoder, key, self.positions[key])
        return self.encoder(inputs)

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        return evaluation_scores(task, self.encode(task, inputs), self.heads[module_key(task)])
