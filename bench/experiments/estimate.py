"""`bench run --estimate`: the wall time of a run predicted from a few timed steps, before it starts.

Every selected method goes through its whole task sequence at the requested shape (data,
backbone, batch sizes, device), but every training it asks for (`MethodContext.fit`) runs
only `PROBE_EPOCHS` epochs of `PROBE_STEPS` steps with one validation batch, and every
evaluation only one batch. The last probe epoch gives the time of one step and of one
validation batch (the first warms up); the prediction scales them to the planned number of
steps, validation batches and epochs. Two figures per method: `max` assumes every training
runs all its epochs (an upper bound), `early` assumes early stopping ends each at the first
epoch it may (`min_epochs + patience`). A T1 model found in the T1 cache costs nothing; one
shared by several methods is counted once, for the first method that needs it, as a run
does. Nothing is written: no run folder, no T1 cache entry.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from bench.config import RunConfig, TrainConfig
from bench.engine import distributed, t1cache
from bench.engine.context import MethodContext
from bench.engine.tasks import Task
from bench.engine.training import evaluate, fit
from bench.registry import METHODS

PROBE_STEPS = 3
PROBE_EPOCHS = 2


@dataclass
class Cost:
    """Predicted seconds of one part of a run: `max` with every epoch run, `early` with early stops."""

    max: float = 0.0
    early: float = 0.0

    def add(self, other: "Cost") -> None:
        self.max += other.max
        self.early += other.early


@dataclass
class MethodEstimate:
    method: str
    cost: Cost = field(default_factory=Cost)
    fits: int = 0
    steps: int = 0  # planned training steps (all epochs)
    t1: list[tuple[str, bool, Cost]] = field(default_factory=list)  # (name, cached, cost) per T1 model it brings
    probe_seconds: float = 0.0


def batches_per_epoch(n: int, batch_size: int, limit: int | None = None) -> int:
    """As `fit` counts them: this rank's share of the batches, capped by train.limit_train_batches."""
    n_batches = max(1, math.ceil(math.ceil(n / batch_size) / distributed.world_size()))
    return min(n_batches, limit) if limit is not None else n_batches


def eval_batches(n: int, batch_size: int, limit: int | None = None) -> int:
    n = min(n, limit) if limit is not None else n
    return max(1, math.ceil(math.ceil(n / distributed.world_size()) / batch_size))


@dataclass
class ProbeContext(MethodContext):
    """A MethodContext whose trainings and evaluations are cut to a few timed steps; it keeps
    the run's real settings in `train` and predicts what they would cost."""

    real_t1_cache: Path | None = None
    current: MethodEstimate | None = None
    _t1: tuple[str, bool] | None = None
    _in_fit: bool = False  # evaluations inside a fit (MTL's validation) are timed by the fit

    def fit(self, task: Task, parameters, loss_fn, score_fn, state, hooks=None, description: str = "",
            train: TrainConfig | None = None, validate=None):
        planned = train or self.train_for(task)
        steps = batches_per_epoch(len(task.train), planned.batch_size, planned.limit_train_batches)
        probe = dataclasses.replace(
            planned, epochs=min(planned.epochs, PROBE_EPOCHS), min_epochs=PROBE_EPOCHS, patience=PROBE_EPOCHS,
            limit_train_batches=min(steps, PROBE_STEPS), limit_eval_users=planned.eval_batch_size)
        self._in_fit = True
        try:
            log = fit(task, parameters, loss_fn, score_fn, state, probe, self.device, hooks=hooks,
                      progress=False, description=description, validate=validate)
        finally:
            self._in_fit = False
        last = log.epochs[-1]
        step = last["train_seconds"] / probe.limit_train_batches
        valid_batch = last["seconds"] - last["train_seconds"]  # one validation batch (of each task, for MTL)
        epoch = steps * step + eval_batches(len(task.valid), planned.eval_batch_size,
                                            planned.limit_eval_users) * valid_batch
        earliest = min(planned.epochs, planned.min_epochs + planned.patience)
        if self._t1 is None or not self._t1[1]:  # a T1 model found in the T1 cache is loaded, not trained
            cost = Cost(epoch * planned.epochs, epoch * earliest)
            self.current.cost.add(cost)
            self.current.steps += steps * planned.epochs
            if self._t1 is not None:
                self.current.t1[-1][2].add(cost)
        self.current.fits += 1
        return log

    def evaluate(self, task: Task, score_fn, split: str | None = None) -> dict[str, float]:
        return self.timed_evaluation(task, score_fn, split or self.eval_split)

    def timed_evaluation(self, task: Task, score_fn, split: str) -> dict[str, float]:
        """One batch of the evaluation, timed and scaled to the whole split."""
        started = time.perf_counter()
        scores = evaluate(task, task.split(split), score_fn, self.device, self.train.eval_batch_size,
                          self.train.eval_batch_size, self.train.precision)
        seconds = (time.perf_counter() - started) * eval_batches(
            len(task.split(split)), self.train.eval_batch_size, self.train.limit_eval_users)
        if not self._in_fit:
            self.current.cost.add(Cost(seconds, seconds))
        return scores

    def first_model_entry(self, name, kind, task, backbone, extra, train, code=()):
        """Probe-train a T1 model, priced at nothing if the run would find it in the T1 cache."""
        key, _ = t1cache.entry_key(kind, task, self.n_items, backbone, self.train_for(task), self.seed,
                                   self.device, extra, code)
        cached = self.real_t1_cache is not None and t1cache.T1Cache(self.real_t1_cache).has(key)
        self.current.t1.append((name, cached, Cost()))
        self._t1 = (name, cached)
        try:
            return train()
        finally:
            self._t1 = None


def estimate(config: RunConfig) -> list[MethodEstimate]:
    """Probe every method of `config` in turn (see the module docstring)."""
    from bench.experiments.runner import method_context, prepare, resolve_device

    dataset, tasks, methods = prepare(config)
    device = distributed.device(resolve_device(config.device))
    context = ProbeContext(n_items=dataset.n_items, backbone=config.backbone, train=config.train, device=device,
                           seed=config.seed, first_task=tasks[0], eval_split=config.eval_split,
                           real_t1_cache=t1cache.default_root())
    estimates = []
    for name in methods:
        context.current = MethodEstimate(name)
        started = time.perf_counter()
        own = method_context(name, context, config)
        torch.manual_seed(config.seed)  # as runner.run_method, so TERACON's T1 cache key is the run's
        method = METHODS.get(name).build(own, METHODS.options(name, config.method_options))
        seen: list[int] = []
        for positions in method.schedule(len(tasks)):
            seen += [p for p in positions if p not in seen]
            method.train()
            method.learn([tasks[p] for p in positions], own)
            method.eval()
            for p in method.scored_positions(seen, positions):
                own.timed_evaluation(tasks[p], partial(method.scores, tasks[p]), config.eval_split)
        context.current.probe_seconds = time.perf_counter() - started
        estimates.append(context.current)
    return estimates


def render(estimates: list[MethodEstimate], config: RunConfig, runs: int = 1) -> str:
    """The per-method predictions and the total, as lines for the terminal."""
    total, probe = Cost(), sum(e.probe_seconds for e in estimates)
    from bench.experiments.runner import resolve_device

    lines = [f"estimate: {len(estimates)} method(s) on {config.dataset} ({resolve_device(config.device)}, "
             f"{torch.get_num_threads()} thread(s)), from {PROBE_STEPS} timed steps per training "
             f"({probe:.1f} s of probing); 'max' runs every epoch (an upper bound), 'early' stops each "
             "task at the first epoch early stopping may",
             f"{'method':<22} {'max':>10} {'early':>10} {'steps':>10}  T1 models"]
    for e in estimates:
        total.add(e.cost)
        lines.append(f"{e.method:<22} {duration(e.cost.max):>10} {duration(e.cost.early):>10} {e.steps:>10,}  "
                     f"{'; '.join(t1_text(*t1) for t1 in e.t1) or '-'}")
    lines.append(f"{'total':<22} {duration(total.max):>10} {duration(total.early):>10}")
    if runs > 1:
        lines.append(f"{'total x ' + str(runs) + ' runs':<22} {duration(total.max * runs):>10} "
                     f"{duration(total.early * runs):>10}  (the seeds/orders of the sweep; a T1 model two runs "
                     "share is counted in each)")
    return "\n".join(lines)


def t1_text(name: str, cached: bool, cost: Cost) -> str:
    return f"{name}: cached (0 s)" if cached else f"{name}: trained ({duration(cost.max)} max)"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
