"""SinMo: a fresh backbone (the run's `backbone.name`) trained from scratch on each task; the first one is the shared T1 model."""

from __future__ import annotations

from bench.engine.backbone import make_head
from bench.registry import METHODS
from bench.methods.base import PerTaskModels


@METHODS.register("SinMo")
class SinMo(PerTaskModels):
    paper = "Conure (Yuan et al., SIGIR 2021), baseline"

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if not self.learned:
                encoder, head = context.pretrained(task)
            else:
                encoder = context.new_encoder()
                head = make_head(task, encoder).to(context.device)
                self.record(context.fit_model(task, encoder, head, description=f"SinMo {task.name}"))
            self.keep(task, encoder, head)
