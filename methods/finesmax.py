"""FineSmax: the T1 encoder is frozen; each later task trains only its own softmax head."""

from __future__ import annotations

import torch

from bench.engine.backbone import make_head
from bench.engine.objectives import evaluation_scores, training_loss
from bench.registry import METHODS
from bench.methods.base import SharedEncoderHeads


@METHODS.register("FineSmax")
class FineSmax(SharedEncoderHeads):
    paper = "PeterRec (Yuan et al., SIGIR 2020) / Conure, baseline"

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if self.encoder is None:
                self.encoder, head = context.pretrained(task)
                self.encoder.requires_grad_(False)
            else:
                head = make_head(task, self.encoder).to(context.device)
                encoder = self.encoder.eval()

                def loss_fn(x, y, task=task, head=head):
                    with torch.no_grad():
                        hidden = encoder(x)
                    return training_loss(task, hidden, head, x, y)

                def score_fn(x, task=task, head=head):
                    return evaluation_scores(task, encoder(x), head)

                self.record(context.fit(task, head.parameters(), loss_fn, score_fn, head,
                                        description=f"FineSmax {task.name}"))
            self.keep(task, head)
