"""DNN (Conure's baseline): a separate mean-pooling MLP per task, no sequence encoder transfer."""

from __future__ import annotations

from bench.engine.backbone import MeanPoolEncoder, make_head
from bench.registry import METHODS
from bench.methods.base import PerTaskModels


@METHODS.register("DNN")
class DNN(PerTaskModels):
    paper = "Conure (Yuan et al., SIGIR 2021), baseline"
    mechanisms = {"*": "its own mean-pooling MLP per task; the backbone is not used"}

    def new_encoder(self, context):
        return MeanPoolEncoder(context.n_items, context.backbone).to(context.device)

    def learn(self, tasks, context) -> None:
        for task in tasks:
            encoder = self.new_encoder(context)
            head = make_head(task, encoder).to(context.device)
            self.record(context.fit_model(task, encoder, head, description=f"DNN {task.name}"))
            self.keep(task, encoder, head)
