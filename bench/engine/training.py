"""One training loop for every method: minibatches, Adam, best epoch on validation.

Methods differ in *what* they train (which parameters, which loss, which gradient
surgery); the hooks let them say so without rewriting the loop.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
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
        yield split_inputs[rows], split_targets[rows]


def as_tensors(split: TaskSplit, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A split on the device as int64 (indices for embeddings and gathers; the split may be int32)."""
    return (torch.from_numpy(split.inputs).to(device).long(), torch.from_numpy(split.targets).to(device))


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


@torch.no_grad()
def accumulate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
               batch_size: int = 512, limit: int | None = None, precision: str = "fp32") -> RankingSums:
    """Stream a split through `score_fn` one batch at a time: memory is one batch of scores.

    `limit` keeps the split's first `limit` instances (smoke runs at full size).
    """
    sums = metric_sums(task)
    if limit is not None:
        split = split.subset(np.arange(min(limit, len(split))))
    inputs, targets = distributed.shard_rows(*evaluation_pairs(task, *as_tensors(split, device)))
    for x, y in batches(inputs, targets, batch_size):
        with autocast(device, precision):
            scores = score_fn(x)
        sums.add(scores.float(), y)
    return sums


def evaluate(task: Task, split: TaskSplit, score_fn: ScoreFn, device: torch.device,
             batch_size: int = 512, limit: int | None = None, precision: str = "fp32") -> dict[str, float]:
    """Metrics of `score_fn` on a split: MRR/HR/NDCG@5 for item tasks, accuracy for classes."""
    sums = accumulate(task, split, score_fn, device, batch_size, limit, precision)
    return sums.metrics(*distributed.reduce_sums(*sums.result()))  # rows are sharded across ranks


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
    inputs, targets = as_tensors(task.train, device)
    n_batches = max(1, int(np.ceil(np.ceil(len(targets) / config.batch_size) / distributed.world_size())))
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
                hooks.on_batch_start(index / max(1, n_batches - 1))
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
        valid = (validate() if validate is not None
                 else evaluate(task, task.valid, score_fn, device, config.eval_batch_size,
                               config.limit_eval_users, config.precision)[task.primary_metric])
        mean_loss = float(total) / n_batches
        log.epochs.append({"epoch": epoch + 1, "loss": mean_loss, "valid": valid})
        epochs.set_postfix(loss=f"{mean_loss:.4f}", valid=f"{valid:.4f}")
        if best_state is None or valid > log.best_valid:
            log.best_valid, log.best_epoch, stale = valid, epoch + 1, 0
            best_state = copy.deepcopy(state.state_dict())
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        state.load_state_dict(best_state)
    state.eval()
    log.seconds = time.perf_counter() - started
    return log
