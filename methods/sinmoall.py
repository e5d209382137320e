"""SinMoAll: one NextItNet fine-tuned through every task in turn, old heads kept.

All parameters move on every task, so earlier tasks are served by a drifted encoder:
this is the catastrophic-forgetting baseline (#B = 1).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.backbone import make_head
from bench.objectives import evaluation_scores
from bench.registry import METHODS
from methods.base import ContinualMethod, module_key


@METHODS.register("SinMoAll")
class SinMoAll(ContinualMethod):
    paper = "Conure (Yuan et al., SIGIR 2021), baseline"

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.encoder: nn.Module | None = None
        self.heads = nn.ModuleDict()

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if self.encoder is None:
                self.encoder, head = context.pretrained(task)
            else:
                head = make_head(task, self.encoder).to(context.device)
                params = list(self.encoder.parameters()) + list(head.parameters())
                self.record(context.fit_model(task, self.encoder, head, params, f"SinMoAll {task.name}"))
            self.heads[module_key(task)] = head
            self.learned.append(task.name)

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        return evaluation_scores(task, self.encoder(inputs), self.heads[module_key(task)])
