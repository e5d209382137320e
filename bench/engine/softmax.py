"""Softmax cross-entropy over a very large vocabulary in bounded memory, exact or sampled.

At TTL's size (646K items, 100 positions, batch 32) the full logits of one batch take 8 GiB
and their gradient as much again. `chunked_cross_entropy` is exactly the full softmax, but
computes the logits a few rows at a time and turns each chunk straight into its share of
the gradients, so memory is one chunk of logits. `sampled_cross_entropy` is the sampled
softmax of Conure's released code (`tf.nn.sampled_softmax_loss` in generator_prune_t1.py):
shared negatives per batch, logQ correction, accidental hits removed.
"""

from __future__ import annotations

import math

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
