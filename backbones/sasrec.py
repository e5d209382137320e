"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over item embeddings.

Settings (SASRecOptions, `--set backbone.options.<name>=...`), the paper's unless said:
- `n_blocks` 2 and `n_heads` 1 (paper Sec. IV, "we use two self-attention blocks" and a
  single head; RecBole's sasrec.yaml uses 2 blocks and 2 heads);
- `dropout` 0.2 (the paper's value for ML-1M; 0.5 for its sparse datasets), on the
  embeddings, the attention weights and each sub-layer's output, as the authors' code;
- `norm` "pre_ln": the paper's g(x) = x + Dropout(g(LayerNorm(x))) (eq. 7 and the
  authors' TF code, which also normalises the last block's output); "post_ln" is
  RecBole's sasrec.py (TransformerEncoder: LayerNorm(x + Dropout(g(x)))). Pre-LN is the
  default because the paper states it, and because it keeps the residual stream of a
  continual method's gates and patches free of a norm that would mix units after them;
- the feed-forward is ReLU(x W1 + b1) W2 + b2 of width `ffn_dim` (0 = d, the paper's
  point-wise two-layer network of width d; RecBole uses 256 and GELU);
- item embeddings are scaled by sqrt(d) before the learned positions are added (the
  authors' code: embedding(..., scale=True)); positions are learned, one per index
  0..`max_len`-1 of the left-padded window (200 for ML-1M in the paper, 50 otherwise);
- LayerNorm eps `norm_eps` 1e-8 (the authors' `normalize`); weights keep PyTorch's default
  initialisation; item embedding and positions N(0, 0.02), padding row zero.

Causality and padding: attention runs through torch.nn.functional.scaled_dot_product_attention
(flash / memory-efficient kernels on CUDA). A batch without padding uses `is_causal=True`; a
left-padded batch passes the causal mask with the padding keys removed (the authors' code
masks padding keys too), each position keeping itself so that a padding query is never left
without keys (no NaN); padding positions are zeroed after the embedding and every block,
as the authors' code does with its timeline mask. Position t never sees t' > t.

Sites (bench/engine/backbone.py), per block:
- weights: the query, key, value and output projections and both feed-forward matrices
  (`[out, in]`; what Conure prunes and freezes, unlike Tenrec's sas4life.py, whose
  name-based selection prunes only LayerNorms);
- gates: two unit layers of d units, the attention output (after W_o and dropout) and the
  feed-forward output (after W2 and dropout), i.e. each sub-layer's contribution to the
  residual stream (HAT/TERACON); no `norm_gates` (no norm sits between a sub-layer and its
  gate);
- patches: around the attention and the feed-forward sub-layer, in the residual branch
  (input = the normalised stream the sub-layer reads; PeterRec; Tenrec's sas4transfer.py
  adds its bottleneck on the residual stream after each block);
- norms: both LayerNorms of every block and the final one (pre-LN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import BackboneConfig
from bench.engine.backbone import (Backbone, GateSite, MaskableLinear, NormSlot, PatchSite, UnitLayer,
                                   backbone_options, item_embedding)
from bench.errors import BenchError
from bench.registry import BACKBONES


@dataclass
class SASRecOptions:
    n_blocks: int = field(default=2, metadata={"min": 1})  # paper: 2 self-attention blocks
    n_heads: int = field(default=1, metadata={"min": 1})  # paper: 1 head (RecBole: 2)
    dropout: float = field(default=0.2, metadata={"min": 0, "max": 1})  # paper: 0.2 on ML-1M, 0.5 on sparse data
    max_len: int = field(default=200, metadata={"min": 1})  # learned positions (paper: n = 200 on ML-1M)
    norm: Literal["pre_ln", "post_ln"] = "pre_ln"  # paper/authors' code; "post_ln" = RecBole
    ffn_dim: int = field(default=0, metadata={"min": 0})  # feed-forward width; 0 = embedding_dim (paper)
    norm_eps: float = field(default=1e-8, metadata={"gt": 0})  # the authors' normalize()


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with separate (maskable) projections."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise BenchError(f"backbone sasrec: embedding_dim {d} is not divisible by n_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.query, self.key, self.value, self.out = (MaskableLinear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, L, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, L, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        p = self.dropout if self.training else 0.0
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=mask is None)
        return self.out(h.transpose(1, 2).reshape(B, L, d))


class FeedForward(nn.Module):
    def __init__(self, d: int, width: int, dropout: float):
        super().__init__()
        self.inner, self.outer = MaskableLinear(d, width), MaskableLinear(width, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.dropout(torch.relu(self.inner(x))))


class SASRecBlock(nn.Module):
    """Self-attention then feed-forward, each with its residual (pre- or post-LN) and sites."""

    def __init__(self, d: int, options: SASRecOptions):
        super().__init__()
        self.pre_ln = options.norm == "pre_ln"
        self.attention = CausalSelfAttention(d, options.n_heads, options.dropout)
        self.feed_forward = FeedForward(d, options.ffn_dim or d, options.dropout)
        self.attention_norm = nn.LayerNorm(d, eps=options.norm_eps)
        self.feed_forward_norm = nn.LayerNorm(d, eps=options.norm_eps)
        self.dropout = nn.Dropout(options.dropout)
        self.attention_patch, self.feed_forward_patch = PatchSite(d), PatchSite(d)
        self.attention_gate, self.feed_forward_gate = GateSite(), GateSite()

    def _branch(self, x, norm, layer, patch, gate, *args):
        h = norm(x) if self.pre_ln else x
        out = gate(patch(h, self.dropout(layer(h, *args))))
        return x + out if self.pre_ln else norm(x + out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self._branch(x, self.attention_norm, self.attention, self.attention_patch, self.attention_gate, mask)
        return self._branch(x, self.feed_forward_norm, self.feed_forward, self.feed_forward_patch,
                            self.feed_forward_gate)


@BACKBONES.register("sasrec")
class SASRec(Backbone):
    Options = SASRecOptions
    config_fields = ("embedding_dim",)
    site_notes = {"norm_gates": "SASRec has no norm between a sub-layer and its gate"}

    def __init__(self, n_items: int, config: BackboneConfig):
        super().__init__()
        options = backbone_options(SASRec, config)
        d = config.embedding_dim
        self.max_len, self.scale = options.max_len, d ** 0.5
        self.embedding = item_embedding(n_items, d)
        self.positions = nn.Embedding(options.max_len, d)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.dropout = nn.Dropout(options.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(d, options) for _ in range(options.n_blocks))
        self.final_norm = nn.LayerNorm(d, eps=options.norm_eps) if options.norm == "pre_ln" else nn.Identity()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        B, L = inputs.shape
        if L > self.max_len:
            raise BenchError(f"backbone sasrec: sequences of length {L} exceed max_len {self.max_len}; "
                             f"set --set backbone.options.max_len={L}")
        keep = (inputs != 0).unsqueeze(-1)
        positions = torch.arange(L, device=inputs.device)
        x = self.dropout(self.embedding(inputs) * self.scale + self.positions(positions)) * keep
        mask = self.attention_mask(inputs)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)

    @staticmethod
    def attention_mask(inputs: torch.Tensor) -> torch.Tensor | None:
        """None (is_causal) for a batch without padding; else (B, 1, L, L) True where a query may
        attend: causal, padding keys removed, and the diagonal always kept."""
        padded = inputs == 0
        if not bool(padded.any()):
            return None
        L = inputs.shape[1]
        causal = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()
        allowed = causal & ~padded[:, None, :]
        allowed |= torch.eye(L, dtype=torch.bool, device=inputs.device)
        return allowed.unsqueeze(1)

    # --- sites ---------------------------------------------------------------------------
    def weight_sites(self) -> list[MaskableLinear]:
        sites = []
        for block in self.blocks:
            attention, ffn = block.attention, block.feed_forward
            sites += [attention.query, attention.key, attention.value, attention.out, ffn.inner, ffn.outer]
        return sites

    def unit_layers(self) -> list[UnitLayer]:
        """Per block: the attention output (W_o's units) and the feed-forward output (W2's units).
        Their inputs (attention heads, feed-forward hidden units) are not gated."""
        layers = []
        for block in self.blocks:
            for linear, gate in ((block.attention.out, block.attention_gate),
                                 (block.feed_forward.outer, block.feed_forward_gate)):
                per_unit = [linear.bias] if linear.bias is not None else []
                layers.append(UnitLayer(linear.out_features, gate, None, [(linear.weight, None)], per_unit))
        return layers

    def patch_sites(self) -> list[PatchSite]:
        return [site for block in self.blocks for site in (block.attention_patch, block.feed_forward_patch)]

    def norm_slots(self) -> list[NormSlot]:
        slots = [NormSlot(block, name) for block in self.blocks for name in ("attention_norm", "feed_forward_norm")]
        if isinstance(self.final_norm, nn.LayerNorm):
            slots.append(NormSlot(self, "final_norm"))
        return slots
