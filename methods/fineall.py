"""FineAll: for each task a copy of the T1 model, fine-tuned entirely (#B = #tasks)."""

from __future__ import annotations

from bench.engine.backbone import make_head
from bench.registry import METHODS
from bench.methods.base import PerTaskModels


@METHODS.register("FineAll")
class FineAll(PerTaskModels):
    paper = "PeterRec (Yuan et al., SIGIR 2020) / Conure, baseline"

    def learn(self, tasks, context) -> None:
        for task in tasks:
            encoder, head = context.pretrained()  # a fresh copy of the T1 model
            if self.learned:
                head = make_head(task, encoder).to(context.device)
                self.record(context.fit_model(task, encoder, head, description=f"FineAll {task.name}"))
            self.keep(task, encoder, head)
