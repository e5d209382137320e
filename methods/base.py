"""What every method shares: the interface the runner calls, and the default search space.

`MethodContext` (what a method runs in) is re-exported from the engine for plugin authors.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.config import from_dict
from bench.engine.backbone import UserEncoder, build_encoder, make_head
from bench.engine.context import MethodContext  # noqa: F401  (re-exported for plugins)
from bench.engine.growth import grow_module
from bench.engine.objectives import evaluation_scores
from bench.engine.tasks import Task
from bench.engine.training import FitLog


@dataclass
class NoOptions:
    """A method without hyperparameters of its own."""


def module_key(task: Task) -> str:
    """A task name usable as a ModuleDict key (no dots)."""
    return task.name.replace(".", "_")


def shared_search_space(trial) -> dict[str, Any]:
    """The train settings every method is sensitive to (the default of `search_space`)."""
    return {
        "train.lr": trial.suggest_float("train.lr", 1e-4, 1e-2, log=True),
        "train.batch_size": trial.suggest_categorical("train.batch_size", [64, 128, 256]),
        "train.weight_decay": trial.suggest_categorical("train.weight_decay", [0.0, 1e-6, 1e-5, 1e-4]),
    }


class ContinualMethod(nn.Module):
    """A method learns tasks one step at a time and scores any task it has learnt.

    Subclasses set `Options` (a dataclass of the method's hyperparameters, with the
    papers' defaults) and implement `learn` and `scores`.
    """

    Options: ClassVar[type] = NoOptions
    paper: ClassVar[str] = ""
    #: named option overrides for what the harness adds to the paper, run as rows
    #: "<Method>+<variant>" (bench/registry.py); never the default
    variants: ClassVar[dict[str, dict[str, Any]]] = {}
    #: the backbone sites the method acts on (bench/engine/backbone.py SITE_KINDS), checked
    #: before any training; a backbone without them is one error naming method, backbone, site
    sites: ClassVar[tuple[str, ...]] = ()
    #: how the method acts on each backbone (by backbone name; "*" = any), for `bench list`
    mechanisms: ClassVar[dict[str, str]] = {}

    def __init__(self, context: MethodContext, options: Any = None):
        super().__init__()
        self.options = options if options is not None else self.Options()
        self.n_items = context.n_items
        self.learned: list[str] = []
        self.fit_logs: list[dict] = []
        self.variant_scores = {}

    @classmethod
    def build(cls, context: MethodContext, options: dict | None = None) -> "ContinualMethod":
        parsed = from_dict(cls.Options, options or {}, f"method_options.{cls.registered_name}")  # type: ignore[attr-defined]
        return cls(context, parsed).to(context.device)

    @classmethod
    def required_sites(cls, options: Any) -> tuple[str, ...]:
        """The site kinds this method needs with `options` (a variant may need more)."""
        return cls.sites

    @classmethod
    def search_space(cls, trial) -> dict[str, Any]:
        """What `bench tune` searches for this method: suggest values on the Optuna `trial`.

        Keys without a dot are fields of `Options`; dotted keys are run settings as for
        `--set` ("train.lr", ...; `train.*` then apply to this method only). Extend the
        shared default: `return {**super().search_space(trial), "alpha": trial.suggest_float(...)}`.
        """
        return shared_search_space(trial)

    # --- what the runner calls ---------------------------------------------------------
    def schedule(self, n_tasks: int) -> list[list[int]]:
        """Steps of training: lists of task positions learnt together (one task per step by default)."""
        return [[position] for position in range(n_tasks)]

    def scored_positions(self, seen: list[int], step: list[int]) -> list[int]:
        """Task positions scored after a step: every task seen so far (the continual protocol)."""
        return seen

    def learn(self, tasks: list[Task], context: MethodContext) -> None:
        raise NotImplementedError

    def scores(self, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def grow_items(self, n_items: int, context: MethodContext) -> None:
        """The item vocabulary grew to ids 1..n_items (the time-aware scenario, docs/scenarios.md):
        the runner calls this before a step whose tasks know more items, and before scoring a
        past task on later data that holds new items. The default is the harness's growth:
        item tables and item-output heads get new rows (old rows copied, new ones initialised
        as DITTO's released code does); a method with other per-item state overrides it or
        refuses the scenario (bench/engine/growth.py: per-item state it cannot grow is a
        GrowthError naming the tensor)."""
        name = getattr(type(self), "registered_name", type(self).__name__)
        grow_module(self, self.n_items, n_items, owner=f"method {name}")
        self.n_items = max(self.n_items, n_items)

    # --- measured, not declared ----------------------------------------------------------
    def n_backbones(self) -> int:
        """Number of distinct user encoders the method stores (#B)."""
        return len({id(m) for m in self.modules() if isinstance(m, UserEncoder)})

    def parameter_count(self) -> int:
        """Trainable-parameter storage of everything the method keeps (shared tensors once)."""
        return sum(p.numel() for p in self.parameters())

    #: extra table rows, e.g. {"Conure-": {task name: metrics}}; the runner stores them
    variant_scores: dict[str, dict[str, dict[str, float]]]

    def record(self, log: FitLog) -> FitLog:
        self.fit_logs.append(dataclasses.asdict(log))
        return log

    # --- step checkpoints: tensors and plain data, never the pickled object ------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """What a step checkpoint keeps beside `state_dict()`, as plain data (names, logs,
        scores, which parameters are frozen), so the file loads with weights_only=True and
        loading it can never run code (docs/security-loading.md). A method with other plain
        state between steps extends it and `resume`."""
        return {"learned": list(self.learned), "fit_logs": copy.deepcopy(self.fit_logs),
                "variant_scores": copy.deepcopy(self.variant_scores),
                "frozen": [name for name, p in self.named_parameters(remove_duplicate=False)
                           if not p.requires_grad]}

    def restore(self, learnt: list[Task], context: MethodContext) -> None:
        """Re-create the structure (encoders, heads, per-task layers and masks) this method has
        after learning `learnt`, in that order, with any values: `resume` then loads the step
        checkpoint's weights into it. Nothing to do for a method whose structure is fixed at
        construction; a method that grows per task overrides it (never trains, never reads the
        T1 cache)."""

    def resume(self, learnt: list[Task], context: MethodContext, state: dict[str, torch.Tensor],
               extra: dict[str, Any]) -> None:
        """This freshly built method as it was when the step checkpoint (`state_dict()` and
        `checkpoint_state()`) was written. Raises ValueError when the weights do not fit the
        restored structure (a method without a matching `restore`)."""
        self.restore(learnt, context)
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(str(error).strip().splitlines()[0]) from None
        self.learned = list(extra["learned"])
        self.fit_logs = copy.deepcopy(extra["fit_logs"])
        self.variant_scores = copy.deepcopy(extra["variant_scores"])
        frozen = set(extra["frozen"])
        for name, parameter in self.named_parameters(remove_duplicate=False):
            parameter.requires_grad_(name not in frozen)


class PerTaskModels(ContinualMethod):
    """Methods that keep a separate encoder and head for every task (DNN, SinMo, FineAll)."""

    def __init__(self, context: MethodContext, options: Any = None):
        super().__init__(context, options)
        self.encoders = nn.ModuleDict()
        self.heads = nn.ModuleDict()

    def keep(self, task: Task, encoder: nn.Module, head: nn.Module) -> None:
        self.encoders[module_key(task)] = encoder
        self.heads[module_key(task)] = head
        self.learned.append(task.name)

    def new_encoder(self, context: MethodContext) -> nn.Module:
        """A task's encoder before training (the T1 model is one too)."""
        return context.new_encoder()

    def restore(self, learnt: list[Task], context: MethodContext) -> None:
        for task in learnt:
            encoder = self.new_encoder(context)
            self.encoders[module_key(task)] = encoder
            self.heads[module_key(task)] = make_head(task, encoder).to(context.device)

    def scores(self, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        key = module_key(task)
        return evaluation_scores(task, self.encoders[key](inputs), self.heads[key])


class SharedEncoderHeads(ContinualMethod):
    """Methods with one encoder shared by all tasks and a head per task (SinMoAll, FineSmax)."""

    def __init__(self, context: MethodContext, options: Any = None):
        super().__init__(context, options)
        self.encoder: nn.Module | None = None
        self.heads = nn.ModuleDict()

    def keep(self, task: Task, head: nn.Module) -> None:
        self.heads[module_key(task)] = head
        self.learned.append(task.name)

    def restore(self, learnt: list[Task], context: MethodContext) -> None:
        """The T1 model's encoder (context.pretrained's structure) and a head per task."""
        if learnt:
            self.encoder = build_encoder(context.n_items, context.backbone).to(context.device)
        for task in learnt:
            self.heads[module_key(task)] = make_head(task, self.encoder).to(context.device)

    def scores(self, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        return evaluation_scores(task, self.encoder(inputs), self.heads[module_key(task)])
