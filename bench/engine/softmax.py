"""Softmax cross-entropy over a very large vocabulary in bounded memory, exact or sampled.

At TTL's size (646K items, 100 positions, batch 32) the full logits of one batch take 8 GiB
and their gradient as much again. `chunked_cross_entropy` is exactly the full softmax, but
computes the logits a few rows at a time and turns each chunk straight into its share of
the gradients, so memory is one chunk of logits. `sampled_cross_entropy` is the sampled
softmax of Conure's released code (`tf.nn.sampled_softmax_loss` in generator_prune_t1.py):
shared negatives per batch, logQ correction, accidental hits removed.

On CUDA the exact loss dispatches to `fused_cross_entropy`: liger-kernel's fused linear
cross-entropy (Triton; the `gpu` extra), bf16 inputs with fp32 logits and fp32 gradient
accumulation, padding positions passed as `IGNORE` instead of being gathered out (which
needs a host sync each step). The chunked loss stays the CPU path and the reference
(tests/test_gpu.py); `exact_loss_path` says which one runs, and the run records it.
BENCH_FUSED_LOSS=off keeps the chunked loss on CUDA too.
"""

from __future__ import annotations

import math
import os
import sys

import torch
import torch.nn.functional as F

# Logits computed at once by the chunked loss: 256 MiB of fp32 logits per chunk on a CPU,
# 1 GiB on a GPU, where fewer, larger chunks read the item table fewer times.
CHUNK_LOGITS = {"cpu": 2**26, "cuda": 2**28}


class _ChunkedCrossEntropy(torch.autograd.Function):
    """mean_i CE(hidden_i @ weight.T + bias, targets_i), gradients made chunk by chunk in forward.

    The gradients are computed while each chunk's logits exist (as fused linear cross-entropy
    kernels do), which saves recomputing them in backward; backward only scales them.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, rows):
        ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype)
        device = hidden.device.type
        if device in ("cuda", "cpu") and torch.is_autocast_enabled(device):
            compute = torch.get_autocast_dtype(device)  # cast the item table once, not per chunk
            hidden, weight, bias = hidden.to(compute), weight.to(compute), bias.to(compute)
        with torch.autocast(device, enabled=False):
            return _ChunkedCrossEntropy._forward(ctx, hidden, weight, bias, targets, rows)

    @staticmethod
    def _forward(ctx, hidden, weight, bias, targets, rows):
        n = len(targets)
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.zeros(hidden.shape, dtype=torch.float32, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, rows):
            h, t = hidden[start:start + rows], targets[start:start + rows]
            logits = torch.addmm(bias, h, weight.T).float()
            lse = torch.logsumexp(logits, dim=1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w or need_b:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
                probs[torch.arange(len(t), device=t.device), t] -= 1.0
                probs /= n
                if need_h:
                    grad_h[start:start + rows] = probs.to(weight.dtype) @ weight
                if need_w:
                    grad_w += (probs.T.to(h.dtype) @ h).float()
                if need_b:
                    grad_b += probs.sum(dim=0)
            del logits
        ctx.save_for_backward(*(g for g in (grad_h, grad_w, grad_b) if g is not None))
        ctx.grads = (grad_h is not None, grad_w is not None, grad_b is not None)
        return total / max(n, 1)

    @staticmethod
    def backward(ctx, grad_output):
        saved = iter(ctx.saved_tensors)
        grads = [(next(saved) * grad_output).to(dtype) if present else None
                 for present, dtype in zip(ctx.grads, ctx.dtypes)]
        return (*grads, None, None)


def chunk_rows(n_classes: int, device: torch.device, rows: int | None = None) -> int:
    """Rows per chunk: as given, else as many as keep one chunk of logits under CHUNK_LOGITS."""
    budget = CHUNK_LOGITS["cuda" if device.type == "cuda" else "cpu"]
    return max(1, rows if rows else budget // max(n_classes, 1))


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          targets: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """Exact `F.cross_entropy(hidden @ weight.T + bias, targets)` with one chunk of logits in memory."""
    if not torch.is_grad_enabled():
        hidden, weight, bias = hidden.detach(), weight.detach(), bias.detach()
    return _ChunkedCrossEntropy.apply(hidden, weight, bias, targets, chunk_rows(len(weight), hidden.device, rows))


def log_uniform_probabilities(n_classes: int, device=None) -> torch.Tensor:
    """TF's log_uniform_candidate_sampler: P(k) = log((k+2)/(k+1)) / log(n+1), a Zipf over ids."""
    k = torch.arange(n_classes, dtype=torch.float64, device=device)
    return (torch.log1p(1.0 / (k + 1.0)) / math.log(n_classes + 1.0)).float()


def sampled_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          targets: torch.Tensor, probabilities: torch.Tensor, negatives: int) -> torch.Tensor:
    """Sampled softmax with logQ correction over `negatives` classes drawn from `probabilities`.

    As tf.nn.sampled_softmax_loss: every logit has log(expected count) = log(negatives * Q)
    subtracted, and a sampled class equal to a row's target is masked out for that row.
    Negatives are drawn with replacement (TF's default sampler draws unique classes).
    """
    sampled = torch.multinomial(probabilities, negatives, replacement=True)
    log_q = torch.log(negatives * probabilities)
    true_logits = (hidden * weight[targets]).sum(dim=1) + bias[targets] - log_q[targets]
    sampled_logits = hidden @ weight[sampled].T + (bias[sampled] - log_q[sampled])
    sampled_logits = sampled_logits.masked_fill(sampled[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([true_logits[:, None], sampled_logits], dim=1).float()
    return F.cross_entropy(logits, torch.zeros_like(targets))


IGNORE = -100  # target of a padding position on the fused path (liger's ignore_index)
_FUSED: dict[str, object] = {}  # the loaded kernel, or the reason there is none


def _fused_kernel():
    """liger-kernel's fused loss module (fp32 gradient accumulation where it offers it), or a
    string saying why there is none; tried once per process."""
    if "kernel" not in _FUSED:
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        except Exception as error:  # noqa: BLE001 - missing, or no Triton for this torch
            _FUSED["kernel"] = f"liger-kernel not importable ({type(error).__name__})"
        else:
            try:
                _FUSED["kernel"] = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="mean",
                                                                    accum_dtype=torch.float32)
            except TypeError:  # a release before accum_dtype
                _FUSED["kernel"] = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="mean")
    return _FUSED["kernel"]


def exact_loss_path(device: torch.device) -> str:
    """Which implementation `train.loss=full` runs on `device`: "fused (liger-kernel X)" or
    "chunked" (with the reason on CUDA). On CUDA without the package, says so once on stderr."""
    if device.type != "cuda":
        return "chunked"
    if os.environ.get("BENCH_FUSED_LOSS", "").strip().lower() in ("off", "0", "false", "no"):
        return "chunked (BENCH_FUSED_LOSS=off)"
    if "path" not in _FUSED:  # asked every step: worked out once
        _FUSED["path"] = _cuda_path()
    return _FUSED["path"]


def _cuda_path() -> str:
    kernel = _fused_kernel()
    if isinstance(kernel, str):
        if not _FUSED.get("said"):
            _FUSED["said"] = True
            print(f"note: {kernel}: the exact loss runs the chunked path on CUDA "
                  "(pip install 'userrep-bench[gpu]' for the fused kernel)", file=sys.stderr, flush=True)
        return f"chunked ({kernel})"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"fused (liger-kernel {version('liger-kernel')})"
    except PackageNotFoundError:
        return "fused (liger-kernel)"


def fused_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                        targets: torch.Tensor) -> torch.Tensor:
    """Mean CE of `hidden @ weight.T + bias` over the targets that are not IGNORE, by the fused
    kernel in bf16 (logits and their gradient never exist as a whole; fp32 inside)."""
    kernel = _fused_kernel()
    compute = torch.bfloat16
    with torch.autocast("cuda", enabled=False):
        out = kernel(weight.to(compute), hidden.to(compute).contiguous(), targets, bias.to(compute))
    loss = out[0] if isinstance(out, tuple) else getattr(out, "loss", out)  # releases differ in what they return
    return loss.float()
