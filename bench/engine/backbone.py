"""NextItNet (Yuan et al., WSDM 2019), the shared backbone of Conure, PeterRec and TERACON.

Stacked residual blocks of two dilated causal 1-D convolutions over item embeddings.
Every block exposes its sub-layers (`conv1, norm1, act1, conv2, norm2, act2`) as
attributes so that continual methods can swap in task-aware versions of them
(masked weights for Conure, gated units for HAT/TERACON, patches for PeterRec)
without copying the forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import BackboneConfig


class UserEncoder(nn.Module):
    """Marker base class: one instance is one stored backbone (#B in the tables)."""

    embedding: nn.Embedding

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, d)
        raise NotImplementedError


def item_embedding(n_items: int, dim: int) -> nn.Embedding:
    """Item table with row 0 reserved for padding (kept at zero)."""
    embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
    nn.init.normal_(embedding.weight, std=0.02)
    with torch.no_grad():
        embedding.weight[0].zero_()
    return embedding


class CausalConv1d(nn.Conv1d):
    """Dilated convolution over (B, L, d) where position t only sees positions <= t."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, bias: bool = True):
        super().__init__(channels, channels, kernel_size, dilation=dilation, bias=bias)
        self.left_padding = (kernel_size - 1) * dilation

    def effective_weight(self) -> torch.Tensor:
        """Hook for methods that mask or prune weights (Conure)."""
        return self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.transpose(1, 2), (self.left_padding, 0))
        out = F.conv1d(x, self.effective_weight(), self.bias, dilation=self.dilation)
        return out.transpose(1, 2)


class ResidualBlock(nn.Module):
    """Two dilated convs (the second with 2x dilation), LayerNorm and ReLU, plus the input.

    post_ln: conv -> LN -> ReLU -> conv -> LN -> ReLU (NextItNet, TERACON/Tenrec code);
    pre_ln: LN -> ReLU -> conv -> LN -> ReLU -> conv (Conure's code).
    """

    def __init__(self, channels: int, dilation: int, kernel_size: int, dropout: float = 0.0,
                 block: str = "post_ln", bias: bool = True):
        super().__init__()
        if block not in ("post_ln", "pre_ln"):
            raise ValueError(f"block must be 'post_ln' or 'pre_ln', got {block!r}")
        self.pre_ln = block == "pre_ln"
        self.conv1 = CausalConv1d(channels, kernel_size, dilation, bias)
        self.norm1 = nn.LayerNorm(channels)
        self.act1 = nn.ReLU()
        self.conv2 = CausalConv1d(channels, kernel_size, 2 * dilation, bias)
        self.norm2 = nn.LayerNorm(channels)
        self.act2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_ln:
            h = self.conv1(self.act1(self.norm1(x)))
            h = self.conv2(self.act2(self.norm2(h)))
        else:
            h = self.act1(self.norm1(self.conv1(x)))
            h = self.act2(self.norm2(self.conv2(h)))
        return x + self.dropout(h)

    def sublayers(self) -> list[tuple[str, nn.Module]]:
        return [(name, getattr(self, name)) for name in ("conv1", "norm1", "act1", "conv2", "norm2", "act2")]


class NextItNet(UserEncoder):
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


class MeanPoolEncoder(UserEncoder):
    """The DNN baseline's encoder: causal mean of item embeddings followed by an MLP.

    Position t averages items up to t, so the same model serves next-item prediction.
    """

    def __init__(self, n_items: int, config: BackboneConfig):
        super().__init__()
        d = config.embedding_dim
        self.embedding = item_embedding(n_items, d)
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d), nn.ReLU())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        embedded = self.embedding(inputs)
        counts = (inputs > 0).cumsum(dim=1).clamp(min=1).unsqueeze(-1)
        return self.mlp(embedded.cumsum(dim=1) / counts)


class TiedItemHead(nn.Module):
    """Next-item softmax whose weights are the encoder's item embedding table (plus a bias)."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.embedding = embedding
        self.bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.embedding.weight, self.bias)  # one (rows x items) allocation, not two


def make_head(task, encoder: UserEncoder) -> nn.Module:
    """The task's output layer: tied item softmax for next-item, a new linear softmax otherwise."""
    from bench.engine.tasks import TaskKind

    if task.kind is TaskKind.NEXT_ITEM:
        return TiedItemHead(encoder.embedding)
    return nn.Linear(encoder.embedding.embedding_dim, task.output_size)
