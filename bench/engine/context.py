"""The context a method runs in: the run's settings, device, and the T1 model every method shares.

It lives in the engine (not with the methods) because the runner creates it and every method
receives it; the methods only read it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from bench.config import BackboneConfig, TrainConfig
from bench.engine import distributed, t1cache
from bench.engine import backbone as backbones
from bench.engine.backbone import Backbone, build_encoder, make_head
from bench.engine.checkpoints import Journal, scope
from bench.engine.growth import grow_module, task_vocabulary
from bench.engine.protocols import Protocol
from bench.engine.objectives import evaluation_scores, training_loss
from bench.engine.tasks import Task
from bench.engine.training import FitLog, TrainHooks, evaluate, fit
from bench.io import write_torch


@dataclass
class MethodContext:
    """Everything a method needs from the run, passed to `learn` (never stored with it)."""

    n_items: int  # the item vocabulary now (ids 1..n_items); grows during a time-aware run
    backbone: BackboneConfig
    train: TrainConfig
    device: torch.device
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = False
    first_task: Task | None = None  # the task every method learns first (T1 by default)
    eval_split: str = "test"  # where reported scores come from ("valid" while tuning)
    journal: Journal | None = None  # in-task checkpoints of the step being learnt (set by the runner)
    t1_cache: Path | None = None  # the shared T1 cache's folder; None: off (train in every run)
    on_t1: Callable[[str, dict], None] | None = None  # told each T1 model's cache key and hit
    protocol: Protocol | None = None  # how reported scores rank candidates (None: full ranking @5)
    # the run-wide train settings, where a method's own (`method_train`) replaced `train`: the
    # shared T1 model of the run's backbone is trained with these, whichever method asks first
    shared_train: TrainConfig | None = None
    _pretrained: dict[str, dict] = field(default_factory=dict, repr=False)

    def fit(self, task: Task, parameters, loss_fn, score_fn, state: nn.Module,
            hooks: TrainHooks | None = None, description: str = "",
            train: TrainConfig | None = None, validate=None) -> FitLog:
        return fit(task, parameters, loss_fn, score_fn, state, train or self.train_for(task), self.device,
                   hooks=hooks, progress=self.progress, description=description, validate=validate,
                   journal=self.journal)

    def train_for(self, task: Task) -> TrainConfig:
        """The run's train settings for `task`, with the first-task schedule where it is the first."""
        first = self.first_task is not None and task.name == self.first_task.name
        return self.train.for_task(first)

    def evaluate(self, task: Task, score_fn, split: str | None = None) -> dict[str, float]:
        """Metrics of `score_fn` on the run's evaluation split (for extra rows such as Conure-).

        While tuning that split is "valid", so no reported number ever reads the test split.
        Reported scores (no `split` given) follow the run's protocol (`eval.protocol`); a split
        named explicitly (a method's own model selection) is ranked in full.
        """
        protocol = self.protocol if split is None else None
        split = split or self.eval_split
        return evaluate(task, task.split(split), score_fn, self.device, self.train.eval_batch_size,
                        self.train.limit_eval_users, self.train.precision, protocol)

    def fit_model(self, task: Task, encoder: nn.Module, head: nn.Module, parameters=None,
                  description: str = "") -> FitLog:
        """Train encoder+head on one task with the standard loss (all parameters unless given)."""
        modules = nn.ModuleList([encoder, head])

        def loss_fn(x, y):
            return training_loss(task, encoder(x), head, x, y)

        def score_fn(x):
            return evaluation_scores(task, encoder(x), head)

        params = list(modules.parameters()) if parameters is None else list(parameters)
        return self.fit(task, params, loss_fn, score_fn, modules, description=description)

    def pretrained(self, task: Task | None = None,
                   backbone: BackboneConfig | None = None) -> tuple[Backbone, nn.Module]:
        """The run's backbone (`backbone.name`) trained on `task` (normally T1), trained once per
        run and shared.

        The papers start SinMoAll, FineSmax, FineAll, PeterRec and MTL from the same T1
        model; sharing it makes their T1 column identical and saves the largest training
        cost. It is trained under a fixed seed and taken from the T1 cache shared by runs
        and processes (bench/engine/t1cache.py); with that cache off, it is kept in the run's
        folder for resumed runs.
        The model of the run's backbone is trained with the run-wide train settings even when
        a method with its own (`method_train`) asks first, so every method gets the same one.
        A method whose paper uses another block (Conure: pre-LN, conv biases fixed at 0)
        passes its `backbone`; each distinct backbone is trained once (fields the backbone does
        not read are ignored: Conure's block on SASRec is the run's SASRec).
        In the time-aware scenario the model is trained at `task`'s own vocabulary (the
        vocabulary when its data arrived) and handed out grown to the vocabulary now
        (bench/engine/growth.py), so every step and a resumed run get the same T1 model.
        """
        task = task or self.first_task
        backbone = backbones.canonical(backbone or self.backbone)
        suffix = _backbone_suffix(backbone, backbones.canonical(self.backbone))  # '': the run's backbone
        key = _file_key(task.name) + suffix
        vocabulary = task_vocabulary(task, self.n_items)  # the context's own when not time-aware
        train = self.shared_train if self.shared_train is not None and not suffix else self.train
        at_t1 = (self if vocabulary == self.n_items and train is self.train
                 else dataclasses.replace(self, n_items=vocabulary, train=train))
        if key not in self._pretrained:
            path = self.cache_dir / f"pretrained-{key}.pt" if self.cache_dir else None
            entry = None
            if path is not None and path.exists():  # a resumed run (older runs, or the cache off)
                entry = t1cache.load_model_file(path, self.device)
            if entry is not None:
                self._pretrained[key] = entry
            else:
                self._pretrained[key] = at_t1.first_model_entry(
                    f"pretrained {key}" if key else "pretrained", "t1", task, backbone, {},
                    lambda: at_t1._train_pretrained(task, backbone))
                if path is not None and self.t1_cache is None and distributed.is_main():
                    write_torch(path, self._pretrained[key])  # every rank trained it; one writes
        encoder = build_encoder(at_t1.n_items, backbone).to(self.device)
        head = make_head(task, encoder).to(self.device)
        nn.ModuleList([encoder, head]).load_state_dict(copy.deepcopy(self._pretrained[key]["model"]))
        if self.n_items > at_t1.n_items:
            grow_module(nn.ModuleList([encoder, head]), at_t1.n_items, self.n_items, owner="the T1 model")
        return encoder, head

    def _train_pretrained(self, task: Task, backbone: BackboneConfig) -> dict:
        """Train the shared T1 model under the run's seed; the global RNG (CUDA's too) is left
        as it was, so loading the model from the T1 cache instead changes nothing after it."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            encoder = build_encoder(self.n_items, backbone).to(self.device)
            head = make_head(task, encoder).to(self.device)
            log = self.fit_model(task, encoder, head, description=f"pretrain {task.name}")
        return {"model": nn.ModuleList([encoder, head]).state_dict(), "log": dataclasses.asdict(log)}

    def new_encoder(self) -> Backbone:
        """A fresh, untrained encoder of the run's backbone (SinMo's per-task models)."""
        return build_encoder(self.n_items, self.backbone).to(self.device)

    def first_model_entry(self, name: str, kind: str, task: Task, backbone: BackboneConfig, extra: dict,
                          train: Callable[[], dict], code: tuple[str, ...] = ()) -> dict:
        """`train()`'s entry (a dict with the trained "model" state), from the T1 cache when one
        with the same key is there (bench/engine/t1cache.py); the key and whether it was found
        go to `on_t1` (the run's environment.json)."""
        cache_key, meta = t1cache.entry_key(kind, task, self.n_items, backbone, self.train_for(task),
                                            self.seed, self.device, extra, code)
        train = self._journaled(train, f"{kind}-{cache_key[:16]}")
        if self.t1_cache is None:
            entry, outcome = train(), t1cache.Outcome(cache_key, False, None)
        else:
            entry, outcome = t1cache.T1Cache(self.t1_cache).load_or_train(cache_key, meta, self.device, train)
        if self.on_t1 is not None:
            self.on_t1(name, outcome.record())
        return entry

    def _journaled(self, train: Callable[[], dict], name: str) -> Callable[[], dict]:
        """`train` with in-task checkpoints of its own (the run's cache folder), not the step's:
        a T1 model found in the T1 cache skips its training, so it must not take a call number
        of the step's journal (bench/engine/checkpoints.py)."""
        def journaled() -> dict:
            journal = (Journal(self.cache_dir / f"{name}.fit.pt", scope(name, self.train), distributed.is_main())
                       if self.cache_dir is not None else None)
            step_journal, self.journal = self.journal, journal
            try:
                entry = train()
            finally:
                self.journal = step_journal
            if journal is not None:
                journal.drop()
            return entry
        return journaled


def _backbone_suffix(backbone: BackboneConfig, run_backbone: BackboneConfig) -> str:
    """'' for the run's own backbone (the file name older runs used), else what differs."""
    run = dataclasses.asdict(run_backbone)
    changed = {k: v for k, v in dataclasses.asdict(backbone).items() if run[k] != v}
    return _file_key("".join(f"-{k}-{v}" for k, v in sorted(changed.items())))


def _file_key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
