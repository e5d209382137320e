"""Plain dataclasses for run configuration, loadable from JSON/TOML and `--set key=value`."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import BenchError

# Where runs, sweeps and tuning studies are stored unless --results says otherwise.
DEFAULT_ROOT = Path("results")
# Every seed: numpy's legacy RandomState (Optuna's samplers) takes 0..2**32-1, torch less than 2**64.
SEED_BOUNDS = {"min": 0, "max": 2**32 - 1}
# Above about 3e37 Adam's first step (lr / (1 - beta1)) overflows float32: a traceback, not a run.
LR_BOUNDS = {"gt": 0, "max": 1e30}


@dataclass
class BackboneConfig:
    """The user encoder. `name` picks the backbone (bench/backbones/, `bench list`); `options`
    are that backbone's own (its `Options` dataclass, e.g. SASRec's heads and blocks).
    `embedding_dim` is every backbone's width; `dilations`, `kernel_size`, `dropout`, `block`
    and `conv_bias` shape NextItNet (a backbone reads the fields it names in `config_fields`).
    These defaults are the small `quick` preset (d=64, 2 blocks); the released Conure/TERACON
    code uses d=256 and dilations [1,4]x4, which `--preset paper` sets (bench/presets.py)."""

    embedding_dim: int = field(default=64, metadata={"min": 1})
    dilations: list[int] = field(default_factory=lambda: [1, 4], metadata={"min": 1, "min_len": 1})
    kernel_size: int = field(default=3, metadata={"min": 1})
    dropout: float = field(default=0.0, metadata={"min": 0, "max": 1})
    # Residual block order: "post_ln" = conv -> LN -> ReLU (twice) + x, NextItNet as in the
    # TERACON/Tenrec code; "pre_ln" = LN -> ReLU -> conv (twice) + x, the block Conure's code
    # executes (ops.py nextitnet_residual_block_withmask_pre_beforeln).
    block: Literal["post_ln", "pre_ln"] = "post_ln"
    conv_bias: bool = True  # False: conv biases fixed at 0 (Conure's code never trains them)
    name: str = "nextitnet"  # the backbone (docs/backbones.md): nextitnet, sasrec, or a plugin's
    # the backbone's own options, checked against its Options (--set backbone.options.n_heads=2)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class FirstTaskSchedule:
    """Train settings that differ on the first task (T1); None keeps the value of `train`.

    The released scripts train T1 differently from later tasks (TERACON's ttl_train.sh: T1
    with batch 32, later tasks with 1024), so a run can say so: `--set train.first_task.batch_size=32`.
    """

    epochs: int | None = field(default=None, metadata={"min": 1})
    batch_size: int | None = field(default=None, metadata={"min": 1})
    lr: float | None = field(default=None, metadata=LR_BOUNDS)
    patience: int | None = field(default=None, metadata={"min": 1})


@dataclass
class TrainConfig:
    epochs: int = field(default=10, metadata={"min": 1})
    batch_size: int = field(default=128, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata=LR_BOUNDS)
    weight_decay: float = field(default=0.0, metadata={"min": 0})
    patience: int = field(default=3, metadata={"min": 1})  # epochs without validation gain (counted after min_epochs)
    # Epochs always trained before early stopping may end a task: on a small validation split
    # the metric can stay flat for `patience` epochs while the loss still falls (docs/metrics.md).
    min_epochs: int = field(default=2, metadata={"min": 1})
    eval_batch_size: int = field(default=512, metadata={"min": 1})
    first_task: FirstTaskSchedule = field(default_factory=FirstTaskSchedule)
    # Next-item loss: "full" is the exact softmax over every item, computed in chunks of
    # loss_chunk_rows positions (None: 256 MiB of logits per chunk); "sampled" is Conure's
    # sampled softmax with logQ correction (negatives None: 20% of the items, as its code).
    loss: Literal["full", "sampled"] = "full"
    negatives: int | None = field(default=None, metadata={"min": 1})
    sampler: Literal["log_uniform", "popularity"] = "log_uniform"
    loss_chunk_rows: int | None = field(default=None, metadata={"min": 1})
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast applies on CUDA only
    # Smoke runs at full size (Lightning's names): cap the batches of each epoch and the
    # users (instances) of each evaluation; None = all.
    limit_train_batches: int | None = field(default=None, metadata={"min": 1})
    limit_eval_users: int | None = field(default=None, metadata={"min": 1})
    # In-task checkpoints (bench/engine/checkpoints.py): every this many minutes or optimiser
    # steps, whichever comes first; None turns that trigger off. They never change a result.
    checkpoint_every_minutes: float | None = field(default=10.0, metadata={"gt": 0})
    checkpoint_every_steps: int | None = field(default=None, metadata={"min": 1})
    # A step whose loss is not finite: "error" stops the task naming epoch and step; "skip"
    # leaves it out (no update; counted in epochs.json) at the cost of a host sync per step.
    nonfinite: Literal["error", "skip"] = "error"
    # The training protocol every method shares (docs/protocol.md):
    # "harness" selects the epoch on the task's primary metric (MRR@5 / accuracy, ties broken by
    # validation loss) and trains on every row; "released" does what the released TERACON
    # scripts do: select on validation hit@1 with a strict `>` (the first epoch always counts),
    # scored on the full batches of a fresh shuffle of the validation split, drop the partial
    # last training batch (utils.py getBatch: `while end_inx < len(data)`) and anneal with the
    # batch index over n/batch (train_teracon.py L178-180).
    protocol: Literal["harness", "released"] = "harness"

    def for_task(self, first: bool) -> "TrainConfig":
        """The settings one task trains with: `first_task` overrides apply to the first task only."""
        if not first:
            return self
        changes = {k: v for k, v in dataclasses.asdict(self.first_task).items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self


@dataclass
class EvalConfig:
    """How reported scores rank item-task candidates (docs/protocols.md, bench/engine/protocols.py).

    "full" ranks the target among every candidate (the harness's, Conure's and TERACON's
    protocol); "sampled" ranks it among `negatives` drawn candidates, uniformly or by training
    popularity (DITTO's: 1 positive + 99 negatives), drawn per instance from a generator seeded by
    (`seed` or the run's seed, task, instance), so they never depend on batch size or ranks.
    `cutoffs` are the k of MRR/HR/NDCG@k; 5 is required (MRR@5 is every item task's primary
    metric). Model selection on the validation split stays full-ranking MRR@5 under both, so the
    two protocols score the same trained models. Classification tasks report accuracy under both.
    """

    protocol: Literal["full", "sampled"] = "full"
    negatives: int = field(default=99, metadata={"min": 1})
    sampling: Literal["uniform", "popularity"] = "uniform"
    cutoffs: list[int] = field(default_factory=lambda: [5], metadata={"min": 1, "min_len": 1})
    seed: int | None = field(default=None, metadata=SEED_BOUNDS)  # None: the run's seed

    def validate(self) -> None:
        if 5 not in self.cutoffs:
            raise BenchError(f"config.eval.cutoffs: expected a list that includes 5 (MRR@5 is the "
                             f"primary metric), got {self.cutoffs}")
        if len(set(self.cutoffs)) != len(self.cutoffs):
            raise BenchError(f"config.eval.cutoffs: expected distinct cut-offs, got {self.cutoffs}")


@dataclass
class RunConfig:
    dataset: str = "synthetic"
    # Named settings the run starts from (bench/presets.py); None = the dataset's default
    # (`quick` for synthetic, `paper` otherwise). build_run_config records the one used.
    preset: Literal["paper", "quick"] | None = None
    data_dir: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["all"], metadata={"min_len": 1})
    order: list[int] | None = field(default=None, metadata={"min": 1, "min_len": 1})  # 1-based; None = the dataset's order
    seed: int = field(default=0, metadata=SEED_BOUNDS)
    device: str = "auto"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per-method TrainConfig overrides (e.g. a tuned lr); the shared T1 model keeps `train`.
    method_train: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Methods whose settings come from a tuning study (`run --use-tuned`): method -> finished
    # trials of that study. Empty = default settings. The leaderboard keeps the two apart.
    tuned_trials: dict[str, int] = field(default_factory=dict)
    # Split that fills R: "test" for reported results, "valid" for tuning (test stays unseen).
    eval_split: Literal["test", "valid"] = "test"
    # How reported item-task scores rank candidates: full ranking (default) or sampled negatives.
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from a dict, checking every value against its field.

    Each value must match the field's annotation (`int`, `float` (ints accepted), `bool`,
    `str`, `Literal[...]`, `X | None`, `list[X]`, `dict[str, X]`, nested dataclasses) and
    the bounds in the field's metadata: `min`/`max` (inclusive), `gt` (exclusive lower) and
    `min_len` for lists; list bounds apply to every element. Other annotations are passed
    through unchecked. A dataclass with a
    `validate()` method (checks across fields) has it called last. Fields added later are
    checked the same way, from their annotations alone.
    """
    if not isinstance(data, dict):
        raise BenchError(f"{where}: expected a table of settings, got {_show(data)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise BenchError(
            f"{where}: unknown setting(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: check_value(value, hints[name], f"{where}.{name}", known[name].metadata)
              for name, value in data.items()}
    try:
        result = cls(**values)
    except TypeError as error:
        raise BenchError(f"{where}: {error}") from None
    if callable(getattr(result, "validate", None)):
        result.validate()
    return result


def check_value(value: Any, annotation: Any, where: str, bounds: Any = None) -> Any:
    """`value` checked (and ints widened to float) against a type annotation and bounds."""
    bounds = bounds or {}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        return from_dict(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = sorted((arg for arg in args if arg is not type(None)), key=lambda arg: arg is not type(value))
        if len(options) == 1:
            return check_value(value, options[0], where, bounds)
        for option in options:
            try:
                return check_value(value, option, where, bounds)
            except BenchError:
                if option is type(value):
                    raise  # the right type, out of range: say so
                continue
        raise BenchError(f"{where}: expected {_describe(annotation)}, got {_show(value)}")
    if origin is Literal:
        if not any(value == arg and type(value) is type(arg) for arg in args):
            raise BenchError(f"{where}: expected one of {', '.join(map(repr, args))}, got {_show(value)}")
        return value
    if origin is list or (origin is tuple and args[-1:] == (Ellipsis,)):
        if not isinstance(value, (list, tuple)):
            raise BenchError(f"{where}: expected a list of {_describe(args[0])}, got {_show(value)}")
        if len(value) < bounds.get("min_len", 0):
            raise BenchError(f"{where}: expected at least {bounds['min_len']} entr{'y' if bounds['min_len'] == 1 else 'ies'}")
        return [check_value(item, args[0], f"{where}[{index}]", bounds) for index, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BenchError(f"{where}: expected a table, got {_show(value)}")
        return {key: check_value(item, args[1], f"{where}.{key}", bounds) for key, item in value.items()}
    if annotation is bool:
        if not isinstance(value, bool):
            raise BenchError(f"{where}: expected true or false, got {_show(value)}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BenchError(f"{where}: expected an integer, got {_show(value)}")
        return _in_bounds(value, bounds, where)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BenchError(f"{where}: expected a number, got {_show(value)}")
        return _in_bounds(float(value), bounds, where)
    if annotation is str:
        if not isinstance(value, str):
            raise BenchError(f"{where}: expected text, got {_show(value)} (quote it: '\"{value}\"')")
        return value
    return value  # an annotation without a rule here (Path, a fixed tuple ...) is not checked


def _in_bounds(value: int | float, bounds: Any, where: str) -> int | float:
    for key, fails, text in (("min", lambda v, b: v < b, ">="), ("max", lambda v, b: v > b, "<="),
                             ("gt", lambda v, b: v <= b, ">")):
        if key in bounds and fails(value, bounds[key]):
            raise BenchError(f"{where}: expected a value {text} {bounds[key]}, got {value}")
    return value


def _describe(annotation: Any) -> str:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    names = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    described = [names.get(arg, getattr(arg, "__name__", str(arg))) for arg in args]
    return " or ".join(described) + (" or null" if type(None) in typing.get_args(annotation) else "")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise BenchError(f"cannot read config {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise BenchError(f"{path}: malformed config: not UTF-8 text") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise BenchError(f"{path}: malformed config: {error}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: malformed config: expected a table of settings, got {_show(data)}")
    return data


def parse_scalar(raw: str) -> Any:
    """A command-line value, read as YAML/TOML would: `true`, `null`, `3`, `.001`, `1e-4`,
    `[1, 4]`, `[a, b]`; quoted or anything else stays text. The one parser for `--set`/`--fix`."""
    text = raw.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if text.startswith("[") and text.endswith("]"):
                inner = text[1:-1].strip()
                return [parse_scalar(part) for part in inner.split(",")] if inner else []
            return raw
    if any(char.isdigit() for char in text):  # not "nan"/"inf": those stay text
        for number in (int, float):
            try:
                return number(text)
            except ValueError:
                pass
    return text


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
    """The one place settings are resolved: the CLI, tuning and library users get the same run.

    Every value is checked here, before any data is read or directory made: the run's own
    fields, the dataset's options, and the options and train overrides of every method
    named, whether it is selected or not (a typo for an unselected method is still a typo).
    """
    from bench.registry import BACKBONES, DATASETS, METHODS

    data = apply_preset_and_dataset_defaults(copy.deepcopy(data))
    config = from_dict(RunConfig, data)
    adapter = DATASETS.get(config.dataset)
    from_dict(adapter.Options, config.dataset_options, "config.dataset_options")
    config.backbone.name = BACKBONES.canonical(config.backbone.name)
    from_dict(BACKBONES.get(config.backbone.name).Options, config.backbone.options, "config.backbone.options")
    config.method_options = _by_method_name(config.method_options, "method_options")
    config.method_train = _by_method_name(config.method_train, "method_train")
    for method, options in config.method_options.items():
        from_dict(METHODS.get(method).Options, options, f"config.method_options.{method}")
    _record_variant_options(config)
    for method, overrides in config.method_train.items():
        from_dict(TrainConfig, overrides, f"config.method_train.{method}")
    return config


def changed_settings(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (old, new) for every setting whose value differs."""
    changes = {}
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes.update(changed_settings(a, b, f"{prefix}{key}."))
        elif a != b:
            changes[f"{prefix}{key}"] = (a, b)
    return changes


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


def _record_variant_options(config: RunConfig) -> None:
    """Write each variant row's option overrides (`TERACON+floor` -> min_ratio 0.25) under its
    row name in method_options, so config.json says what the row ran with."""
    from bench.registry import METHODS

    for name in config.methods:
        if name.lower() == "all":
            continue
        row = METHODS.canonical(name)
        overrides = METHODS.options(row, {})
        if overrides:
            config.method_options[row] = {**overrides, **config.method_options.get(row, {})}


def apply_preset_and_dataset_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as preset < the dataset's `method_defaults` < the user's (bench/presets.py)."""
    from bench.presets import apply_preset
    from bench.registry import DATASETS

    if not isinstance(data.get("dataset", "synthetic"), str):
        raise BenchError(f"config.dataset: expected a name, got {data['dataset']!r}")
    adapter = DATASETS.get(data.get("dataset", "synthetic"))
    dataset_defaults = {"method_options": _canonical_keys(copy.deepcopy(adapter.method_defaults))}
    for group in ("method_options", "method_train"):
        if isinstance(data.get(group), dict):
            data[group] = _canonical_keys(data[group])
    return apply_preset(data, dataset_defaults)


def _canonical_keys(settings: dict[str, Any]) -> dict[str, Any]:
    """Method names as registered, so layers written as "teracon" and "TERACON" merge; unknown
    names stay as written and are reported by build_run_config."""
    from bench.registry import METHODS

    return {(METHODS.canonical(name) if name in METHODS else name): value for name, value in settings.items()}


def method_default_layers(method: str, dataset: str = "synthetic",
                          preset: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Where a method's option defaults come from, lowest precedence first: its `Options`
    dataclass (the paper's released settings), the preset (bench/presets.py), then the
    dataset's `method_defaults`; the user's --set is applied on top."""
    from bench.presets import default_preset, preset_settings
    from bench.registry import DATASETS, METHODS

    options = METHODS.get(method).Options
    paper = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
             for f in dataclasses.fields(options)}
    adapter = DATASETS.get(dataset)
    by_dataset = next((values for name, values in adapter.method_defaults.items()
                       if name.lower() == method.lower()), {})
    preset = preset or default_preset(adapter.registered_name)
    by_preset = next((values for name, values in preset_settings(preset, adapter.registered_name)
                      .get("method_options", {}).items() if name.lower() == method.lower()), {})
    return [("paper", paper), (f"preset {preset}", by_preset), (f"dataset {adapter.registered_name}", by_dataset)]


def method_option_sources(method: str, dataset: str = "synthetic",
                          preset: str | None = None) -> list[tuple[str, Any, str]]:
    """(option, default, where the default comes from) for `bench list METHOD`."""
    resolved: dict[str, tuple[Any, str]] = {}
    for source, values in method_default_layers(method, dataset, preset):
        resolved.update({option: (value, source) for option, value in values.items()})
    return [(option, value, source) for option, (value, source) in resolved.items()]
