"""Task-gated units: what HAT and TERACON share, on any backbone with gate sites.

Both methods multiply the output units of every *unit layer* the backbone names
(bench/engine/backbone.py `unit_layers`: NextItNet's conv channels after their ReLU,
SASRec's attention and feed-forward outputs) by a per-task mask in [0, 1]. `UnitGate` is
the hook installed on a layer's gate sites; it multiplies by the mask set for the current
forward pass; the mask is set by `masked` and always cleared afterwards, so no tensor (or
autograd graph) is left on the module when it is pickled.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from torch import nn

from bench.engine.backbone import UnitLayer, missing_site, require_sites


class UnitGate(nn.Module):
    """`x * mask`; the mask broadcasts over (B, L, units)."""

    def __init__(self):
        super().__init__()
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            raise RuntimeError("UnitGate used outside `masked(...)`: no task mask is set")
        return x * self.mask


def unit_layers(encoder: nn.Module, method: str, gate_conv_outputs: bool = False) -> list[UnitLayer]:
    """The encoder's unit layers, or the one missing-site error naming `method`."""
    kind = "norm_gates" if gate_conv_outputs else "gates"
    layers = require_sites(encoder, kind, method)
    if len(layers) != len(encoder.unit_layers()):  # some layers cannot be gated before their norm
        raise missing_site(method, type(encoder), kind)
    if len({layer.units for layer in layers}) != 1:
        raise ValueError(f"{method}: every gated layer must have the same number of units")
    return encoder.unit_layers()


def install_gates(encoder: nn.Module, gate_conv_outputs: bool, method: str = "HAT/TERACON") -> list[list[UnitGate]]:
    """Gate every unit layer of `encoder`; returns, per layer, its gates.

    The sub-layer's output (after its activation) is always gated (as in TERACON's and HAT's
    code). With `gate_conv_outputs` the output before the normalisation is gated too, so that
    the norm statistics of a task only see that task's units (variant HAT+lngate, for exact
    protection; see methods/hat.py).
    """
    layers = []
    for layer in unit_layers(encoder, method, gate_conv_outputs):
        gates = [UnitGate()]
        layer.output.hook = gates[0]
        if gate_conv_outputs:
            gates.append(UnitGate())
            layer.before_norm.hook = gates[-1]
        layers.append(gates)
    return layers


def gated_layers(encoder: nn.Module) -> list[list[UnitGate]]:
    """The gates installed in `encoder`, grouped per unit layer (rebuilt, never stored)."""
    return [[site.hook for site in (layer.output, layer.before_norm)
             if isinstance(getattr(site, "hook", None), UnitGate)]
            for layer in encoder.unit_layers()]


@contextmanager
def masked(encoder: nn.Module, masks: torch.Tensor):
    """Run `encoder` with `masks[l]` (shape (n_layers, units)) on unit layer l."""
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


def n_gated_layers(encoder: nn.Module) -> int:
    return len(encoder.unit_layers())


def n_units(encoder: nn.Module) -> int:
    """Units per gated layer (the width of HAT's and TERACON's per-layer task embeddings)."""
    return encoder.unit_layers()[0].units


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
