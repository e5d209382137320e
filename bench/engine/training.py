"""One training loop for every method: minibatches, Adam, best epoch on validation.

Model selection (docs/metrics.md): an epoch becomes the best when its validation metric is
higher than the best so far, or equal to it with a lower validation loss (cross-entropy of
the evaluation scores), so a flat metric on a small validation split never strands a head at
epoch 1 while its loss still falls. Early stopping counts `patience` epochs without a new
best, and only epochs after `min_epochs`. `train.protocol = "released"` selects, trains and
anneals as the released TERACON scripts instead (bench/config.py, docs/parity.md "Parity with the
released code").

Divergence is an error, never a score: a non-finite loss stops the task naming its epoch
and step (kept on the device and looked at every 100 steps, before a checkpoint and at the
epoch's end, so there is no host sync per step), and a non-finite validation score is never
selected. `train.nonfinite=skip` skips such steps instead (a host sync per step) and counts
them. In-task checkpoints (every `train.checkpoint_every_minutes` or `_steps`) let `--resume`
continue in the middle of an epoch (bench/engine/checkpoints.py).

Methods differ in *what* they train (which parameters, which loss, which gradient
surgery); the hooks let them say so without rewriting the loop.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bench.config import TrainConfig
from bench.engine import distributed
from bench.engine.progress import report as report_progress
from bench.engine.checkpoints import Journal
from bench.errors import DivergenceError
from bench.engine.metrics import AccuracySums, RankingSums
from bench.engine.protocols import Protocol
from bench.engine.objectives import LossSettings, evaluation_pairs, loss_settings
from bench.engine.tasks import Task, TaskKind, TaskSplit

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TrainHooks:
    """Optional callbacks; `progress` is the fraction of the epoch done (HAT anneals s with it)."""

    on_batch_start: Callable[[float], None] | None = None
    after_backward: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    # objects with state_dict()/load_state_dict() that change while training (TERACON's
    # retention ratios, MTL's batch cyclers): in-task checkpoints save and restore them
    resumable: list = field(default_factory=list)


@dataclass
class FitLog:
    task: str
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("nan")
    best_valid_loss: float = float("nan")
    seconds: float = 0.0
    skipped_steps: int = 0  # steps with a non-finite loss, skipped (train.nonfinite=skip)
    # What looked wrong but did not stop the task, e.g. a loss that grew by orders of magnitude
    # over an epoch (a too-large lr: finite, yet no longer learning); also printed as warnings.
    warnings: list[str] = field(default_factory=list)


@dataclass
class LoopState:
    """The loop's variables between two batches: what an in-task checkpoint saves with the model."""

    log: FitLog
    epoch: int = 0
    index: int = 0  # the next batch of `epoch`
    total: torch.Tensor | None = None  # the epoch's summed loss so far, on the device
    skipped: int = 0  # the epoch's skipped steps
    stale: int = 0
    best_state: dict | None = None
    order: torch.Tensor | None = None  # the data-order generator before the epoch's shuffle
    first: torch.Tensor | None = None  # the loss of the epoch's first trained step (NaN: none yet)

    def saved(self) -> dict:
        return {**vars(self), "log": dataclasses.asdict(self.log)}


GROWTH_WARNING = 1000.0  # an epoch's mean loss this many times its first step's is flagged


def loss_growth(task: Task, epoch: int, first: float, mean: float, previous: float | None) -> str | None:
    """A warning when the loss grew by orders of magnitude over the epoch (its mean against its
    first step, or against the previous epoch's mean): finite, so no error, but diverging."""
    for start, what in ((first, "its first step"), (previous, "the previous epoch")):
        if start is not None and math.isfinite(start) and start > 0 and math.isfinite(mean) \
                and mean >= GROWTH_WARNING * start:
            return (f"task {task.name}: the training loss grew from {start:.4g} ({what}) to a mean of "
                    f"{mean:.4g} in epoch {epoch + 1}; lower train.lr")
    return None


class NonFiniteWatch:
    """The epoch's first step with a non-finite loss, kept on the device (no host sync)."""

    CHECK_EVERY = 100  # steps between looks at it (each look is one host sync)

    def __init__(self, device: torch.device):
        self.first = torch.full((), -1, dtype=torch.long, device=device)

    def add(self, loss: torch.Tensor, index: int) -> None:
        self.first = torch.where((self.first < 0) & ~torch.isfinite(loss), index, self.first)

    def check(self, task: Task, epoch: int, local: bool = False) -> None:
        """Raise at a non-finite loss; on every rank (an all-reduce) unless `local`, which is
        for points the ranks may reach at different steps (a checkpoint due by time)."""
        found = (self.first >= 0).double()
        if float(found if local else distributed.all_reduce_sum(found)) > 0:
            step = int(self.first)
            raise DivergenceError(task.name, "the training loss is not finite", epoch + 1,
                                  step + 1 if step >= 0 else None)


def batches(split_inputs: torch.Tensor, split_targets: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None,
            shard: bool = False, skip: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches in a random order; with `shard`, this rank's stride of them (distributed.py);
    the first `skip` of them left out (a resumed epoch).

    The order is drawn on the host (the same generator on every device) and sent to the split's
    device once per pass, from pinned memory without waiting: no step copies or syncs anything."""
    n = len(split_targets)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if split_inputs.device.type == "cuda":
        order = order.pin_memory().to(split_inputs.device, non_blocking=True)
    starts = list(range(0, n, batch_size))
    for start in (distributed.shard(starts) if shard else starts)[skip:]:
        rows = order[start:start + batch_size]
        yield split_inputs[rows].long(), split_targets[rows].long()


def as_tensors(split: TaskSplit, device: torch.device, widen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A split on the device; int64 unless `widen` is off (then int32 sequences stay int32, half
    the memory at TTL size, and `batches` widens each batch)."""
    inputs = torch.from_numpy(split.inputs).to(device)
    return (inputs.long() if widen else inputs), torch.from_numpy(split.targets).to(device)


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked for; fp32 everywhere else (CPU bf16 is slower, not faster)."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_tf32() -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions on CUDA (10-bit mantissa products)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def metric_sums(task: Task) -> RankingSums:
    """The streaming accumulator of a task's metrics: accuracy for classes, MRR/HR/NDCG@5 otherwise."""
    return AccuracySums() if task.kind is TaskKind.CLASS else RankingSums(k=5)


def scored_batches(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
                   batch_size: int = 512, limit: int | None = None,
                   precision: str = "fp32", rows: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
    """(float scores, targets) of a split one batch at a time: memory is one batch of scores.

    `limit` keeps the split's first `limit` instances (smoke runs at full size). With `rows`,
    each batch also carries its instances' indices in the split (sampled negatives are a
    function of them, bench/engine/protocols.py), whichever rank or batch scores them.
    """
    if limit is not None:
        split = split.subset(np.arange(min(limit, len(split))))
    pairs = evaluation_pairs(task, *as_tensors(split, device, widen=False))
    if rows:
        pairs = (*pairs, torch.arange(len(pairs[1]), device=device))
    sharded = distributed.shard_rows(*pairs)
    inputs, targets = sharded[:2]
    for start, (x, y) in zip(range(0, len(targets), batch_size), batches(inputs, targets, batch_size)):
        with autocast(device, precision):
            scores = score_fn(x)
        yield (scores.float(), y.long(), sharded[2][start:start + batch_size]) if rows else (scores.float(), y.long())


@torch.no_grad()
def accumulate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
               batch_size: int = 512, limit: int | None = None, precision: str = "fp32",
               protocol: Protocol | None = None) -> RankingSums:
    """The metric sums of a split (see `scored_batches`) under `protocol` (None: full ranking @5)."""
    if protocol is None:
        sums = metric_sums(task)
        for scores, y in scored_batches(task, split, score_fn, device, batch_size, limit, precision):
            sums.add(scores, y)
        return sums
    sums = protocol.sums(task)
    for scores, y, index in scored_batches(task, split, score_fn, device, batch_size, limit, precision, rows=True):
        sums.add(scores, y, index)
    return sums


def evaluate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
             batch_size: int = 512, limit: int | None = None, precision: str = "fp32",
             protocol: Protocol | None = None) -> dict[str, float]:
    """Metrics of `score_fn` on a split: MRR/HR/NDCG@k for item tasks (full ranking @5 unless
    `protocol` says otherwise, bench/engine/protocols.py), accuracy for classes."""
    sums = accumulate(task, split, score_fn, device, batch_size, limit, precision, protocol)
    return sums.metrics(*distributed.reduce_sums(*sums.result()))  # rows are sharded across ranks


@torch.no_grad()
def validation_score(task: Task, score_fn: ScoreFn, device: torch.device,
                     config: TrainConfig) -> tuple[float, float]:
    """The validation split's primary metric and mean cross-entropy (the selection tie-break),
    from one pass over it."""
    sums, loss = metric_sums(task), torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    split, batch_size = task.valid, config.eval_batch_size
    if config.protocol == "released":
        split, batch_size = released_validation_rows(split, config)
    for scores, y in scored_batches(task, split, score_fn, device, batch_size,
                                    config.limit_eval_users, config.precision):
        sums.add(scores, y)
        loss += F.cross_entropy(scores, y, reduction="sum").double()
        hits += (scores.argmax(dim=1) == y).sum()
    total, count = sums.result()  # rows are sharded across ranks: add up sums, loss and count
    reduced, count = distributed.reduce_sums(torch.cat([total.to(loss), loss.reshape(1), hits.reshape(1)]), count)
    if config.protocol == "released":  # hit@1 and a strict `>`, no tie-break (train_teracon.py L333)
        return float(reduced[-1]) / max(count, 1), None
    return sums.metrics(reduced[:-2], count)[task.primary_metric], float(reduced[-2]) / max(count, 1)


def released_validation_rows(split: TaskSplit, config: TrainConfig) -> tuple[TaskSplit, int]:
    """The rows the released scripts validate on: getBatch's full batches of a fresh shuffle
    (`while end_inx < len(data)`), of 512 rows for T1 (train_task1.py) and of the training batch
    for later tasks (train_teracon.py), i.e. of max(eval_batch_size, batch_size); every row
    when that leaves none (the scripts would divide by zero there)."""
    size = max(config.eval_batch_size, config.batch_size)
    kept = (math.ceil(len(split) / size) - 1) * size
    if kept <= 0:
        return split, config.eval_batch_size
    return split.subset(torch.randperm(len(split))[:kept].numpy()), size


def improves(valid: float, loss: float | None, best_valid: float, best_loss: float | None) -> bool:
    """A higher metric, or the same metric with a lower validation loss."""
    if math.isnan(best_valid) or valid > best_valid + 1e-12:
        return True
    tied = abs(valid - best_valid) <= 1e-12
    return tied and loss is not None and best_loss is not None and loss < best_loss


def fit(
    task: Task,
    parameters: Iterable[nn.Parameter],
    loss_fn: LossFn,
    score_fn: ScoreFn,
    state: nn.Module,
    config: TrainConfig,
    device: torch.device,
    hooks: TrainHooks | None = None,
    progress: bool = False,
    description: str = "",
    validate: Callable[[], float] | None = None,
    journal: Journal | None = None,
) -> FitLog:
    """Train on `task.train`, keep the epoch with the best validation score.

    `state` is the module whose weights are snapshotted and restored at the best epoch;
    `loss_fn(inputs, targets)` and `score_fn(inputs)` close over the method's model.
    `validate()` replaces the validation score of `task` when one model serves several
    tasks at once (MTL selects its epoch on the mean over all of them).
    `journal` keeps in-task checkpoints of the runner's step (bench/engine/checkpoints.py).
    """
    hooks = hooks or TrainHooks()
    call = journal.next_call() if journal is not None else None
    if call is not None and call.finished:  # a replayed step: this call finished before the interruption
        return FitLog(**call.outcome(state))
    parameters = [p for p in parameters if p.requires_grad]
    distributed.sync_start(state)
    optimizer = torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,))))
    inputs, targets = as_tensors(task.train, device, widen=False)
    full_only = config.protocol == "released"  # getBatch: `while end_inx < len(data)` drops the rest
    n_batches = max(1, int(np.ceil((np.ceil(len(targets) / config.batch_size) - full_only) / distributed.world_size())))
    if config.limit_train_batches is not None:
        n_batches = min(n_batches, config.limit_train_batches)
    settings = LossSettings(config.loss, config.negatives, config.sampler, config.loss_chunk_rows)
    skip = config.nonfinite == "skip"
    loop = LoopState(FitLog(task=task.name))
    saved = call.resume(state, optimizer, hooks.resumable) if call is not None else None
    if saved is not None:  # interrupted in the middle of this call: continue at its step
        loop = LoopState(**{**saved, "log": FitLog(**saved["log"])})
        loop.total = loop.total.to(device)
    started = time.perf_counter() - loop.log.seconds
    epochs = tqdm(range(loop.epoch, config.epochs), desc=description or task.name, leave=False,
                  disable=not progress, unit="epoch")
    for epoch in epochs:
        state.train()
        report_progress(task.name, description or task.name, epoch + 1, config.epochs)
        epoch_started = time.perf_counter()
        if loop.index == 0:  # a new epoch; a resumed one draws its shuffle again from `order`
            loop.order, loop.total, loop.skipped = generator.get_state(), torch.zeros((), device=device), 0
            loop.first = torch.full((), math.nan, device=device)
        generator.set_state(loop.order)
        loop.epoch, watch = epoch, NonFiniteWatch(device)
        for index, (x, y) in enumerate(batches(inputs, targets, config.batch_size, generator, shard=True,
                                               skip=loop.index), start=loop.index):
            if index == n_batches:
                break
            if hooks.on_batch_start:
                hooks.on_batch_start(index * config.batch_size / len(targets) if full_only
                                     else index / max(1, n_batches - 1))
            optimizer.zero_grad(set_to_none=True)
            with loss_settings(settings), autocast(device, config.precision):
                loss = loss_fn(x, y)
            if skip and float(distributed.all_reduce_sum((~torch.isfinite(loss.detach())).double())) > 0:
                loop.skipped += 1  # the same decision on every rank, so their all-reduces stay paired
            else:
                loss.backward()
                distributed.average_gradients(parameters)  # DDP's all-reduce mean, before any surgery
                if hooks.after_backward:
                    hooks.after_backward()
                optimizer.step()
                if hooks.after_step:
                    hooks.after_step()
                loop.total += loss.detach().float()
                if loop.first is not None:  # no host sync: NaN until the first trained step
                    loop.first = torch.where(torch.isnan(loop.first), loss.detach().float(), loop.first)
                watch.add(loss.detach(), index)
            loop.index = index + 1
            if loop.index % NonFiniteWatch.CHECK_EVERY == 0:
                watch.check(task, epoch)
            if call is not None and call.journal.due(config.checkpoint_every_steps, config.checkpoint_every_minutes):
                watch.check(task, epoch, local=True)  # a diverged model is never checkpointed
                loop.log.seconds = time.perf_counter() - started
                call.save(loop.saved(), state, optimizer, hooks.resumable)
        watch.check(task, epoch)
        loop.index = 0
        state.eval()
        total = distributed.average(loop.total)  # the epoch's loss over all ranks' batches
        mean_loss = float(total) / max(1, n_batches - loop.skipped)  # a host sync: the train time is exact
        train_seconds = time.perf_counter() - epoch_started
        if validate is not None:  # one model, several tasks (MTL): no single loss to break ties
            valid, valid_loss = validate(), None
        else:
            valid, valid_loss = validation_score(task, score_fn, device, config)
        log = loop.log
        growth = loss_growth(task, epoch, math.nan if loop.first is None else float(loop.first), mean_loss,
                             log.epochs[-1]["loss"] if log.epochs else None)
        log.epochs.append({"epoch": epoch + 1, "loss": mean_loss, "valid": valid, "valid_loss": valid_loss,
                           "seconds": time.perf_counter() - epoch_started, "train_seconds": train_seconds,
                           **({"skipped": loop.skipped} if skip else {}),
                           **({"loss_growth": True} if growth else {})})
        log.skipped_steps += loop.skipped
        if growth:
            log.warnings.append(growth)
            if distributed.is_main():
                print(f"warning: {growth}", file=sys.stderr, flush=True)
        epochs.set_postfix(loss=f"{mean_loss:.4f}", valid=f"{valid:.4f}")
        if not math.isfinite(valid) and not skip:
            raise DivergenceError(task.name, "the validation score is not finite", epoch + 1)
        if math.isfinite(valid) and (loop.best_state is None or improves(
                valid, valid_loss, log.best_valid, None if math.isnan(log.best_valid_loss) else log.best_valid_loss)):
            log.best_valid, log.best_epoch, loop.stale = valid, epoch + 1, 0
            log.best_valid_loss = math.nan if valid_loss is None else valid_loss
            loop.best_state = copy.deepcopy(state.state_dict())
        elif epoch + 1 > config.min_epochs:
            loop.stale += 1
            if loop.stale >= config.patience:
                break
    if skip and loop.log.skipped_steps and loop.log.skipped_steps >= n_batches * len(loop.log.epochs):
        raise DivergenceError(task.name, f"all {loop.log.skipped_steps} training steps had a non-finite loss "
                              "and were skipped (train.nonfinite=skip)", hint=f"lower train.lr (now {config.lr:g})")
    if loop.best_state is None:
        raise DivergenceError(task.name, "no epoch has a finite validation score" + (
            f" although {loop.log.skipped_steps} step(s) with a non-finite loss were skipped (train.nonfinite=skip)"
            if skip else ""), hint=f"lower train.lr (now {config.lr:g})" if skip else None)
    state.load_state_dict(loop.best_state)
    state.eval()
    loop.log.seconds = time.perf_counter() - started
    if call is not None:
        call.finish(state, dataclasses.asdict(loop.log))
    return loop.log
