"""The backbone contract: what a continual method may use of a sequence encoder.

A backbone (one file in `backbones/`, registered with `@BACKBONES.register("name")`, or a
plugin file) subclasses `Backbone`. A method may use only what is named here:

- `embedding`: the item table (row 0 = padding), also the tied next-item softmax;
- `forward(inputs)`: `(B, L)` item ids, left-padded with 0 -> `(B, L, d)` causal outputs
  (position t sees positions <= t only);
- four kinds of *site*, each a list the backbone builds on demand (empty = not supported):
  * `weight_sites()` ("weights"): layers whose `weight` a method may mask or prune
    (Conure). Each is a `MaskableWeight`: its forward uses `effective_weight()`, which passes
    the weight through the `weight_hook` a method installs.
  * `unit_layers()` ("gates"): groups of `units` output units a method may gate (HAT,
    TERACON), each with a `GateSite` after the sub-layer's activation, optionally one before
    its normalisation ("norm_gates", HAT+lngate), and the parameters that produce the units
    (for HAT's gradient attenuation).
  * `patch_sites()` ("patches"): `PatchSite`s around sub-layers where a patch/adapter adds
    `hook(input, output)` to the output (PeterRec).
  * `norm_slots()` ("norms"): the normalisation layers a method may replace by a
    task-specific one (Conure+tasknorms, PeterRec).

Sites are identity until a method installs a hook, so a backbone without methods computes
exactly its plain forward pass. A method that needs a site a backbone lacks fails with
`missing_site` before any training (bench/experiments/runner.py preflight).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import BackboneConfig
from bench.errors import BenchError

SITE_KINDS = {
    "weights": "weight matrices a method may mask or prune",
    "gates": "sub-layer outputs a method may gate",
    "norm_gates": "sub-layer outputs a method may gate before their normalisation",
    "patches": "places a patch/adapter may be inserted",
    "norms": "normalisation layers that may be made task-specific",
}


class UserEncoder(nn.Module):
    """Marker base class: one instance is one stored user encoder (#B in the tables)."""

    embedding: nn.Embedding

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, L, d)
        raise NotImplementedError


@dataclass
class NoBackboneOptions:
    """A backbone without options of its own (beyond BackboneConfig's shared fields)."""


class MaskableWeight:
    """Mixin for a layer whose weight a method may mask or prune (a *weight site*).

    The layer's forward must use `effective_weight()`; a method sets `weight_hook` to a module
    mapping the weight to the weight it wants used (Conure: its ownership mask). The layer
    keeps `weight` (and `bias`, or None) as ordinary parameters.
    """

    weight: nn.Parameter
    bias: nn.Parameter | None

    def init_hook(self) -> None:
        self.weight_hook = None

    def effective_weight(self) -> torch.Tensor:
        hook = self.weight_hook
        return self.weight if hook is None else hook(self.weight)


class MaskableLinear(nn.Linear, MaskableWeight):
    """`nn.Linear` as a weight site (weight `[out, in]`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.init_hook()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class GateSite(nn.Module):
    """Identity, or `hook(x)` once a method installs one (a gate on a sub-layer's output)."""

    def __init__(self):
        super().__init__()
        self.hook: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.hook is None else self.hook(x)


class PatchSite(nn.Module):
    """`output`, or `hook(input, output)` once a method installs one, around one sub-layer.

    `input` is what the sub-layer read, `output` what it produced (same width `channels`);
    PeterRec's hook returns `output + patch(input)` (parallel) or `output + patch(output)`.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.hook: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def forward(self, inputs: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output if self.hook is None else self.hook(inputs, output)


@dataclass
class UnitLayer:
    """`units` output units that share one mask value each (HAT's and TERACON's "layer").

    `weights`: (parameter, index of the unit layer feeding it, or None when its input is not
    gated); output units on axis 0, input units on axis 1. `unit_params`: per-unit parameters
    (biases, norm gain/shift). HAT attenuates both by the masks; any other backbone parameter
    produces units no gate covers, i.e. units every task uses.
    """

    units: int
    output: GateSite
    before_norm: GateSite | None = None
    weights: list[tuple[nn.Parameter, int | None]] = field(default_factory=list)
    unit_params: list[nn.Parameter] = field(default_factory=list)


@dataclass
class NormSlot:
    """A normalisation layer, as `owner.<name>`, that a method may swap for a task-specific one."""

    owner: nn.Module
    name: str

    def get(self) -> nn.Module:
        return getattr(self.owner, self.name)

    def set(self, module: nn.Module) -> None:
        setattr(self.owner, self.name, module)


class Backbone(UserEncoder):
    """A sequence encoder that continual methods can act on (see the module docstring).

    Subclasses set `Options` (a dataclass of their own options, read from
    `backbone.options`, with the released defaults), `config_fields` (the BackboneConfig
    fields they read; the others do not change the model, so they are left out of T1 keys)
    and implement `forward` and whichever sites they support.
    """

    Options: ClassVar[type] = NoBackboneOptions
    config_fields: ClassVar[tuple[str, ...]] = ("embedding_dim",)
    #: why a site kind is missing on this backbone, for the error (e.g. "needs block=post_ln")
    site_notes: ClassVar[dict[str, str]] = {}

    def weight_sites(self) -> list[MaskableWeight]:
        return []

    def unit_layers(self) -> list[UnitLayer]:
        return []

    def patch_sites(self) -> list[PatchSite]:
        return []

    def norm_slots(self) -> list[NormSlot]:
        return []

    def sites(self, kind: str) -> list:
        """The sites of one kind (names in SITE_KINDS)."""
        if kind == "weights":
            return self.weight_sites()
        if kind == "gates":
            return self.unit_layers()
        if kind == "norm_gates":
            return [layer for layer in self.unit_layers() if layer.before_norm is not None]
        if kind == "patches":
            return self.patch_sites()
        if kind == "norms":
            return self.norm_slots()
        raise ValueError(f"unknown site kind {kind!r}; choose from {', '.join(SITE_KINDS)}")


def backbone_class(config: BackboneConfig) -> type[Backbone]:
    from bench.registry import BACKBONES

    return BACKBONES.get(config.name)


def build_encoder(n_items: int, config: BackboneConfig) -> Backbone:
    """A fresh encoder of the configured backbone (`backbone.name`)."""
    return backbone_class(config)(n_items, config)


def backbone_options(cls: type[Backbone], config: BackboneConfig):
    """The backbone's own options from `backbone.options`, checked against its dataclass."""
    from bench.config import from_dict

    return from_dict(cls.Options, config.options, f"backbone.options ({config.name})")


def canonical(config: BackboneConfig) -> BackboneConfig:
    """`config` with the fields its backbone does not read reset to their defaults: two configs
    that build the same model give the same T1 model (Conure's `block` on SASRec)."""
    import dataclasses

    read = set(backbone_class(config).config_fields) | {"name", "options"}
    defaults = BackboneConfig()
    return dataclasses.replace(config, **{f.name: getattr(defaults, f.name)
                                          for f in dataclasses.fields(config) if f.name not in read})


def missing_site(method: str, backbone: type, kind: str) -> BenchError:
    """The one error for a method that needs a site kind the backbone does not have."""
    name = getattr(backbone, "registered_name", backbone.__name__)
    note = getattr(backbone, "site_notes", {}).get(kind, "")
    return BenchError(f"method {method} needs the backbone's '{kind}' sites ({SITE_KINDS[kind]}), "
                      f"which backbone '{name}' does not have" + (f"; {note}" if note else ""))


def require_sites(encoder: nn.Module, kind: str, method: str) -> list:
    """`encoder`'s sites of `kind`, or `missing_site`'s error when it has none."""
    found = encoder.sites(kind) if isinstance(encoder, Backbone) else []
    if not found:
        raise missing_site(method, type(encoder), kind)
    return found


def check_sites(method: str, kinds: tuple[str, ...], config: BackboneConfig, n_items: int = 2) -> None:
    """Before any training: build the backbone on the meta device (no memory) and check it
    has every site kind `method` needs."""
    if not kinds:
        return
    with torch.device("meta"):
        encoder = build_encoder(n_items, config)
    for kind in kinds:
        require_sites(encoder, kind, method)


def item_embedding(n_items: int, dim: int) -> nn.Embedding:
    """Item table with row 0 reserved for padding (kept at zero)."""
    embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
    nn.init.normal_(embedding.weight, std=0.02)
    with torch.no_grad():
        embedding.weight[0].zero_()
    return embedding


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


def __getattr__(name: str):
    """`NextItNet` and its layers moved to backbones/nextitnet.py; old imports keep working."""
    if name in ("NextItNet", "CausalConv1d", "ResidualBlock"):
        from bench.backbones import nextitnet

        return getattr(nextitnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
