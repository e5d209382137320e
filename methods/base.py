"""What every method shares: the context it runs in and the interface the runner calls."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bench.backbone import NextItNet, UserEncoder, make_head
from bench.config import BackboneConfig, TrainConfig, from_dict
from bench.io import write_torch
from bench.objectives import evaluation_scores, training_loss
from bench.tasks import Task
from bench.training import FitLog, TrainHooks, evaluate, fit


@dataclass
class NoOptions:
    """A method without hyperparameters of its own."""


@dataclass
class MethodContext:
    """Everything a method needs from the run, passed to `learn` (never pickled with it)."""

    n_items: int
    backbone: BackboneConfig
    train: TrainConfig
    device: torch.device
    seed: int = 0
    cache_dir: Path | None = None
    progress: bool = False
    first_task: Task | None = None  # the task every method learns first (T1 by default)
    eval_split: str = "test"  # where reported scores come from ("valid" while tuning)
    _pretrained: dict[str, dict] = field(default_factory=dict, repr=False)

    def fit(self, task: Task, parameters, loss_fn, score_fn, state: nn.Module,
            hooks: TrainHooks | None = None, description: str = "",
            train: TrainConfig | None = None, validate=None) -> FitLog:
        return fit(task, parameters, loss_fn, score_fn, state, train or self.train, self.device,
                   hooks=hooks, progress=self.progress, description=description, validate=validate)

    def evaluate(self, task: Task, score_fn, split: str | None = None) -> dict[str, float]:
        """Metrics of `score_fn` on the run's evaluation split (for extra rows such as Conure-).

        While tuning that split is "valid", so no reported number ever reads the test split.
        """
        split = split or self.eval_split
        return evaluate(task, task.split(split), score_fn, self.device, self.train.eval_batch_size)

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

    def pretrained(self, task: Task | None = None) -> tuple[NextItNet, nn.Module]:
        """A NextItNet trained on `task` (normally T1), trained once per run and shared.

        The papers start SinMoAll, FineSmax, FineAll, PeterRec and MTL from the same T1
        model; sharing it makes their T1 column identical and saves the largest training
        cost. It is trained under a fixed seed and cached on disk for resumed runs.
        """
        task = task or self.first_task
        if task.name not in self._pretrained:
            path = self.cache_dir / f"pretrained-{_file_key(task.name)}.pt" if self.cache_dir else None
            if path is not None and path.exists():
                self._pretrained[task.name] = torch.load(path, map_location=self.device, weights_only=False)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    encoder = NextItNet(self.n_items, self.backbone).to(self.device)
                    head = make_head(task, encoder).to(self.device)
                    log = self.fit_model(task, encoder, head, description=f"pretrain {task.name}")
                entry = {"model": nn.ModuleList([encoder, head]).state_dict(), "log": dataclasses.asdict(log)}
                if path is not None:
                    write_torch(path, entry)
                self._pretrained[task.name] = entry
        encoder = NextItNet(self.n_items, self.backbone).to(self.device)
        head = make_head(task, encoder).to(self.device)
        nn.ModuleList([encoder, head]).load_state_dict(copy.deepcopy(self._pretrained[task.name]["model"]))
        return encoder, head


def _file_key(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def module_key(task: Task) -> str:
    """A task name usable as a ModuleDict key (no dots)."""
    return task.name.replace(".", "_")


class ContinualMethod(nn.Module):
    """A method learns tasks one step at a time and scores any task it has learnt.

    Subclasses set `Options` (a dataclass of the method's hyperparameters, with the
    papers' defaults) and implement `learn` and `scores`.
    """

    Options: ClassVar[type] = NoOptions
    paper: ClassVar[str] = ""

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
    def search_space(cls, trial) -> dict[str, Any]:
        """What `bench tune` searches for this method: suggest values on the Optuna `trial`.

        Keys without a dot are fields of `Options`; dotted keys are run settings as for
        `--set` ("train.lr", ...; `train.*` then apply to this method only). Extend the
        shared default: `return {**super().search_space(trial), "alpha": trial.suggest_float(...)}`.
        """
        from bench.tuning import shared_search_space

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

    def scores(self, task: Task, inputs: torch.Tensor) -> torch.Tensor:
        return evaluation_scores(task, self.encoder(inputs), self.heads[module_key(task)])
