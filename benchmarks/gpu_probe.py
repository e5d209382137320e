"""GPU memory and speed of a TTL-shaped T1 step and a streamed evaluation, as a markdown table.

    python benchmarks/gpu_probe.py                      # TTL shapes on CUDA (a few minutes)
    python benchmarks/gpu_probe.py --device cpu --small # tiny shapes, to check the script
    python benchmarks/gpu_probe.py --device cpu --items 20000 --steps 2 --warmup 1 --eval-users 1000

Each case is a fresh model: `NextItNet` (dilations [1, 4] x 4, as TERACON's TTL scripts)
with the tied item softmax, trained by `training_loss` exactly as `bench run` does, Adam,
inputs drawn uniformly from the items. The loss column: `fused` is train.loss=full with
liger-kernel's fused kernel (CUDA only), `chunked` the same loss by the chunked reference
(BENCH_FUSED_LOSS=off), `sampled` train.loss=sampled. Each step row also gives the implied
T1 epoch (TTL's ~1.18M T1 users / batch steps) and the fraction of the matmul bound: the
output layer's three matmuls (6 x positions x items x d FLOP) at the bf16 matmul rate measured
on this device. Then a torch.profiler summary of one step of the first exact-loss case. A case
that runs out of memory prints OOM and the probe goes on.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from bench.config import BackboneConfig
from bench.engine import softmax
from bench.engine.backbone import NextItNet, TiedItemHead
from bench.engine.objectives import LossSettings, evaluation_scores, loss_settings, training_loss
from bench.engine.tasks import Task, TaskKind, TaskSplit
from bench.engine.training import autocast, enable_tf32, evaluate

TTL = {"items": 646_000, "seq_len": 100, "eval_users": 100_000, "dim_scale": 1}
SMALL = {"items": 2_000, "seq_len": 20, "eval_users": 2_000, "dim_scale": 8}  # d 256 -> 32
# (d, batch, loss, precision): the papers' T1 (d=256, batch 32), a larger batch, a small d
STEPS = [(256, 32, "fused", "fp32"), (256, 32, "fused", "bf16"), (256, 32, "chunked", "fp32"),
         (256, 32, "chunked", "bf16"), (256, 32, "sampled", "fp32"),
         (256, 128, "fused", "bf16"), (256, 128, "chunked", "fp32"), (256, 128, "chunked", "bf16"),
         (256, 128, "sampled", "bf16"), (64, 128, "chunked", "fp32"), (64, 128, "chunked", "bf16")]
T1_USERS = 1_180_000  # TTL's T1 train split (docs/datasets.md, "TTL"), for the implied epoch time


def random_task(n_items: int, n_users: int, seq_len: int, seed: int = 0) -> Task:
    rng = np.random.default_rng(seed)
    split = TaskSplit(rng.integers(1, n_items + 1, (n_users, seq_len), dtype=np.int32),
                      np.zeros(n_users, dtype=np.int64))
    split.targets = split.inputs[:, -1].astype(np.int64)
    return Task("T1", TaskKind.NEXT_ITEM, n_items, split, split, split)


def model(n_items: int, dim: int, device: torch.device):
    blocks = [1, 4] * 4 if dim >= 64 else [1, 4]
    encoder = NextItNet(n_items, BackboneConfig(embedding_dim=dim, dilations=blocks)).to(device)
    return encoder, TiedItemHead(encoder.embedding).to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a (cpu)"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}"


def matmul_tflops(device: torch.device, size: int = 8192) -> float:
    """The bf16 matmul rate this device reaches (TFLOP/s), the bound the step rows compare with."""
    size = size if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    a @ b
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 3
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def exact_path(loss: str) -> None:
    """`fused` and `chunked` are both train.loss=full; the chunked one with the fused path off."""
    if loss == "chunked":
        os.environ["BENCH_FUSED_LOSS"] = "off"
    else:
        os.environ.pop("BENCH_FUSED_LOSS", None)


def step_case(shape: dict, dim: int, batch: int, loss: str, precision: str, device: torch.device,
              warmup: int, timed: int, profile: bool = False) -> tuple[float, str, str | None]:
    """(ms per step, peak GiB, profiler table or None)."""
    if loss == "fused" and not softmax.exact_loss_path(device).startswith("fused"):
        raise LookupError(f"the exact loss here is {softmax.exact_loss_path(device)}")
    exact_path(loss)
    task = random_task(shape["items"], batch * 4, shape["seq_len"])
    encoder, head = model(shape["items"], dim, device)
    parameters = list(encoder.parameters()) + [head.bias]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    inputs = torch.from_numpy(task.train.inputs).to(device).long()
    settings = LossSettings(loss="sampled" if loss == "sampled" else "full")

    def step(index: int) -> None:
        x = inputs[(index % 4) * batch:(index % 4 + 1) * batch]
        optimizer.zero_grad(set_to_none=True)
        with loss_settings(settings), autocast(device, precision):
            value = training_loss(task, encoder(x), head, x, None)
        value.backward()
        optimizer.step()

    reset_peak(device)
    for index in range(warmup):
        step(index)
    synchronize(device)
    started = time.perf_counter()
    for index in range(timed):
        step(index)
    synchronize(device)
    ms = (time.perf_counter() - started) / timed * 1000
    table = None
    if profile:
        from torch.profiler import ProfilerActivity, profile as profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profiler(activities=activities) as trace:
            step(0)
            synchronize(device)
        table = trace.key_averages().table(
            sort_by="cuda_time_total" if device.type == "cuda" else "cpu_time_total", row_limit=12)
    exact_path("fused")
    return ms, peak_gib(device), table


def eval_case(shape: dict, dim: int, batch: int, precision: str, device: torch.device) -> tuple[str, str]:
    task = random_task(shape["items"], shape["eval_users"], shape["seq_len"] + 1, seed=1)
    encoder, head = model(shape["items"], dim, device)
    encoder.eval()
    reset_peak(device)
    synchronize(device)
    started = time.perf_counter()
    evaluate(task, task.test, lambda x: evaluation_scores(task, encoder(x), head), device, batch,
             precision=precision)
    synchronize(device)
    return f"{shape['eval_users'] / (time.perf_counter() - started):,.0f}", peak_gib(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny shapes (checks the script on a CPU)")
    parser.add_argument("--items", type=int, help="items of the shape (default: TTL's 646,000)")
    parser.add_argument("--eval-users", type=int, help="users of the evaluation cases (default: 100,000)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chunk-logits", type=int, help="logits per chunk of the exact loss (default: softmax.CHUNK_LOGITS)")
    parser.add_argument("--only", help="run only the cases whose row contains this text, e.g. 'fused'")
    parser.add_argument("--no-profile", action="store_true", help="skip the torch.profiler summary")
    args = parser.parse_args()
    if args.chunk_logits:
        softmax.CHUNK_LOGITS[args.device.split(":")[0]] = args.chunk_logits
    device = torch.device(args.device)
    shape = dict(SMALL if args.small else TTL)
    shape.update({key: value for key, value in (("items", args.items), ("eval_users", args.eval_users)) if value})
    if device.type == "cuda":
        enable_tf32()
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, TF32 on")
    else:
        print(f"device: cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")
    peak = matmul_tflops(device)
    print(f"shape: {shape['items']:,} items, L={shape['seq_len']}, NextItNet dilations [1,4]x4; "
          f"exact loss here: {softmax.exact_loss_path(device)}; bf16 matmul measured at {peak:.1f} TFLOP/s\n")
    print("| case | d | batch | loss | precision | ms/step or users/s | T1 epoch (1.18M users) "
          "| output-layer bound | fraction of bound | peak GPU GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = [("T1 step", dim, batch, loss, precision) for dim, batch, loss, precision in STEPS]
    cases += [("eval", 256, 512, "-", "fp32"), ("eval", 256, 512, "-", "bf16")]
    profiled = None
    for name, dim, batch, loss, precision in cases:
        dim //= shape["dim_scale"]
        if args.only and args.only not in f"| {name} | {dim} | {batch} | {loss} | {precision} |":
            continue
        epoch = bound = fraction = "-"
        try:
            if name == "eval":
                speed, peak_mem = eval_case(shape, dim, batch, precision, device)
                speed = f"{speed} users/s ({shape['eval_users']:,} users)"
            else:
                profile = not args.no_profile and profiled is None and loss != "sampled"
                ms, peak_mem, table = step_case(shape, dim, batch, loss, precision, device, args.warmup,
                                                args.steps, profile)
                if table is not None:
                    profiled = (f"{name} d={dim} batch={batch} {loss} {precision}", table)
                positions = batch * (shape["seq_len"] - 1)
                bound_ms = 6 * positions * shape["items"] * dim / (peak * 1e12) * 1000
                speed = f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"
                epoch = f"{math.ceil(T1_USERS / batch) * ms / 60000:.1f} min"
                bound = f"{bound_ms:.1f} ms"
                fraction = f"{bound_ms / ms:.2f}" if loss != "sampled" else "-"  # sampled: fewer FLOPs
        except LookupError as why:
            speed, peak_mem = f"n/a: {why}", "-"
        except torch.OutOfMemoryError:
            speed, peak_mem = "OOM", "OOM"
        except RuntimeError as error:  # e.g. an allocator failure reported differently
            speed, peak_mem = f"failed: {str(error).splitlines()[0][:60]}", "-"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"| {name} | {dim} | {batch} | {loss} | {precision} | {speed} | {epoch} | {bound} | {fraction} "
              f"| {peak_mem} |", flush=True)
    if profiled is not None:
        print(f"\ntorch.profiler, one step of {profiled[0]}:\n")
        print(profiled[1])


if __name__ == "__main__":
    main()
