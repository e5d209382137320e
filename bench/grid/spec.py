"""A grid spec (TOML file or flags) and its expansion into deterministically named runs.

    name = "ml100k-paper"                 # run ids start with it; the grid's folder is results/grids/<name>
    methods = ["Conure", "HAT", "SinMo"]  # or ["all"]
    seeds = [0, 1, 2]
    orders = [[1, 2, 3, 4, 5, 6]]         # optional (default: the dataset's order)
    dataset = "movielens"                 # or a list: one set of runs per dataset
    data_dir = "data/ml-100k"
    preset = "paper"
    set = ["train.epochs=1"]              # as `bench run --set`, applied last
    [settings]                            # any run setting, as in a --config file
    [local]  per_device = 2, devices = ["0", "1"], threads = 16
    [slurm]  partition = "gpu", gpus_per_task = 1, cpus_per_task = 8, mem_gb = 32, time_min = 240, account = "..."

Every run holds one method, one seed, one order and one dataset, so a grid resumes and
publishes run by run; its id is `<name>[-<dataset>]-<method>[-o<order>]-s<seed>` (the parts
in brackets only when the grid has several datasets or orders), the names
the retired benchmarks/paper_grid.sh gave.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import apply_override, from_dict, load_config_file
from bench.errors import BenchError
from bench.results.names import safe_name


@dataclass
class LocalSpec:
    """`--launcher local`: `per_device` runs at a time on each device; `devices` are the
    CUDA_VISIBLE_DEVICES values runs get round-robin (default: every visible GPU, else the CPU);
    `threads` are divided among the runs that share the machine (default: every core)."""

    per_device: int = field(default=1, metadata={"min": 1})
    devices: list[str] | None = None
    threads: int | None = field(default=None, metadata={"min": 1})


@dataclass
class SlurmSpec:
    """`--launcher slurm` (through submitit): what each job asks for. A job array per stage."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = field(default=1, metadata={"min": 0})
    cpus_per_task: int = field(default=4, metadata={"min": 1})
    mem_gb: float | None = field(default=16.0, metadata={"gt": 0})
    time_min: int = field(default=240, metadata={"min": 1})
    max_parallel: int = field(default=256, metadata={"min": 1})  # array tasks running at once
    max_requeues: int = field(default=3, metadata={"min": 0})  # time-outs and preemptions per job
    additional: dict[str, Any] = field(default_factory=dict)  # any other sbatch option


@dataclass
class GridSpec:
    name: str = "grid"
    methods: list[str] = field(default_factory=lambda: ["all"])
    seeds: list[int] = field(default_factory=lambda: [0])
    orders: list[list[int]] | None = None
    dataset: list[str] = field(default_factory=lambda: ["synthetic"])
    data_dir: str | None = None
    preset: str | None = None
    config: str | None = None  # a JSON/TOML file of run settings (as `bench run --config`)
    settings: dict[str, Any] = field(default_factory=dict)
    set: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    local: LocalSpec = field(default_factory=LocalSpec)
    slurm: SlurmSpec = field(default_factory=SlurmSpec)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class GridRun:
    """One run of the grid: what differs from the other runs, and its full settings."""

    run_id: str
    method: str
    seed: int
    order: list[int] | None
    dataset: str
    settings: dict[str, Any]


def load_spec(path: str | Path | None, flags: dict[str, Any]) -> GridSpec:
    """The spec from a TOML file with the flags given laid over it (a flag wins; `set` adds)."""
    data: dict[str, Any] = {}
    if path is not None:
        if Path(path).suffix != ".toml":
            raise BenchError(f"{path}: a grid spec is a .toml file")
        data = load_config_file(path)
    for key, value in flags.items():
        if value is None:
            continue
        if key == "set":
            data["set"] = [*data.get("set", []), *value]
        elif key in ("local", "slurm"):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    if isinstance(data.get("dataset"), str):
        data["dataset"] = [data["dataset"]]
    spec = from_dict(GridSpec, data, "grid spec")
    safe_name(spec.name, "grid spec: name")  # it names grids/<name>/ and starts every run id
    for key in ("methods", "seeds", "dataset"):
        values = getattr(spec, key)
        if not values or len(set(map(str, values))) != len(values):
            raise BenchError(f"grid spec: {key} must be a non-empty list of distinct values, got {values}")
    if spec.orders is not None and (not spec.orders or any(spec.orders.count(o) > 1 for o in spec.orders)):
        raise BenchError(f"grid spec: orders must be a non-empty list of distinct orders, got {spec.orders}")
    return spec


def expand(spec: GridSpec) -> list[GridRun]:
    """Every (dataset, method, order, seed) as a run, checked as `bench run` checks its settings."""
    from bench.config import build_run_config
    from bench.registry import resolve_methods

    # the spec's order (put the longest first: they never start last); 'all' in the papers' order
    methods = list(dict.fromkeys(method for name in spec.methods for method in resolve_methods([name])))
    orders: list[list[int] | None] = list(spec.orders) if spec.orders else [None]
    runs = []
    for dataset in spec.dataset:
        for method in methods:
            for order in orders:
                for seed in spec.seeds:
                    settings = run_settings(spec, method, seed, order, dataset)
                    build_run_config(settings)  # a bad setting fails before anything starts
                    runs.append(GridRun(run_id(spec, dataset, method, order, seed), method, seed, order, dataset,
                                        settings))
    return runs


def run_settings(spec: GridSpec, method: str, seed: int, order: list[int] | None, dataset: str) -> dict:
    """The settings of one run, in `bench run`'s order of precedence: the config file, the
    [settings] table, the grid's axes and shortcuts, then `set`."""
    data = load_config_file(spec.config) if spec.config else {}
    data.update(copy.deepcopy(spec.settings))
    shortcuts = {"methods": [method], "seed": seed, "order": order, "dataset": dataset,
                 "data_dir": spec.data_dir, "preset": spec.preset}
    data.update({key: value for key, value in shortcuts.items() if value is not None})
    for assignment in spec.set:
        apply_override(data, assignment)
    return data


def run_id(spec: GridSpec, dataset: str, method: str, order: list[int] | None, seed: int) -> str:
    parts = [spec.name]
    if len(spec.dataset) > 1:
        parts.append(dataset)
    parts.append(method)
    if spec.orders and len(spec.orders) > 1:
        parts.append("o" + ("" if max(order) < 10 else "_").join(map(str, order)))
    parts.append(f"s{seed}")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts))  # a run id is one safe path component
