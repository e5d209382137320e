"""PeterRec (Yuan et al., SIGIR 2020): parameter-efficient transfer with model patches.

What the paper specifies, and what this module does:
- The NextItNet trained on T1 (item embeddings included) is frozen for good; T1 is served
  by it unchanged.
- Every later task gets small *model patches*: bottleneck residual blocks
  d -> k -> d (ReLU in between) inserted at every dilated convolution of every residual
  block, either *serially* (on the convolution's output: h + patch(h)) or in *parallel*
  (beside it: conv(x) + patch(x)). The paper reports parallel insertion as the better of
  the two, hence the default. Patches start near identity (all weights N(0, 0.02), biases 0,
  as the released code initialises them), so a new task starts from the T1 representation.
- The task's layer norms are fine-tuned as well (a private copy of T1's per task), and the
  task has its own new output layer.
- Old tasks are scored with their own patches, norms and head, over the untouched
  backbone, so their scores never change: #B = 1 and each task adds a few % parameters.

On any backbone (bench/engine/backbone.py) the patches go to the backbone's *patch sites*
and the norms to its *norm sites*: NextItNet's dilated convolutions and LayerNorms; on
SASRec the attention and the feed-forward sub-layer of every block (the patch reads what
the sub-layer reads, the normalised stream, and adds to its output, i.e. in the residual
branch) and every LayerNorm, the final one included. Tenrec's sas4transfer.py inserts one
bottleneck (with its own LayerNorm) on the residual stream after each Transformer block;
PeterRec's paper inserts at every convolution, which is what per-sub-layer sites mirror.

Deviations from the released code (`fajieyuan/SIGIR2020_peterrec`):
- the patch uses ReLU where ops.py (get_mp) uses GELU, and for the parallel variant the
  code adds the patch's own identity skip as well (conv(x) + x + patch(x), ops.py
  peter_2mp_parallel); we follow the paper's figure (parallel branch adds only the patch's
  residual function, so the block is exactly the T1 block when the patch outputs zero).
- both layer norms of every block are fine-tuned per task; PeterRec_cau_parallel.py trains
  only `layer_norm2` (var_list=[softmax, mp, layer_norm2]).
- loss and evaluation are the harness's (full softmax, ranking over every item); the code
  trains with one sampled negative and evaluates against sampled negatives.
- the patch width defaults to d/8 (`bottleneck_dim=0`); ops.py get_mp makes it
  d / (4 * cardinality) with cardinality 1 in PeterRec_cau_parallel.py, i.e. d/4, which
  `--preset paper` sets (bench/presets.py). The default is kept so the published quick-preset
  runs stay comparable; set `--set method_options.PeterRec.bottleneck_dim=16` for d=64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from bench.engine.backbone import build_encoder, make_head, require_sites
from bench.errors import BenchError
from bench.engine.objectives import training_loss
from bench.registry import METHODS
from bench.methods.base import module_key
from bench.methods.task_layers import TaskSwitched, TaskSwitchedMethod, make_norms_task_specific, task_norms

INSERTIONS = ("serial", "parallel")


@dataclass
class PeterRecOptions:
    insertion: Literal["serial", "parallel"] = "parallel"  # "serial" (after each dilated conv) or "parallel" (beside it)
    bottleneck_dim: int = field(default=0, metadata={"min": 0})  # k of the d -> k -> d patch; 0 = embedding_dim // 8
    init_std: float = field(default=0.02, metadata={"min": 0})  # patch weights start near zero, i.e. the block starts near identity

    def validate(self) -> None:
        if self.insertion not in INSERTIONS:
            raise BenchError(f"PeterRec: insertion must be one of {INSERTIONS}, got '{self.insertion}'")
        if self.bottleneck_dim < 0:
            raise BenchError("PeterRec: bottleneck_dim must be >= 0 (0 = embedding_dim // 8)")


class ModelPatch(nn.Module):
    """The residual function of a bottleneck block: d -> k -> ReLU -> d."""

    def __init__(self, channels: int, bottleneck: int, init_std: float):
        super().__init__()
        self.down = nn.Linear(channels, bottleneck)
        self.up = nn.Linear(bottleneck, channels)
        for layer in (self.down, self.up):
            nn.init.normal_(layer.weight, std=init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


class TaskPatches(TaskSwitched):
    """The hook PeterRec installs on a patch site: the active task's patch (none for T1)."""

    def __init__(self, channels: int, insertion: str):
        super().__init__()
        self.channels = channels
        self.insertion = insertion
        self.patches = nn.ModuleDict()
        self.active: str | None = None

    def add_task(self, key: str, bottleneck: int, init_std: float, device: torch.device) -> ModelPatch:
        patch = ModelPatch(self.channels, bottleneck, init_std).to(device)
        self.patches[key] = patch
        return patch

    def select(self, key: str, position: int) -> None:
        self.active = key

    def forward(self, inputs: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.active not in self.patches:  # the task the backbone was trained on
            return out
        patch = self.patches[self.active]
        if self.insertion == "serial":
            return out + patch(out)
        return out + patch(inputs)


@METHODS.register("PeterRec")
class PeterRec(TaskSwitchedMethod):
    Options = PeterRecOptions
    paper = "PeterRec (Yuan et al., SIGIR 2020)"
    sites = ("patches", "norms")
    mechanisms = {
        "nextitnet": "a bottleneck patch at every dilated convolution, task-specific LayerNorms",
        "sasrec": "a bottleneck patch at every attention and feed-forward sub-layer (residual branch), task-specific LayerNorms",
    }

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "insertion": trial.suggest_categorical("insertion", ["serial", "parallel"]),
                "bottleneck_dim": trial.suggest_categorical("bottleneck_dim", [0, 4, 16, 32])}

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.first_key: str | None = None  # the task the frozen backbone was trained on

    # --- structure -------------------------------------------------------------------------
    def _adopt_backbone(self, task, context) -> None:
        """Take the shared T1 model, freeze it, and make its convs and norms task-switched."""
        encoder, head = context.pretrained(task)
        encoder.requires_grad_(False)
        head.requires_grad_(False)
        self._install_backbone(task, encoder, head)

    def _install_backbone(self, task, encoder, head) -> None:
        key = module_key(task)
        for site in require_sites(encoder, "patches", "PeterRec"):
            site.hook = TaskPatches(site.channels, self.options.insertion)
        make_norms_task_specific(encoder, key, "PeterRec")
        self.encoder = encoder
        self.first_key = key
        self.heads[key] = head

    def patched_convs(self) -> list[TaskPatches]:
        """The patch hooks at the backbone's patch sites (NextItNet: every dilated conv)."""
        return [site.hook for site in self.encoder.patch_sites() if isinstance(site.hook, TaskPatches)]

    def _add_task_modules(self, task, context) -> list[nn.Parameter]:
        """Patches, layer-norm copies and a head for `task`; returns the parameters to train."""
        key = module_key(task)
        bottleneck = self.options.bottleneck_dim or max(1, context.backbone.embedding_dim // 8)
        params: list[nn.Parameter] = []
        for conv in self.patched_convs():
            params += conv.add_task(key, bottleneck, self.options.init_std, self.encoder.embedding.weight.device).parameters()
        for norm in task_norms(self.encoder):
            params += norm.add_task(key, source=norm.norms[self.first_key]).parameters()
        head = make_head(task, self.encoder).to(context.device)
        self.heads[key] = head
        return params + list(head.parameters())

    def restore(self, learnt, context) -> None:
        """T1's encoder made task-switched, then each later task's patches, norms and head."""
        if not learnt:
            return
        first, *later = learnt
        encoder = build_encoder(context.n_items, context.backbone).to(context.device)
        self._install_backbone(first, encoder, make_head(first, encoder).to(context.device))
        for position, task in enumerate(learnt, start=1):
            self.positions[module_key(task)] = position
        for task in later:
            self._add_task_modules(task, context)

    # --- the runner's interface ------------------------------------------------------------
    def learn(self, tasks, context) -> None:
        for task in tasks:
            key = module_key(task)
            self.positions[key] = len(self.learned) + 1
            if self.encoder is None:
                self._adopt_backbone(task, context)
            else:
                params = self._add_task_modules(task, context)
                head = self.heads[key]
                state = nn.ModuleList([self.encoder, head])

                def loss_fn(x, y, task=task, head=head):
                    return training_loss(task, self.encode(task, x), head, x, y)

                def score_fn(x, task=task):
                    return self.scores(task, x)

                self.record(context.fit(task, params, loss_fn, score_fn, state,
                                        description=f"PeterRec {task.name}"))
            self.learned.append(task.name)


    # --- accounting --------------------------------------------------------------------------
    def task_parameter_count(self, task) -> int:
        """Parameters added to the backbone for `task`: its patches and layer norms (not the head)."""
        key = module_key(task)
        patches = sum(p.numel() for conv in self.patched_convs() if key in conv.patches
                      for p in conv.patches[key].parameters())
        norms = sum(p.numel() for norm in task_norms(self.encoder) if key in norm.norms
                    for p in norm.norms[key].parameters())
        return patches + norms

    def backbone_parameter_count(self) -> int:
        """The frozen T1 backbone: embeddings, convolutions and T1's layer norms."""
        per_task = {id(p) for norm in task_norms(self.encoder) for key, layer in norm.norms.items()
                    if key != self.first_key for p in layer.parameters()}
        per_task |= {id(p) for conv in self.patched_convs() for p in conv.parameters()}
        return sum(p.numel() for p in self.encoder.parameters() if id(p) not in per_task)

