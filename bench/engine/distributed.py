"""Data-parallel runs with torch.distributed, started by `torchrun --nproc_per_node N -m bench run`.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; `init` joins the
process group (NCCL on GPUs, gloo on CPU). Every helper here is a no-op in a single process,
so the training loop calls them unconditionally.

How the loop uses them (bench/engine/training.py):
- each rank trains on its stride of every epoch's batches (`shard`: the same permutation on
  every rank, padded by wrapping round as DistributedSampler does, so all ranks take the
  same number of steps); the global batch is N x train.batch_size;
- `average_gradients` right after `loss.backward()` is what DistributedDataParallel does
  (an all-reduce mean of every trainable gradient); it is explicit rather than a DDP
  wrapper because methods build and replace modules between and inside tasks, and their
  gradient surgery (HAT, Conure, TERACON hooks) must see the averaged gradient; which
  gradients exist is agreed first (a tiny all-reduce), so a parameter no rank touched keeps
  grad None and Adam skips it, as in one process;
- `sync_start` at the start of every fit gives all ranks rank 0's weights and RNG state,
  so modules a method built since are identical everywhere;
- evaluation scores rows `shard`ed across ranks and all-reduces the metric sums.
Results and checkpoints are written by rank 0 only (`is_main`).
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import nn


def init(device: str = "auto") -> None:
    """Join the process group torchrun describes (nothing without WORLD_SIZE > 1)."""
    if world_size_requested() <= 1 or dist.is_initialized():
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if use_cuda else "gloo")
    atexit.register(dist.destroy_process_group)


def world_size_requested() -> int:
    """The processes torchrun started, known before `init`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank; before `init` the one torchrun gave it (so only rank 0 takes a run's lock)."""
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if world_size_requested() > 1 else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def device(requested: torch.device) -> torch.device:
    """`cuda` means this rank's own GPU (cuda:LOCAL_RANK) in a distributed run."""
    if active() and requested.type == "cuda" and requested.index is None:
        return torch.device("cuda", local_rank())
    return requested


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank (e.g. the run id)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: list) -> list:
    """This rank's stride of `items`, padded by wrapping round so every rank gets as many."""
    n, world = len(items), world_size()
    if world == 1 or n == 0:
        return items
    padded = items + [items[i % n] for i in range((-n) % world)]
    return padded[rank()::world]


def shard_rows(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This rank's rows (rank, rank + N, ...) of row-aligned tensors, without padding."""
    if not active():
        return tensors
    return tuple(t[rank()::world_size()] for t in tensors)


def _comm_device(tensor: torch.Tensor) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else tensor.device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over ranks (a new tensor on `tensor`'s device)."""
    if not active():
        return tensor
    work = tensor.detach().to(_comm_device(tensor)).clone()
    dist.all_reduce(work)
    return work.to(tensor.device)


def average(value):
    """The mean of a float or tensor over ranks, of the same kind."""
    if not active():
        return value
    mean = all_reduce_sum(torch.as_tensor(value, dtype=torch.float64)) / world_size()
    return mean.to(value.dtype) if isinstance(value, torch.Tensor) else float(mean)


def reduce_sums(sums: torch.Tensor, count: int) -> tuple[torch.Tensor, int]:
    """Metric sums and row counts added over ranks (streamed evaluation of sharded rows)."""
    if not active():
        return sums, count
    total = all_reduce_sum(torch.cat([sums.double().flatten(), torch.tensor([float(count)], dtype=torch.float64,
                                                                           device=sums.device)]))
    return total[:-1], int(total[-1].item())


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """All-reduce mean of the gradients, as DDP does: a gradient missing on one rank counts as 0."""
    if not active() or not parameters:
        return
    world = world_size()
    present = all_reduce_sum(torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32))
    grads = []
    for parameter, seen in zip(parameters, present.tolist()):
        if seen and parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        if seen:
            grads.append(parameter.grad)
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_comm_device(grads[0]))
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_start(state: nn.Module) -> None:
    """Rank 0's weights, buffers and RNG state on every rank (before each fit)."""
    if not active():
        return
    for tensor in state.state_dict().values():
        if isinstance(tensor, torch.Tensor):
            dtype = torch.uint8 if tensor.dtype is torch.bool else tensor.dtype  # gloo has no bool
            work = tensor.to(device=_comm_device(tensor), dtype=dtype).contiguous()
            dist.broadcast(work, src=0)
            if work.data_ptr() != tensor.data_ptr():
                tensor.copy_(work)
    rng = broadcast_object([torch.get_rng_state(), torch.cuda.get_rng_state() if torch.cuda.is_available() else None])
    torch.set_rng_state(rng[0])
    if rng[1] is not None:
        torch.cuda.set_rng_state(rng[1])
