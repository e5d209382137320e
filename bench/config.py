"""Plain dataclasses for run configuration, loadable from JSON/TOML and `--set key=value`."""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import BenchError

# Where runs, sweeps and tuning studies are stored unless --results says otherwise.
DEFAULT_ROOT = Path("results")


@dataclass
class BackboneConfig:
    """NextItNet shape; dilations (1, 4) per block pair as in the Conure/TERACON code."""

    embedding_dim: int = 64
    dilations: list[int] = field(default_factory=lambda: [1, 4])
    kernel_size: int = 3
    dropout: float = 0.0


@dataclass
class FirstTaskSchedule:
    """Train settings that differ on the first task (T1); None keeps the value of `train`.

    The released scripts train T1 differently from later tasks (TERACON's ttl_train.sh: T1
    with batch 32, later tasks with 1024), so a run can say so: `--set train.first_task.batch_size=32`.
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    patience: int | None = None


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without validation gain before stopping
    eval_batch_size: int = 512
    first_task: FirstTaskSchedule = field(default_factory=FirstTaskSchedule)
    # Next-item loss: "full" is the exact softmax over every item, computed in chunks of
    # loss_chunk_rows positions (None: 256 MiB of logits per chunk); "sampled" is Conure's
    # sampled softmax with logQ correction (negatives None: 20% of the items, as its code).
    loss: Literal["full", "sampled"] = "full"
    negatives: int | None = None
    sampler: Literal["log_uniform", "popularity"] = "log_uniform"
    loss_chunk_rows: int | None = None
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast applies on CUDA only
    # Smoke runs at full size (Lightning's names): cap the batches of each epoch and the
    # users (instances) of each evaluation; None = all.
    limit_train_batches: int | None = None
    limit_eval_users: int | None = None

    def for_task(self, first: bool) -> "TrainConfig":
        """The settings one task trains with: `first_task` overrides apply to the first task only."""
        if not first:
            return self
        changes = {k: v for k, v in dataclasses.asdict(self.first_task).items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["all"])
    order: list[int] | None = None  # 1-based task numbers; None = the dataset's order
    seed: int = 0
    device: str = "auto"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-method TrainConfig overrides (e.g. a tuned lr); the shared T1 model keeps `train`.
    method_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Split that fills R: "test" for reported results, "valid" for tuning (test stays unseen).
    eval_split: str = "test"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown keys with a clear message."""
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a table of settings, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BenchError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    values = {}
    for name, value in data.items():
        nested = _dataclass_type(known[name])
        values[name] = from_dict(nested, value, f"{where}.{name}") if nested else value
    try:
        return cls(**values)
    except TypeError as error:
        raise BenchError(f"{where}: {error}") from None


def _dataclass_type(f: dataclasses.Field) -> type | None:
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
    return type(default) if dataclasses.is_dataclass(default) else None


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise BenchError(f"cannot read config {path}: {error.strerror}") from None
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise BenchError(f"{path}: malformed config: {error}") from None


def parse_scalar(raw: str) -> Any:
    """A command-line value: JSON when it parses (numbers, lists, true/false), else the text."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def set_path(data: dict[str, Any], key: str, value: Any, where: str = "--set") -> None:
    """Set `a.b.c` in a nested dict, creating the groups on the way."""
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise BenchError(f"{where} {key}: '{part}' is not a group of settings")
    node[leaf] = value


def apply_override(data: dict[str, Any], assignment: str, where: str = "--set") -> None:
    """Apply `a.b.c=value` to a nested dict (the one path every `--set`/`--fix` takes)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise BenchError(f"{where} expects key=value, got '{assignment}'")
    set_path(data, key, parse_scalar(raw), where)


def build_run_config(data: dict[str, Any]) -> RunConfig:
    """The one place settings are resolved: the CLI, tuning and library users get the same run."""
    data = copy.deepcopy(data)
    apply_dataset_method_defaults(data)
    config = from_dict(RunConfig, data)
    for name, value in (("seed", config.seed),):
        if not isinstance(value, int):
            raise BenchError(f"config.{name}: expected an integer, got {value!r}")
    if config.eval_split not in ("test", "valid"):
        raise BenchError(f"config.eval_split: expected 'test' or 'valid', got {config.eval_split!r}")
    config.method_options = _by_method_name(config.method_options, "method_options")
    config.method_train = _by_method_name(config.method_train, "method_train")
    for method, overrides in config.method_train.items():
        from_dict(TrainConfig, overrides, f"method_train.{method}")
    return config


def _by_method_name(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys as the registry spells them ("teracon" -> "TERACON"); an unknown name is an error,
    not a setting that is silently never read."""
    from bench.registry import METHODS

    if not isinstance(settings, dict):
        raise BenchError(f"config.{where}: expected a table of methods, got {type(settings).__name__}")
    named = {}
    for name, value in settings.items():
        try:
            named[METHODS.canonical(name)] = value
        except BenchError as error:
            raise BenchError(f"config.{where}: {error}") from None
    return named


def apply_dataset_method_defaults(data: dict[str, Any]) -> None:
    """Fill `data["method_options"]` with the dataset's `method_defaults` where the user set nothing."""
    from bench.registry import DATASETS

    adapter = DATASETS.get(data.get("dataset", "synthetic"))
    options = data.setdefault("method_options", {})
    if not isinstance(options, dict):
        return  # reported by build_run_config
    for method, defaults in adapter.method_defaults.items():
        key = next((name for name in options if name.lower() == method.lower()), method)
        chosen = options.setdefault(key, {})
        for option, value in defaults.items():
            chosen.setdefault(option, value)
