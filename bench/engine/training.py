"""One training loop for every method: minibatches, Adam, best epoch on validation.

Model selection (README "Metrics"): an epoch becomes the best when its validation metric is
higher than the best so far, or equal to it with a lower validation loss (cross-entropy of
the evaluation scores), so a flat metric on a small validation split never strands a head at
epoch 1 while its loss still falls. Early stopping counts `patience` epochs without a new
best, and only epochs after `min_epochs`. `train.protocol = "released"` selects, trains and
anneals as the released TERACON scripts instead (bench/config.py, README "Parity with the
released code").

Methods differ in *what* they train (which parameters, which loss, which gradient
surgery); the hooks let them say so without rewriting the loop.
"""

from __future__ import annotations

import contextlib
import copy
import math
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
from bench.engine.metrics import AccuracySums, RankingSums
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


@dataclass
class FitLog:
    task: str
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = float("nan")
    best_valid_loss: float = float("nan")
    seconds: float = 0.0


def batches(split_inputs: torch.Tensor, split_targets: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None,
            shard: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Minibatches in a random order; with `shard`, this rank's stride of them (distributed.py)."""
    n = len(split_targets)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    starts = list(range(0, n, batch_size))
    for start in (distributed.shard(starts) if shard else starts):
        rows = order[start:start + batch_size].to(split_inputs.device)
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
                   precision: str = "fp32") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(float scores, targets) of a split one batch at a time: memory is one batch of scores.

    `limit` keeps the split's first `limit` instances (smoke runs at full size).
    """
    if limit is not None:
        split = split.subset(np.arange(min(limit, len(split))))
    inputs, targets = distributed.shard_rows(*evaluation_pairs(task, *as_tensors(split, device, widen=False)))
    for x, y in batches(inputs, targets, batch_size):
        with autocast(device, precision):
            scores = score_fn(x)
        yield scores.float(), y.long()


@torch.no_grad()
def accumulate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
               batch_size: int = 512, limit: int | None = None, precision: str = "fp32") -> RankingSums:
    """The metric sums of a split (see `scored_batches`)."""
    sums = metric_sums(task)
    for scores, y in scored_batches(task, split, score_fn, device, batch_size, limit, precision):
        sums.add(scores, y)
    return sums


def evaluate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
             batch_size: int = 512, limit: int | None = None, precision: str = "fp32") -> dict[str, float]:
    """Metrics of `score_fn` on a split: MRR/HR/NDCG@5 for item tasks, accuracy for classes."""
    sums = accumulate(task, split, score_fn, device, batch_size, limit, precision)
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
) -> FitLog:
    """Train on `task.train`, keep the epoch with the best validation score.

    `state` is the module whose weights are snapshotted and restored at the best epoch;
    `loss_fn(inputs, targets)` and `score_fn(inputs)` close over the method's model.
    `validate()` replaces the validation score of `task` when one model serves several
    tasks at once (MTL selects its epoch on the mean over all of them).
    """
    hooks = hooks or TrainHooks()
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
    log = FitLog(task=task.name)
    best_state, stale = None, 0
    started = time.perf_counter()
    epochs = tqdm(range(config.epochs), desc=description or task.name, leave=False,
                  disable=not progress, unit="epoch")
    for epoch in epochs:
        state.train()
        total = torch.zeros((), device=device)  # summed on the device: no host sync per batch
        for index, (x, y) in enumerate(batches(inputs, targets, config.batch_size, generator, shard=True)):
            if index == n_batches:
                break
            if hooks.on_batch_start:
                hooks.on_batch_start(index * config.batch_size / len(targets) if full_only
                                     else index / max(1, n_batches - 1))
            optimizer.zero_grad(set_to_none=True)
            with loss_settings(settings), autocast(device, config.precision):
                loss = loss_fn(x, y)
            loss.backward()
            distributed.average_gradients(parameters)  # DDP's all-reduce mean, before any surgery
            if hooks.after_backward:
                hooks.after_backward()
            optimizer.step()
            if hooks.after_step:
                hooks.after_step()
            total += loss.detach().float()
        state.eval()
        total = distributed.average(total)  # the epoch's loss over all ranks' batches
        if validate is not None:  # one model, several tasks (MTL): no single loss to break ties
            valid, valid_loss = validate(), None
        else:
            valid, valid_loss = validation_score(task, score_fn, device, config)
        mean_loss = float(total) / n_batches
        log.epochs.append({"epoch": epoch + 1, "loss": mean_loss, "valid": valid, "valid_loss": valid_loss})
        epochs.set_postfix(loss=f"{mean_loss:.4f}", valid=f"{valid:.4f}")
        if best_state is None or improves(valid, valid_loss, log.best_valid,
                                          None if math.isnan(log.best_valid_loss) else log.best_valid_loss):
            log.best_valid, log.best_epoch, stale = valid, epoch + 1, 0
            log.best_valid_loss = math.nan if valid_loss is None else valid_loss
            best_state = copy.deepcopy(state.state_dict())
        elif epoch + 1 > config.min_epochs:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        state.load_state_dict(best_state)
    state.eval()
    log.seconds = time.perf_counter() - started
    return log
