"""MTL (Conure's multi-task reference): T1 first, then every later task jointly.

As in Conure's comparison, T1 is learnt on its own (it is the shared T1 model), and then
all later tasks are optimised together on one shared, fine-tuned backbone with one output
layer per task. Every optimisation step draws a batch from every task and minimises the
(weighted) sum of their losses; the epoch is a pass over the largest task's training
data (smaller tasks cycle through theirs), and the best epoch is the one with the highest
mean validation score over the joint tasks.

MTL is not continual: it needs all task data at once, so the runner scores it only after
T1 and after the joint step (rows 0 and n-1 of R; the rows between are NaN). T1's loss is
not part of the joint objective (as in Conure), so its final entry is left empty, as in
Conure's table; `include_first_task` adds T1 (with its own head and data) to the joint
objective, and then T1 is scored after the joint step too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from bench.engine.backbone import build_encoder, make_head
from bench.errors import BenchError
from bench.engine.objectives import evaluation_scores, training_loss
from bench.registry import METHODS
from bench.engine.training import TrainHooks, as_tensors
from bench.methods.base import ContinualMethod, module_key


@dataclass
class MTLOptions:
    task_weights: list[float] = field(default_factory=list, metadata={"min": 0})  # per joint task, in order; empty = plain sum
    include_first_task: bool = False  # also keep T1's loss in the joint objective (guards T1 against drift)


class CyclingBatches:
    """Endless shuffled minibatches of one task's training split (reshuffled every pass)."""

    def __init__(self, task, batch_size: int, device: torch.device, seed: int):
        self.inputs, self.targets = as_tensors(task.train, device)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long)
        self.cursor = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cursor >= len(self.order):
            self.order = torch.randperm(len(self.targets), generator=self.generator)
            self.cursor = 0
        rows = self.order[self.cursor:self.cursor + self.batch_size].to(self.inputs.device)
        self.cursor += self.batch_size
        return self.inputs[rows], self.targets[rows]

    def state_dict(self) -> dict:  # where the cycle stands: in-task checkpoints keep it
        return {"generator": self.generator.get_state(), "order": self.order, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order, self.cursor = state["order"], state["cursor"]


@METHODS.register("MTL")
class MTL(ContinualMethod):
    Options = MTLOptions
    paper = "Conure (Yuan et al., SIGIR 2021), multi-task reference"

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.encoder: nn.Module | None = None
        self.heads = nn.ModuleDict()

    def schedule(self, n_tasks: int) -> list[list[int]]:
        """T1 alone, then every other task in one joint step."""
        return [[0], list(range(1, n_tasks))] if n_tasks > 1 else [[0]]

    def scored_positions(self, seen: list[int], step: list[int]) -> list[int]:
        """Only what each step optimised: T1 after T1, the joint tasks after the joint step.

        As in Conure's table MTL has no final T1 entry: T1 is not part of the joint
        objective, so its drift says nothing about multi-task learning (with
        `include_first_task` it is part of it and is scored).
        """
        return sorted(set(step) | ({0} if self.options.include_first_task else set()))

    def weights_for(self, tasks) -> list[float]:
        weights = self.options.task_weights
        if not weights:
            return [1.0] * len(tasks)
        if len(weights) != len(tasks):
            raise BenchError(f"MTL: task_weights has {len(weights)} entries for {len(tasks)} joint tasks")
        return [float(w) for w in weights]

    def restore(self, learnt, context) -> None:
        """The shared encoder and a head per learnt task (T1 first, then the joint ones)."""
        if learnt:
            self.encoder = build_encoder(context.n_items, context.backbone).to(context.device)
            self.add_heads(learnt, context)

    def add_heads(self, tasks, context) -> None:
        for task in tasks:
            self.heads[module_key(task)] = make_head(task, self.encoder).to(context.device)

    def joint_loss(self, tasks, batches, weights: list[float] | None = None) -> torch.Tensor:
        """Weighted sum of every task's loss on its own batch, all through the shared encoder."""
        weights = weights or [1.0] * len(tasks)
        total = 0.0
        for task, (x, y), weight in zip(tasks, batches, weights):
            total = total + weight * training_loss(task, self.encoder(x), self.heads[module_key(task)], x, y)
        return total

    def learn(self, tasks, context) -> None:
        if self.encoder is None:
            first, *tasks = tasks
            self.encoder, head = context.pretrained(first)
            self.heads[module_key(first)] = head
            self.learned.append(first.name)
        if tasks:
            self._learn_jointly(tasks, context)

    def _learn_jointly(self, tasks, context) -> None:
        self.add_heads(tasks, context)
        learned = [task.name for task in tasks]
        if self.options.include_first_task:
            first = context.first_task
            if first is None or first.name != self.learned[0]:
                raise BenchError("MTL: include_first_task needs the run's first task in the context")
            tasks = [first, *tasks]  # its head was made in the first step
        weights = self.weights_for(tasks)
        driver = max(range(len(tasks)), key=lambda i: len(tasks[i].train))
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        samplers = [CyclingBatches(task, context.train.batch_size, context.device, seed + i)
                    for i, task in enumerate(tasks)]

        def loss_fn(x, y):
            batches = [(x, y) if i == driver else sampler.next() for i, sampler in enumerate(samplers)]
            return self.joint_loss(tasks, batches, weights)

        def score_fn(x):
            return self.scores(tasks[driver], x)

        def validate() -> float:
            return float(np.mean([context.evaluate(task, lambda x, task=task: self.scores(task, x), "valid")
                                  [task.primary_metric] for task in tasks]))

        heads = [self.heads[module_key(task)] for task in tasks]
        params = list(self.encoder.parameters()) + [p for head in heads for p in head.parameters()]
        params = list({id(p): p for p in params}.values())
        state = nn.ModuleList([self.encoder, *heads])
        names = ", ".join(task.name for task in tasks)
        self.record(context.fit(tasks[driver], params, loss_fn, score_fn, state, hooks=TrainHooks(resumable=samplers),
                                description=f"MTL joint ({names})", validate=validate))
        self.learned += learned

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        return evaluation_scores(task, self.encoder(inputs), self.heads[module_key(task)])
