"""Task-gated units for NextItNet: what HAT and TERACON share.

Both methods multiply the output units (channels) of every convolution by a per-task
mask in [0, 1]. `UnitGate` wraps a block sub-layer and multiplies its output by the mask
set for the current forward pass; the mask is set by `masked` and always cleared
afterwards, so no tensor (or autograd graph) is left on the module when it is copied.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from bench.engine.backbone import NextItNet
from bench.errors import BenchError


class UnitGate(nn.Module):
    """`inner(x) * mask`; the mask broadcasts over (B, L, d)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            raise RuntimeError("UnitGate used outside `masked(...)`: no task mask is set")
        return self.inner(x) * self.mask


def install_gates(encoder: NextItNet, gate_conv_outputs: bool) -> list[list[UnitGate]]:
    """Gate every residual block's two unit layers; returns, per gated layer, its gates.

    Layer 2b gates block b's conv1 units, layer 2b+1 its conv2 units. The activation is
    always gated (as in TERACON's and HAT's code). With `gate_conv_outputs` the convolution
    output is gated too, before the LayerNorm, so that the LayerNorm statistics of a task
    only see that task's units (variant HAT+lngate, for exact protection; see methods/hat.py).
    """
    if any(block.pre_ln for block in encoder.blocks):
        raise BenchError("gated methods (HAT, TERACON) gate the conv units after their ReLU: "
                         "they need backbone.block=post_ln")
    layers = []
    for block in encoder.blocks:
        for conv, act in (("conv1", "act1"), ("conv2", "act2")):
            gates = [UnitGate(getattr(block, act))]
            setattr(block, act, gates[0])
            if gate_conv_outputs:
                gates.append(UnitGate(getattr(block, conv)))
                setattr(block, conv, gates[-1])
            layers.append(gates)
    return layers


def gated_layers(encoder: NextItNet) -> list[list[UnitGate]]:
    """The gates installed in `encoder`, grouped per gated layer (rebuilt, never stored)."""
    layers = []
    for block in encoder.blocks:
        for conv, act in (("conv1", "act1"), ("conv2", "act2")):
            gates = [m for m in (getattr(block, act), getattr(block, conv)) if isinstance(m, UnitGate)]
            layers.append(gates)
    return layers


@contextmanager
def masked(encoder: NextItNet, masks: torch.Tensor):
    """Run `encoder` with `masks[l]` (shape (n_layers, d)) on gated layer l."""
    layers = gated_layers(encoder)
    if len(layers) != len(masks):
        raise ValueError(f"{len(masks)} masks for {len(layers)} gated layers")
    try:
        for gates, mask in zip(layers, masks):
            for gate in gates:
                gate.mask = mask
        yield encoder
    finally:
        for gates in layers:
            for gate in gates:
                gate.mask = None


def n_gated_layers(encoder: NextItNet) -> int:
    return 2 * len(encoder.blocks)


def annealed_s(progress: float, smax: float) -> float:
    """HAT's schedule (Serrà et al., eq. 3): s = 1/smax + (smax - 1/smax)(b-1)/(B-1).

    `progress` = (b-1)/(B-1) is what the training loop reports at each batch start.
    """
    return 1.0 / smax + (smax - 1.0 / smax) * min(max(progress, 0.0), 1.0)


class Annealing:
    """The current s, advanced by the training loop's batch hook (picklable, no closures)."""

    def __init__(self, smax: float):
        self.smax = smax
        self.s = smax

    def __call__(self, progress: float) -> None:
        self.s = annealed_s(progress, self.smax)


def check_finite(value: float, name: str) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
