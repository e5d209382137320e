"""DNN (Conure's baseline): a separate mean-pooling MLP per task, no sequence encoder transfer."""

from __future__ import annotations

import torch
from torch import nn

from bench.backbone import MeanPoolEncoder, make_head
from bench.objectives import evaluation_scores
from bench.registry import METHODS
from methods.base import ContinualMethod, module_key


@METHODS.register("DNN")
class DNN(ContinualMethod):
    paper = "Conure (Yuan et al., SIGIR 2021), baseline"

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()

    def learn(self, tasks, context) -> None:
        for task in tasks:
            encoder = MeanPoolEncoder(context.n_items, context.backbone).to(context.device)
            head = make_head(task, encoder).to(context.device)
            self.record(context.fit_model(task, encoder, head, description=f"DNN {task.name}"))
            self.encoders[module_key(task)] = encoder
            self.heads[module_key(task)] = head
            self.learned.append(task.name)

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        key = module_key(task)
        return evaluation_scores(task, self.encoders[key](inputs), self.heads[key])
