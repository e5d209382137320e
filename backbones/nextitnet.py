"""NextItNet (Yuan et al., WSDM 2019), the backbone of Conure, PeterRec and TERACON's code.

Stacked residual blocks of two dilated causal 1-D convolutions over item embeddings
(kernel `kernel_size`, the second with twice the dilation), LayerNorm and ReLU, plus the
input. Shape from BackboneConfig (`embedding_dim`, `dilations`, `kernel_size`, `dropout`,
`block`, `conv_bias`); the released code's size is d=256 with dilations [1,4]x4
(`--preset paper`). Sites (bench/engine/backbone.py):
- weights: both convolutions of every block (`[out, in, k]`; Conure prunes them);
- gates: two unit layers per block, each conv's d output channels, gated after its ReLU
  (HAT/TERACON) and, for `norm_gates`, between the conv and its LayerNorm (HAT+lngate);
  only with the post-LN block, where the ReLU output is the block's unit output;
- patches: around each convolution (PeterRec's patches, serial or parallel);
- norms: both LayerNorms of every block.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import BackboneConfig
from bench.engine.backbone import (Backbone, GateSite, MaskableWeight, NormSlot, PatchSite, UnitLayer,
                                   item_embedding)
from bench.registry import BACKBONES

BLOCKS = ("post_ln", "pre_ln")


class CausalConv1d(nn.Conv1d, MaskableWeight):
    """Dilated convolution over (B, L, d) where position t only sees positions <= t."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, bias: bool = True):
        super().__init__(channels, channels, kernel_size, dilation=dilation, bias=bias)
        self.left_padding = (kernel_size - 1) * dilation
        self.init_hook()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.transpose(1, 2), (self.left_padding, 0))
        out = F.conv1d(x, self.effective_weight(), self.bias, dilation=self.dilation)
        return out.transpose(1, 2)


class ResidualBlock(nn.Module):
    """Two dilated convs (the second with 2x dilation), LayerNorm and ReLU, plus the input.

    post_ln: conv -> LN -> ReLU -> conv -> LN -> ReLU (NextItNet, TERACON/Tenrec code);
    pre_ln: LN -> ReLU -> conv -> LN -> ReLU -> conv (Conure's code).
    Every sub-layer call goes through a site (identity until a method installs a hook).
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int, dropout: float = 0.0,
                 block: str = "post_ln", bias: bool = True):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"block must be 'post_ln' or 'pre_ln', got {block!r}")
        self.pre_ln = block == "pre_ln"
        self.conv1 = CausalConv1d(channels, kernel_size, dilation, bias)
        self.norm1 = nn.LayerNorm(channels)
        self.act1 = nn.ReLU()
        self.conv2 = CausalConv1d(channels, kernel_size, 2 * dilation, bias)
        self.norm2 = nn.LayerNorm(channels)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.patch1, self.patch2 = PatchSite(channels), PatchSite(channels)
        self.gate1, self.gate2 = GateSite(), GateSite()  # after each ReLU
        self.prenorm_gate1, self.prenorm_gate2 = GateSite(), GateSite()  # conv -> here -> LN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            h = self.act1(self.norm1(x))
            h = self.patch1(h, self.conv1(h))
            h = self.act2(self.norm2(h))
            h = self.patch2(h, self.conv2(h))
        else:
            h = self.gate1(self.act1(self.norm1(self.prenorm_gate1(self.patch1(x, self.conv1(x))))))
            h = self.gate2(self.act2(self.norm2(self.prenorm_gate2(self.patch2(h, self.conv2(h))))))
        return x + self.dropout(h)


@BACKBONES.register("nextitnet")
class NextItNet(Backbone):
    config_fields = ("embedding_dim", "dilations", "kernel_size", "dropout", "block", "conv_bias")
    site_notes = {"gates": "NextItNet's gate sites need backbone.block=post_ln",
                  "norm_gates": "NextItNet's gate sites need backbone.block=post_ln"}

    def __init__(self, n_items: int, config: BackboneConfig):
        super().__init__()
        d = config.embedding_dim
        self.embedding = item_embedding(n_items, d)
        self.blocks = nn.ModuleList(
            ResidualBlock(d, dilation, config.kernel_size, config.dropout, config.block, config.conv_bias)
            for dilation in config.dilations
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = self.embedding(inputs)
        for block in self.blocks:
            h = block(h)
        return h

    # --- sites ---------------------------------------------------------------------------
    def weight_sites(self) -> list[CausalConv1d]:
        return [conv for block in self.blocks for conv in (block.conv1, block.conv2)]

    def unit_layers(self) -> list[UnitLayer]:
        """Layer 2b: block b's conv1 units (input: the ungated residual stream); layer 2b+1:
        its conv2 units (input: layer 2b)."""
        if any(block.pre_ln for block in self.blocks):
            return []
        layers = []
        for block in self.blocks:
            for conv, norm, gate, prenorm in ((block.conv1, block.norm1, block.gate1, block.prenorm_gate1),
                                              (block.conv2, block.norm2, block.gate2, block.prenorm_gate2)):
                source = None if conv is block.conv1 else len(layers) - 1
                per_unit = [p for p in (conv.bias, getattr(norm, "weight", None), getattr(norm, "bias", None))
                            if isinstance(p, nn.Parameter)]
                layers.append(UnitLayer(conv.out_channels, gate, prenorm, [(conv.weight, source)], per_unit))
        return layers

    def patch_sites(self) -> list[PatchSite]:
        return [site for block in self.blocks for site in (block.patch1, block.patch2)]

    def norm_slots(self) -> list[NormSlot]:
        return [NormSlot(block, name) for block in self.blocks for name in ("norm1", "norm2")]
