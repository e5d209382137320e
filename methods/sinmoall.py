"""SinMoAll: one NextItNet fine-tuned through every task in turn, old heads kept.

All parameters move on every task, so earlier tasks are served by a drifted encoder:
this is the catastrophic-forgetting baseline (#B = 1).
"""

from __future__ import annotations

from bench.engine.backbone import make_head
from bench.registry import METHODS
from bench.methods.base import SharedEncoderHeads


@METHODS.register("SinMoAll")
class SinMoAll(SharedEncoderHeads):
    paper = "Conure (Yuan et al., SIGIR 2021), baseline"

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if self.encoder is None:
                self.encoder, head = context.pretrained(task)
            else:
                head = make_head(task, self.encoder).to(context.device)
                self.record(context.fit_model(task, self.encoder, head, description=f"SinMoAll {task.name}"))
            self.keep(task, head)
