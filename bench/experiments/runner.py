"""The continual protocol: train each method step by step, evaluate every seen task after each.

After step i (which ends at task position i) every task learnt so far is scored on its test
split, filling row i of R. Each finished step is checkpointed, so `--resume` retrains
nothing that already finished; inside a step, in-task checkpoints (bench/engine/checkpoints.py)
let it continue in the middle of an epoch. A diverged step (a non-finite loss or score)
is an error naming the method, task, epoch and step; it is never stored as a result.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict
from functools import partial
from typing import Callable

import torch
from tqdm.auto import tqdm

from bench.config import RunConfig, TrainConfig, build_run_config, changed_settings, from_dict
from bench.presets import merge_settings
from bench.errors import BenchError, DivergenceError
from bench.engine import checkpoints
from bench.engine.checkpoints import Journal
from bench.experiments.memory import check_memory
from bench.io import write_json
from bench.registry import METHODS, resolve_methods
from bench.results.store import MethodRecord, RunStore
from bench.engine.tasks import Dataset, Task
from bench.engine.backbone import check_sites
from bench.engine.context import MethodContext
from bench.engine.protocols import Protocol
from bench.engine import distributed, growth, softmax, t1cache
from bench.engine.training import enable_tf32, evaluate
from bench.datasets.base import load_dataset

def resolve_order(order: list[int] | None, n_tasks: int, complete: bool = False) -> list[int]:
    """The task order. With `complete` (what `--order` and `--orders` give) every task of the
    dataset exactly once, since a shorter order silently runs a shorter benchmark; a config
    file's `order` may select a subset of the tasks."""
    if order is None:
        return list(range(1, n_tasks + 1))
    if sorted(order) != sorted(set(order)) or not all(1 <= t <= n_tasks for t in order):
        raise BenchError(f"order {order}: expected distinct task numbers between 1 and {n_tasks}")
    if complete and len(order) != n_tasks:
        missing = sorted(set(range(1, n_tasks + 1)) - set(order))
        raise BenchError(f"order {','.join(map(str, order))}: expected all {n_tasks} tasks "
                         f"(missing {','.join(map(str, missing))})")
    return list(order)


def resolve_device(name: str) -> torch.device:
    """The device named, checked before any work: CUDA (and the index asked for) or MPS present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise BenchError(f"unknown device '{name}': {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device '{name}' requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise BenchError(f"device '{name}': this machine has {count} CUDA device(s), "
                             f"cuda:0{f' to cuda:{count - 1}' if count > 1 else ''}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"device '{name}' requested but MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise BenchError(f"device '{name}': expected auto, cpu, cuda, cuda:N or mps")
    return device


def prepare(config: RunConfig, memory_check: bool = False) -> tuple[Dataset, list[Task], list[str]]:
    """The data, ordered tasks and methods of a run; every name, file and the device checked
    (and, with `memory_check`, the memory estimate, before the data is read)."""
    device = resolve_device(config.device)
    if memory_check:
        check_memory(config, device)
    methods = resolve_methods(config.methods)
    check_backbone_sites(methods, config)
    dataset = load_dataset(config.dataset, config.dataset_options, config.data_dir)
    order = resolve_order(config.order, len(dataset.tasks))
    tasks = dataset.ordered(order)
    if growth.is_time_aware(tasks):
        check_vocabularies(dataset, tasks)
        check_growth(methods, config, tasks)
    return dataset, tasks, methods


def check_vocabularies(dataset: Dataset, tasks: list[Task]) -> None:
    """A time-aware dataset's promise, checked before any training: no split of a task holds an
    item id beyond the task's vocabulary, and no later split one beyond the dataset's."""
    for task in tasks:
        known = growth.task_vocabulary(task, dataset.n_items)
        for name in ("train", "valid", "test", "later"):
            split = task.later if name == "later" else task.split(name)
            limit = dataset.n_items if name == "later" else known
            if split is not None and len(split) and growth.split_vocabulary(split, task) > limit:
                raise BenchError(f"dataset {dataset.name}: task {task.name}'s {name} split holds item id "
                                 f"{growth.split_vocabulary(split, task)}, beyond the {limit} items "
                                 f"{'of the dataset' if name == 'later' else 'the task knows (n_items_known)'}")


# Small vocabularies for the growth check: primes, so that no other dimension matches by chance.
CHECK_ITEMS = (1009, 1013)


def check_growth(methods: list[str], config: RunConfig, tasks: list[Task]) -> None:
    """Before any training of a time-aware run: each method, its structure re-created for every
    task (`ContinualMethod.restore`, untrained, on the CPU at a small vocabulary), grows its
    item vocabulary once; a method with per-item state it cannot grow fails here with one
    error line naming the method and the tensor, not after hours of training."""
    small, grown = CHECK_ITEMS
    context = MethodContext(n_items=small, backbone=config.backbone, train=config.train,
                            device=torch.device("cpu"), seed=config.seed, first_task=tasks[0])
    views = [growth.at_vocabulary(task, small) for task in tasks]
    with torch.random.fork_rng(devices=[]):
        for name in methods:
            try:
                method = METHODS.get(name).build(context, METHODS.options(name, config.method_options))
                method.restore(views, context)
                method.grow_items(grown, dataclasses.replace(context, n_items=grown))
            except growth.GrowthError as error:
                raise BenchError(f"method {name} {error.detail}") from None


def check_backbone_sites(methods: list[str], config: RunConfig) -> None:
    """Every method's required sites exist on the run's backbone (one error line naming the
    method, the backbone and the site), before any data is read or model trained."""
    for name in methods:
        cls = METHODS.get(name)
        options = from_dict(cls.Options, METHODS.options(name, config.method_options), f"method_options.{name}")
        check_sites(name, cls.required_sites(options), config.backbone)


def preflight(config: RunConfig, memory_check: bool = True) -> tuple[int, list[str]]:
    """Load the data and resolve the names before any directory is made, so bad input fails
    first; only the task count and the method names are kept, so that the data is not held
    twice while the run loads it again (at TTL's size a copy is several GB)."""
    dataset, _, methods = prepare(config, memory_check)
    return len(dataset.tasks), methods


StepCallback = Callable[[str, MethodRecord], None]


def run(config: RunConfig, store: RunStore, progress: bool = True,
        on_step: StepCallback | None = None) -> list[MethodRecord]:
    """Run (or resume) every configured method; returns their records.

    `on_step(method, record)` is called after each finished step (tuning reports and prunes there).
    """
    with store.locked():
        return _run(config, store, progress, on_step)


def _run(config: RunConfig, store: RunStore, progress: bool, on_step: StepCallback | None) -> list[MethodRecord]:
    dataset, tasks, methods = prepare(config)
    device = distributed.device(resolve_device(config.device))
    progress = progress and distributed.is_main()
    if device.type == "cuda":
        enable_tf32()
    context = MethodContext(
        n_items=first_vocabulary(dataset, tasks), backbone=config.backbone, train=config.train, device=device,
        seed=config.seed, cache_dir=store.cache_dir, progress=progress, first_task=tasks[0],
        eval_split=config.eval_split, t1_cache=t1cache.default_root(),
        on_t1=lambda name, outcome: store.update_environment("t1_cache", {name: outcome}),
        protocol=Protocol(config.eval, config.seed),
    )
    store.update_environment("loss", {"next_item": "sampled" if config.train.loss == "sampled"
                                      else softmax.exact_loss_path(device)})
    records = []
    bar = tqdm(methods, desc="methods", disable=not progress, unit="method")
    for name in bar:
        bar.set_postfix(method=name)
        try:
            records.append(run_method(name, tasks, method_context(name, context, config), store, config,
                                      on_step))
        except DivergenceError as error:
            raise error.of_method(name) from None
    if distributed.is_main() and all(record.complete for record in records):
        drop_t1_journals(store)
    return records


def drop_t1_journals(store: RunStore) -> None:
    """The in-task checkpoints of T1 models (cache/<kind>-<key>.fit.pt, bench/engine/context.py)
    once the run is finished: one left by a kill is never read again when the resumed run
    finds that T1 model in the T1 cache instead of training it."""
    if store.cache_dir.is_dir():
        for path in [*store.cache_dir.glob("*.fit.pt"), *store.cache_dir.glob("*.fit.prev.pt")]:
            path.unlink(missing_ok=True)


def resume_config(store: RunStore, given: dict, override: bool = False) -> RunConfig:
    """The stored run's config for `--resume`, with the settings given now laid over it.

    A given setting that differs from the stored one is an error naming it, since finished
    steps ran with the stored value; with `override` the change is applied and recorded in
    the run's changes.json. Call with the store locked.
    """
    stored_dict = store.stored_config()
    stored = build_run_config(stored_dict)
    config = build_run_config(merge_settings(stored_dict, given))
    config.methods = resolve_methods(config.methods)
    changes = changed_settings(stored.to_dict(), config.to_dict())
    if changes and not override:
        listed = "; ".join(f"{key} (stored {old!r}, given {new!r})" for key, (old, new) in changes.items())
        raise BenchError(f"--resume {store.run_id}: settings differ from the stored run: {listed}; "
                         "drop them to resume as stored, or add --override to change the run")
    if changes:
        store.record_changes(config.to_dict(), changes)
    return config


def method_context(name: str, context: MethodContext, config: RunConfig) -> MethodContext:
    """The context with the method's own train overrides; the shared T1 model keeps the
    run-wide settings (`shared_train`), so every method still starts from the same model and a
    method that never asks for it (DITTO) does not have it trained."""
    overrides = METHODS.options(name, config.method_train, variants=False)
    if not overrides:
        return context
    merged = merge_settings(dataclasses.asdict(config.train), overrides)
    return dataclasses.replace(context, train=from_dict(TrainConfig, merged, f"method_train.{name}"),
                               shared_train=context.shared_train or context.train)


def extra_rows(name: str, rows: dict[str, dict]) -> dict[str, dict]:
    """A method's extra rows named after its row: Conure's "Conure-" is "Conure+tasknorms-"
    when the row is the variant Conure+tasknorms."""
    base = METHODS.base_name(name)
    return {name + row[len(base):] if row.startswith(base) else row: scores for row, scores in rows.items()}


def first_vocabulary(dataset: Dataset, tasks: list[Task]) -> int:
    """The item vocabulary a run starts with: the first task's (the time-aware scenario,
    docs/scenarios.md), else the dataset's whole vocabulary."""
    return growth.task_vocabulary(tasks[0], dataset.n_items) if growth.is_time_aware(tasks) else dataset.n_items


def grow(method, context: MethodContext, n_items: int) -> None:
    """Raise the run's vocabulary (and the method's tables) to ids 1..n_items, never lower it."""
    if n_items > context.n_items:
        context.n_items = n_items
        method.grow_items(n_items, context)


def scored_split(task: Task, own_step: bool, config: RunConfig) -> tuple[str, object]:
    """Where a scored task's numbers come from: its own row (and every row while tuning) the
    run's evaluation split; a later row of a task with later data that data (the time-aware
    scenario: past tasks re-evaluated on later data)."""
    if task.later is not None and not own_step and config.eval_split == "test":
        return "later", task.later
    return config.eval_split, task.split(config.eval_split)


def run_method(name: str, tasks: list[Task], context: MethodContext, store: RunStore,
               config: RunConfig, on_step: StepCallback | None = None) -> MethodRecord:
    record = store.load_record(name)
    if record is not None and record.complete:
        return record
    protocol = context.protocol or Protocol(config.eval, config.seed)
    time_aware = growth.is_time_aware(tasks)
    # the vocabulary grows during a time-aware run: this method's own copy of the context,
    # starting from the first task's vocabulary
    if time_aware:
        context = dataclasses.replace(context, n_items=growth.task_vocabulary(tasks[0], context.n_items))
    checkpoint = store.load_checkpoint(name, context.device)
    if checkpoint is not None:
        method, record = resume_method(name, checkpoint, tasks, context, config, store)
    else:
        torch.manual_seed(config.seed)
        method = METHODS.get(name).build(context, METHODS.options(name, config.method_options))
        record = MethodRecord(name, [t.name for t in tasks], {t.name: t.primary_metric for t in tasks},
                              evaluation=protocol.record())
        if time_aware:
            record.scenario = {"name": "time-aware", "later": [t.name for t in tasks if t.later is not None]}
    seen: list[int] = []
    own_step: dict[int, int] = {}  # task position -> the step that learnt it
    for index, positions in enumerate(method.schedule(len(tasks))):
        seen += [p for p in positions if p not in seen]
        for p in positions:
            own_step.setdefault(p, index)
        if index < len(record.steps):
            continue  # finished before the interruption
        started = time.perf_counter()
        journal = Journal(store.fit_checkpoint_path(name), checkpoints.scope(f"{name} step {index}", config.to_dict()),
                          distributed.is_main())
        if time_aware:
            grow(method, context, max(growth.task_vocabulary(tasks[p], context.n_items) for p in positions))
        method.train()
        method.learn([current(tasks[p], context, time_aware) for p in positions],
                     dataclasses.replace(context, journal=journal))
        method.eval()
        seconds = time.perf_counter() - started
        scored = {p: scored_split(tasks[p], own_step[p] == index, config)
                  for p in method.scored_positions(seen, positions)}
        later = [tasks[p].name for p, (split_name, _) in scored.items() if split_name == "later"]
        if later:  # the model grown first to what the later data holds
            grow(method, context, max(growth.split_vocabulary(split, tasks[p]) for p, (split_name, split)
                                      in scored.items() if split_name == "later"))
        scores = {}
        for p, (split_name, split) in scored.items():
            task, score_fn = scoring(method, tasks[p], context, time_aware, later=split_name == "later")
            scores[task.name] = evaluate(task, split, score_fn, context.device,
                                         context.train.eval_batch_size, context.train.limit_eval_users,
                                         context.train.precision, protocol)
        for task_name, metrics in scores.items():
            if not all(math.isfinite(value) for value in metrics.values()):
                split_name = "later" if task_name in later else config.eval_split
                raise DivergenceError(task_name, f"the {split_name} scores are not finite ({metrics})")
        record.steps.append({
            "row": max(positions), "tasks": [tasks[p].name for p in positions], "scores": scores,
            "seconds": seconds, "parameters": method.parameter_count(),
            "backbones": method.n_backbones(),
        })
        if time_aware:
            record.steps[-1] |= {"later": later, "n_items": context.n_items}
        record.variants = extra_rows(name, getattr(method, "variant_scores", {}))
        if distributed.is_main():  # every rank holds the same model and scores; rank 0 writes
            # the logs first: a kill after the checkpoint skips this step on resume, so a log
            # written after it could be lost for good; a kill before it replays the step
            write_json(store.method_dir(name) / "epochs.json", method.fit_logs)
            store.save_checkpoint(name, checkpoint_payload(method, record, context.n_items if time_aware else None))
            journal.drop()  # the step checkpoint holds it now
            store.save_record(record)
        if on_step is not None:
            on_step(name, record)
    record.complete = True
    if distributed.is_main():
        store.save_record(record)
        store.drop_checkpoint(name)
    return record


CHECKPOINT_FORMAT = 2  # 1 (before issue 22): the pickled method object, refused on load


def checkpoint_payload(method, record: MethodRecord, n_items: int | None = None) -> dict:
    """A step checkpoint: tensors and plain data only (the method's state_dict, its plain
    between-step state, the record, the RNG state; in the time-aware scenario the item
    vocabulary it was saved at), so that it loads with weights_only=True and loading it can
    never run code (docs/security-loading.md)."""
    payload = {"format": CHECKPOINT_FORMAT, "state": method.state_dict(), "extra": method.checkpoint_state(),
               "record": asdict(record), "rng": torch.get_rng_state()}
    return payload if n_items is None else payload | {"n_items": n_items}


def scoring(method, task: Task, context: MethodContext, time_aware: bool, later: bool):
    """The task and score function a row scores `task` with. In the time-aware scenario an
    item-vocabulary task's test split is ranked among the items of its own time (ids 1..its
    `n_items_known`; DITTO's released test ranks over the dictionary of the task's step,
    train_ditto.py L490), its later data among every item known now (the inference script ranks
    over its grown table, inference_past_tasks_update.py L152-165); ids are numbered by arrival,
    so the task's items are a prefix of the grown model's outputs."""
    if not time_aware or later or not task.item_vocabulary:
        task = current(task, context, time_aware)
        return task, partial(method.scores, task)
    own = growth.at_vocabulary(task, growth.task_vocabulary(task, context.n_items))
    now = current(task, context, time_aware)
    return own, lambda inputs: method.scores(now, inputs)[:, :own.output_size]


def current(task: Task, context: MethodContext, time_aware: bool) -> Task:
    """The task as the method sees it now: in the time-aware scenario an item-vocabulary task
    spans the vocabulary now (its head, candidates and padding column cover the new items)."""
    return growth.at_vocabulary(task, context.n_items) if time_aware else task



def resume_method(name: str, checkpoint: dict, tasks: list[Task], context: MethodContext, config: RunConfig,
                  store: RunStore):
    """The method and record of a step checkpoint: the method built from the registry exactly
    as a new run builds it, its per-task structure re-created for the tasks it had learnt
    (`ContinualMethod.restore`), then its weights loaded strictly and the RNG state restored."""
    path = store.method_dir(name) / "checkpoint.pt"
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise BenchError(f"{path}: a checkpoint of another format; {store.restart_hint(name)}")
    time_aware = growth.is_time_aware(tasks)
    if time_aware:  # built at the vocabulary the checkpoint was saved at (grown since the start)
        context.n_items = max(context.n_items, int(checkpoint.get("n_items") or context.n_items))
    method = METHODS.get(name).build(context, METHODS.options(name, config.method_options))
    by_name = {task.name: current(task, context, time_aware) for task in tasks}
    try:
        learnt = [by_name[task] for task in checkpoint["extra"]["learned"]]
        method.resume(learnt, context, checkpoint["state"], checkpoint["extra"])
    except (KeyError, TypeError, ValueError) as error:
        raise BenchError(f"{path}: the checkpoint does not fit {name} as built now ({error}); "
                         f"{store.restart_hint(name)}") from None
    torch.set_rng_state(checkpoint["rng"].cpu())
    return method, MethodRecord(**checkpoint["record"])
