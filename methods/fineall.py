"""FineAll: for each task a copy of the T1 model, fine-tuned entirely (#B = #tasks)."""

from __future__ import annotations

import torch
from torch import nn

from bench.backbone import make_head
from bench.objectives import evaluation_scores
from bench.registry import METHODS
from methods.base import ContinualMethod, module_key


@METHODS.register("FineAll")
class FineAll(ContinualMethod):
    paper = "PeterRec (Yuan et al., SIGIR 2020) / Conure, baseline"

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()
        self.first_task: str | None = None

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if self.first_task is None:
                self.first_task = task.name
                encoder, head = context.pretrained(task)
            else:
                encoder, _ = context.pretrained()  # a fresh copy of the T1 model
                head = make_head(task, encoder).to(context.device)
                self.record(context.fit_model(task, encoder, head, description=f"FineAll {task.name}"))
            self.encoders[module_key(task)] = encoder
            self.heads[module_key(task)] = head
            self.learned.append(task.name)

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        key = module_key(task)
        return evaluation_scores(task, self.encoders[key](inputs), self.heads[key])
