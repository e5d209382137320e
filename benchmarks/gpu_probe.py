"""GPU memory and speed of a TTL-shaped T1 step and a streamed evaluation, as a markdown table.

    python benchmarks/gpu_probe.py                      # TTL shapes on CUDA (a few minutes)
    python benchmarks/gpu_probe.py --device cpu --small # tiny shapes, to check the script

Each case is a fresh model: `NextItNet` (dilations [1, 4] x 4, as TERACON's TTL scripts)
with the tied item softmax, trained by `training_loss` exactly as `bench run` does
(chunked exact softmax, or train.loss=sampled), Adam, inputs drawn uniformly from the
items. A case that runs out of memory prints OOM and the probe goes on.
"""

from __future__ import annotations

import argparse
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
STEPS = [(256, 32, "full", "fp32"), (256, 32, "full", "bf16"), (256, 32, "sampled", "fp32"),
         (256, 128, "full", "fp32"), (256, 128, "full", "bf16"), (256, 128, "sampled", "bf16"),
         (64, 128, "full", "fp32"), (64, 128, "full", "bf16")]


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


def step_case(shape: dict, dim: int, batch: int, loss: str, precision: str, device: torch.device,
              warmup: int, timed: int) -> tuple[str, str]:
    task = random_task(shape["items"], batch * 4, shape["seq_len"])
    encoder, head = model(shape["items"], dim, device)
    parameters = list(encoder.parameters()) + [head.bias]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    inputs = torch.from_numpy(task.train.inputs).to(device).long()
    settings = LossSettings(loss=loss)

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
    return f"{(time.perf_counter() - started) / timed * 1000:.0f}", peak_gib(device)


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
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--chunk-logits", type=int, help="logits per chunk of the exact loss (default: softmax.CHUNK_LOGITS)")
    parser.add_argument("--only", help="run only the cases whose row contains this text, e.g. 'full'")
    args = parser.parse_args()
    if args.chunk_logits:
        softmax.CHUNK_LOGITS[args.device.split(":")[0]] = args.chunk_logits
    device = torch.device(args.device)
    shape = SMALL if args.small else TTL
    if device.type == "cuda":
        enable_tf32()
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, TF32 on")
    print(f"shape: {shape['items']:,} items, L={shape['seq_len']}, NextItNet dilations [1,4]x4\n")
    print("| case | d | batch | loss | precision | ms/step or users/s | peak GPU GiB |")
    print("|---|---|---|---|---|---|---|")
    cases = [("T1 step", dim, batch, loss, precision) for dim, batch, loss, precision in STEPS]
    cases += [("eval", 256, 512, "-", "fp32"), ("eval", 256, 512, "-", "bf16")]
    for name, dim, batch, loss, precision in cases:
        dim //= shape["dim_scale"]
        if args.only and args.only not in f"| {name} | {dim} | {batch} | {loss} | {precision} |":
            continue
        try:
            if name == "eval":
                speed, peak = eval_case(shape, dim, batch, precision, device)
                speed = f"{speed} users/s ({shape['eval_users']:,} users)"
            else:
                speed, peak = step_case(shape, dim, batch, loss, precision, device, args.warmup, args.steps)
                speed = f"{speed} ms"
        except torch.OutOfMemoryError:
            speed, peak = "OOM", "OOM"
        except RuntimeError as error:  # e.g. an allocator failure reported differently
            speed, peak = f"failed: {str(error).splitlines()[0][:60]}", "-"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"| {name} | {dim} | {batch} | {loss} | {precision} | {speed} | {peak} |", flush=True)


if __name__ == "__main__":
    main()
