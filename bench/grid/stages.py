"""The grid's two stages: the distinct T1 models first, then the runs that start from them.

Which T1 models a run needs, and under which T1-cache key, is decided by the method's own
code (bench/engine/context.py `first_model_entry`: the shared T1 model, Conure's block,
TERACON's masked T1...). So the plan asks that code: every run's method is built and starts
its first step in a `KeyProbe` context that records each key asked for and stops before
any training (a T1 model is replaced by a fresh, untrained one). Runs asking for the same
key share one T1 job; a run waits for the T1 jobs of all its keys. The T1 job itself
(`train_t1`) replays the same first step with the real context up to the key it owns, so
it trains exactly what the runs will load.

The keys are computed on the planning machine's CPU, so they only *group* runs: the T1 job
and the runs compute the real key (device, CUDA RNG...) where they run, identically.

    results/grids/<name>/plan.json          the spec, the runs and the T1 jobs
    results/grids/<name>/t1/<index>.json    the T1 job's outcome: real key, trained or loaded
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.grid.spec import GridRun, GridSpec, expand
from bench.io import read_json, write_json


@dataclass
class T1Job:
    """One distinct T1 model: trained by replaying `run_id`'s first step up to its `position`-th
    T1 model (0-based); `key` is the planning key (CPU), `runs` the runs that need it."""

    index: int
    key: str
    run_id: str
    position: int
    runs: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"t1-{self.index}"


@dataclass
class Plan:
    spec: dict[str, Any]
    results: str
    runs: list[dict]  # GridRun as dicts, with "t1": [T1 job indices]
    t1_jobs: list[T1Job]

    @staticmethod
    def folder(results: Path, name: str) -> Path:
        return Path(results) / "grids" / name

    @property
    def directory(self) -> Path:
        return self.folder(Path(self.results), self.spec["name"])

    def save(self) -> None:
        write_json(self.directory / "plan.json", dataclasses.asdict(self))

    @classmethod
    def load(cls, directory: Path) -> "Plan":
        path = Path(directory) / "plan.json"
        if not path.exists():
            raise BenchError(f"no grid at {directory} (no plan.json); start it with `bench grid`")
        data = read_json(path)
        return cls(data["spec"], data["results"], data["runs"], [T1Job(**job) for job in data["t1_jobs"]])

    def run(self, run_id: str) -> dict:
        for entry in self.runs:
            if entry["run_id"] == run_id:
                return entry
        raise BenchError(f"grid {self.spec['name']}: no run '{run_id}'")

    def t1_job(self, index: int) -> T1Job:
        if not 0 <= index < len(self.t1_jobs):
            raise BenchError(f"grid {self.spec['name']}: no T1 job {index}")
        return self.t1_jobs[index]


def make_plan(spec: GridSpec, results: Path) -> Plan:
    """Expand the spec and group its runs by the T1 models they need."""
    from bench.engine import t1cache

    runs = expand(spec)
    keys = probe_keys(runs) if t1cache.default_root() is not None else {run.run_id: [] for run in runs}
    jobs: dict[str, T1Job] = {}
    entries = []
    for run in runs:
        needed = []
        for position, key in enumerate(keys[run.run_id]):
            if key not in jobs:
                jobs[key] = T1Job(len(jobs), key, run.run_id, position)
            jobs[key].runs.append(run.run_id)
            needed.append(jobs[key].index)
        entries.append({**dataclasses.asdict(run), "t1": needed})
    plan = Plan(spec.to_dict(), str(results), entries, list(jobs.values()))
    _check_same_grid(plan)
    return plan


def _check_same_grid(plan: Plan) -> None:
    """A grid folder holds one grid: a run of the same id with other settings is refused."""
    path = plan.directory / "plan.json"
    if not path.exists():
        return
    old = {entry["run_id"]: entry["settings"] for entry in read_json(path)["runs"]}
    changed = [entry["run_id"] for entry in plan.runs
               if entry["run_id"] in old and json.dumps(old[entry["run_id"]], sort_keys=True)
               != json.dumps(entry["settings"], sort_keys=True)]
    if changed:
        raise BenchError(f"grid '{plan.spec['name']}' exists with other settings for {', '.join(changed[:3])}"
                         f"{' ...' if len(changed) > 3 else ''}; give the grid another name")


# --- which T1 models a run needs -------------------------------------------------------------

class _Stop(Exception):
    """Raised inside a method's first step once the T1 models of interest are known (or made)."""


def _context_classes():
    """The probe and trainer contexts (defined on first use: they subclass the engine's
    MethodContext, which imports torch)."""
    import copy

    import torch
    from torch import nn

    from bench.engine import t1cache
    from bench.engine.backbone import build_encoder, make_head
    from bench.engine.context import MethodContext

    @dataclass
    class KeyProbe(MethodContext):
        keys: list = field(default_factory=list)

        def first_model_entry(self, name, kind, task, backbone, extra, train, code=()):
            key, _ = t1cache.entry_key(kind, task, self.n_items, backbone, self.train_for(task), self.seed,
                                       self.device, extra, code)
            self.keys.append(key)
            if kind != "t1":
                raise _Stop  # a method's own first model is the last thing its first step asks for
            with torch.random.fork_rng(devices=[]):  # as the real one: the global RNG is left as it was
                encoder = build_encoder(self.n_items, backbone)  # the backbone asked for (any plugin)
                return {"model": copy.deepcopy(nn.ModuleList([encoder, make_head(task, encoder)]).state_dict())}

        def fit(self, *args, **kwargs):
            raise _Stop  # training that is not a T1 model: every key is known

        def evaluate(self, *args, **kwargs):
            raise _Stop

    @dataclass
    class T1Trainer(MethodContext):
        """The real context, stopped once the `stop_after`-th T1 model is trained or loaded."""

        stop_after: int = 0
        outcomes: list = field(default_factory=list)
        _depth: int = 0

        def first_model_entry(self, name, kind, task, backbone, extra, train, code=()):
            self._depth += 1
            try:
                entry = super().first_model_entry(name, kind, task, backbone, extra, train, code)
            finally:
                self._depth -= 1
            if len(self.outcomes) > self.stop_after:
                raise _Stop
            return entry

        def fit(self, *args, **kwargs):
            if self._depth == 0:
                raise _Stop  # the method's own training after its T1 models: not this job's
            return super().fit(*args, **kwargs)

    return KeyProbe, T1Trainer


def probe_keys(runs: list[GridRun]) -> dict[str, list[str]]:
    """Each run's T1-cache keys, in the order its first step asks for them (on the CPU)."""
    import torch

    from bench.config import build_run_config
    from bench.datasets.base import load_dataset
    from bench.experiments.runner import first_vocabulary, resolve_order

    KeyProbe, _ = _context_classes()
    datasets: dict[str, Any] = {}
    keys = {}
    for run in runs:
        config = build_run_config({**run.settings, "device": "cpu"})
        data_key = json.dumps([config.dataset, config.dataset_options, config.data_dir], sort_keys=True, default=str)
        if data_key not in datasets:
            datasets[data_key] = load_dataset(config.dataset, config.dataset_options, config.data_dir)
        dataset = datasets[data_key]
        tasks = dataset.ordered(resolve_order(config.order, len(dataset.tasks)))
        context = KeyProbe(n_items=first_vocabulary(dataset, tasks), backbone=config.backbone, train=config.train,
                           device=torch.device("cpu"), seed=config.seed, first_task=tasks[0],
                           eval_split=config.eval_split)
        _first_step(run.method, context, config, tasks)
        keys[run.run_id] = list(context.keys)
    return keys


def _first_step(name: str, context, config, tasks) -> None:
    """The method's first step as `runner.run_method` starts it, until the context stops it."""
    import torch

    from bench.experiments.runner import method_context
    from bench.registry import METHODS

    try:
        own = method_context(name, context, config)
        torch.manual_seed(config.seed)
        method = METHODS.get(name).build(own, METHODS.options(name, config.method_options))
        positions = next(iter(method.schedule(len(tasks))))
        method.train()
        method.learn([tasks[p] for p in positions], own)
    except _Stop:
        pass


def train_t1(plan: Plan, index: int) -> dict:
    """The T1 job: train (or load) T1 model `index` through the T1 cache, as its runs will ask
    for it; its in-task checkpoints go to the grid folder, so a requeued job continues."""
    from bench.config import build_run_config
    from bench.engine import t1cache
    from bench.engine.training import enable_tf32
    from bench.experiments.runner import prepare, resolve_device

    job = plan.t1_job(index)
    root = t1cache.default_root()
    if root is None:
        raise BenchError("the T1 cache is off (BENCH_T1_CACHE=off): a grid's T1 stage needs it")
    config = build_run_config(plan.run(job.run_id)["settings"])
    dataset, tasks, _ = prepare(config)
    device = resolve_device(config.device)
    if device.type == "cuda":
        enable_tf32()  # as the runner: the TF32 switches are part of the key
    _, T1Trainer = _context_classes()
    context = T1Trainer(n_items=dataset.n_items, backbone=config.backbone, train=config.train, device=device,
                        seed=config.seed, cache_dir=plan.directory / "t1" / str(index), first_task=tasks[0],
                        eval_split=config.eval_split, t1_cache=root, stop_after=job.position)
    context.on_t1 = lambda name, outcome: context.outcomes.append({"name": name, **outcome})
    _first_step(plan.run(job.run_id)["method"], context, config, tasks)
    if len(context.outcomes) <= job.position:
        raise BenchError(f"T1 job {index}: run {job.run_id} asked for {len(context.outcomes)} T1 model(s), "
                         f"expected at least {job.position + 1}")
    outcome = context.outcomes[job.position]
    write_json(plan.directory / "t1" / f"{index}.json", {**outcome, "planned_key": job.key})
    return outcome


def t1_done(plan: Plan, index: int) -> bool:
    """Whether T1 job `index` has finished and its model is still in the T1 cache."""
    from bench.engine import t1cache

    path = plan.directory / "t1" / f"{index}.json"
    root = t1cache.default_root()
    if not path.exists() or root is None:
        return False
    try:
        key = read_json(path)["key"]
    except (ValueError, KeyError):
        return False
    return t1cache.T1Cache(root).has(key)
