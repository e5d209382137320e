"""Conure (Yuan et al., SIGIR 2021): continual user representation by iterative pruning.

What the paper (and its released code, `fajieyuan/SIGIR2021_Conure`) specifies, and what
this module does:
- Block: the one the code executes, pre-LN: LN -> ReLU -> conv, LN -> ReLU -> conv(2x
  dilation), plus x (ops.py nextitnet_residual_block_withmask_pre_beforeln / _fine_beforeln);
  conv biases fixed at 0, never trained (ops.py conv1d_pre/conv1d_fine: trainable=False).
  Conure builds this NextItNet itself (`block`, `conv_bias`); the run's T1 model of the other
  methods is the post-LN NextItNet of TERACON/Tenrec.
- T1: train that NextItNet on T1 (conure_tp_t1.py; trained once per run and backbone through
  the T1 cache), then prune the lowest-magnitude fraction `prune_ratio` (0.7, the
  code's `maskp_task*`) of the weights of every dilated convolution, separately per
  convolution, and retrain the kept ones with the head (conure_ret_t1.py var_list=[weight,
  softmax]: embeddings and layer norms are left as T1 trained them).
- Task k > 1: the pruned (free) weights are trained for task k while the weights owned by
  tasks 1..k-1 stay frozen but are still used in the forward pass; then `prune_ratio` of
  the weights task k claimed are released again, and the kept ones are retrained
  (conure_tp_t*.py / conure_ret_t*.py var_list=[softmax, weight]).
- Layer norms: T1's serve every task and are frozen after T1 (the blocks use
  `<taskID_1st>_layer_norm1/2` for every task). Item embeddings are trained on T1 only.
- Ownership is one small integer per convolution weight (0 = free, k = owned by the task
  learnt k-th): the per-task binary masks of the paper, stored as one tensor. Task k is
  scored with exactly the weights owned by tasks 1..k, so its scores never change later.
  Each task has its own output layer.
- Conure- (the paper's ablation without pruning the current task) is the score right after
  a task was trained on all free weights, before its pruning; it is reported as the
  `Conure-` row. For T1 it is the unpruned T1 model.

On any backbone (bench/engine/backbone.py) Conure acts on the backbone's *weight sites*:
NextItNet's dilated convolutions; on SASRec the query, key, value and output projections and
both feed-forward matrices of every block, each pruned separately (per-matrix magnitude
top-k, as per conv in the code) and frozen for later tasks; their biases are trained on T1
and frozen afterwards (Conure+bias's rule), the learned positions and LayerNorms are T1's,
frozen, as the item embedding. This is the mechanism of Conure's Transformer backbone
(paper Table 6) as Tenrec's sas4life.py intends it: that file selects the layers to prune by
the model's name and so, for a model named sas4life, prunes only LayerNorms, and its
attention has no causal mask. `block` and `conv_bias` are NextItNet's fields: on SASRec
they change nothing (its norm placement is `backbone.options.norm`).

Weights released by pruning keep their values (they are only masked out), so the next
task starts from them, as in the released code where masks multiply the weights.
Frozen weights are kept exact twice over: their gradients are zeroed before the optimizer
step (so Adam's moments stay zero) and they are re-assigned from a snapshot after it
(so weight decay, if configured, cannot move them either).

Initialisation (`init`, issue 23): "released" (the default) draws what the released code
draws, and so trains Conure's own T1 model (once per run and backbone, through the T1 cache):
- every weight site truncated normal, sigma 0.02, cut at 2 sigma (TF's
  truncated_normal_initializer), its bias (if any) 0: on NextItNet the convolutions (ops.py
  L630-631 conv1d_pre, L712-713 conv1d_fine); on SASRec the query, key and value projections
  (ops.py L912-923, multihead_attention: weight_Q/K/V truncated normal 0.02, biases constant 0)
  and both feed-forward matrices (the code's Transformer feed-forward is ops.py's conv1d with
  kernel 1, L544-549: truncated normal 0.02, bias 0); the code's attention has no output
  projection, the harness's SASRec has one and it is drawn the same way. SASRec's learned
  positions and LayerNorms keep the backbone's own initialisation (not a weight site);
- item embedding truncated normal, sigma 0.02 (generator_prune_t1.py L13-15); the padding row
  stays 0 as everywhere in the harness;
- T1 softmax untied from the embedding, weights N(0, 0.01), bias 0.1 (generator_prune_t1.py
  L27-28), so T1's retrain moves the softmax as the code's var_list=[weight, softmax] does;
- later tasks' output layers truncated normal, sigma 0.02 (generator_prune.py L17-20; the code
  has no bias there, the harness's Linear keeps one, initialised 0).
"harness" (row `Conure+harnessinit`) is the harness's earlier default: the run's shared
T1 recipe (context.pretrained) on Conure's block (PyTorch's kaiming-uniform conv weights,
std 0.042 at d=64; N(0, 0.02) embedding; tied T1 head) and make_head's PyTorch-default
Linear heads. Results made before issue 23's released init (tests/fixtures) are this row's.
Measured (synthetic, quick preset, 3 seeds, validation split; docs/reproduce-conure.md):
Avg 0.472 +- 0.005 released vs 0.455 +- 0.017 harness (T2-T4 gain; T1 0.722 vs 0.723).

Pruning the embedding too (`prune_embedding`, row `Conure+embprune`, the paper's Table 5):
the item embedding table (the contract's `embedding`) gets an ownership tensor like a weight
site's (one owner per entry, pruned by magnitude over the whole table after each task at the
task's prune ratio), its kept entries frozen and its free ones trained by the next task; T1
(and a tied head) read the entries owned by tasks <= k, so old tasks' scores stay exact. The
released code prunes the convolutions only (generator_prune*.py save_impwei selects variables
named "weight"), so this follows the paper's text: the embedding layer pruned and retrained
like the hidden ones.

Variants (rows `Conure+<name>`, composable, e.g. `Conure+postln+bias+tasknorms`, which was
this module's default before issue 11 apart from T1's retrain also moving the embeddings
and norms):
- `postln`: the run's post-LN NextItNet block; with `bias` and `harnessinit` too it starts
  from the very T1 model the baselines share.
- `bias`: conv biases trained on T1, frozen afterwards (not pruned, as PackNet).
- `tasknorms`: a fresh trainable pair of layer norms per task (gamma 1, beta 0), frozen after
  its task.
- `harnessinit`: the harness's initialisation instead of the released one (above).
- `embprune`: the item embedding pruned and retrained too (above; not a harness addition but
  the paper's Table 5 ablation, so a row of its own rather than the default).

Deviations that remain:
- losses: full-softmax cross-entropy for every task; the code uses a sampled softmax on T1,
  BPR with a popularity negative plus L2 on T2/T3 and BCE with one negative on T4..
  (conure_tp_t2.py ...). With `init="harness"` the T1 head is tied to the embedding, so the
  T1 retrain cannot move the softmax without the embeddings and moves neither (only the
  head's bias).
- schedule: the run's lr, batch size and epochs (code: lr 1e-4, batch 512 and fixed
  iteration counts for T2.., conure_tp_t2.py); LayerNorm eps 1e-5 (ops.py: 1e-8).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.backbone import Backbone, TiedItemHead, build_encoder, canonical, make_head, require_sites
from bench.errors import BenchError
from bench.engine.objectives import evaluation_scores, training_loss
from bench.registry import METHODS
from bench.engine.training import TrainHooks
from bench.engine.tasks import TaskKind
from bench.methods.base import module_key
from bench.methods.task_layers import TaskSwitched, TaskSwitchedMethod, make_norms_task_specific, task_norms

FREE = 0  # ownership value of a weight no task owns
MAX_TASKS = 255  # ownership is stored as uint8


@dataclass
class ConureOptions:
    prune_ratio: float = field(default=0.7, metadata={"min": 0, "max": 1})  # fraction of a task's weights released after training it (code: maskp_task*)
    prune_ratios: list[float] = field(default_factory=list, metadata={"min": 0, "max": 1})  # per task position, overrides prune_ratio
    retrain_epochs: int = field(default=0, metadata={"min": 0})  # epochs of retraining after pruning; 0 = the run's train.epochs
    # The block Conure's code executes: LN -> ReLU -> conv, twice, plus x (ops.py
    # nextitnet_residual_block_withmask_pre_beforeln); "post_ln" = the run's NextItNet block.
    block: Literal["pre_ln", "post_ln"] = "pre_ln"
    conv_bias: bool = False  # code: conv biases fixed at 0 (ops.py conv1d_pre: trainable=False)
    task_norms: bool = False  # code: T1's norms serve every task (False); True: fresh norms per task
    # "released": the released code's initialisers (module docstring; ops.py L630-631,
    # generator_prune_t1.py L27-28), Conure's own T1 model; "harness": the run's shared T1 recipe.
    init: Literal["released", "harness"] = "released"
    prune_embedding: bool = False  # paper Table 5: prune and retrain the item embedding too

    def ratio_for(self, position: int) -> float:
        """Prune ratio of the task learnt `position`-th (1-based)."""
        ratios = self.prune_ratios
        return float(ratios[position - 1]) if position <= len(ratios) else float(self.prune_ratio)

    def validate(self) -> None:
        for ratio in [self.prune_ratio, *self.prune_ratios]:
            if not 0.0 <= float(ratio) <= 1.0:
                raise BenchError(f"Conure: prune ratios must lie in [0, 1], got {ratio}")
        if self.retrain_epochs < 0:
            raise BenchError("Conure: retrain_epochs must be >= 0")
        if self.block not in ("pre_ln", "post_ln"):
            raise BenchError(f"Conure: block must be 'pre_ln' or 'post_ln', got {self.block!r}")
        if self.init not in ("released", "harness"):
            raise BenchError(f"Conure: init must be 'released' or 'harness', got {self.init!r}")


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """TF's truncated_normal_initializer: N(0, std) redrawn outside +-2 std."""
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def released_init(encoder: Backbone) -> Backbone:
    """The released initialisers on a fresh backbone, through its weight sites: every site's
    weight truncated normal, sigma 0.02, its bias 0 (NextItNet's convs: ops.py L630-631;
    SASRec's Q/K/V/O and feed-forward matrices: ops.py L912-923, L544-549); the item embedding
    truncated normal, sigma 0.02 (generator_prune_t1.py L13-15), its padding row 0."""
    with torch.no_grad():
        for site in encoder.weight_sites():
            truncated_normal_(site.weight, 0.02)
            if site.bias is not None:
                site.bias.zero_()
        truncated_normal_(encoder.embedding.weight, 0.02)
        encoder.embedding.weight[0].zero_()
    return encoder


def released_head(task, encoder: nn.Module) -> nn.Linear:
    """A task's output layer as the released code draws it: T1's softmax N(0, 0.01), bias 0.1
    (generator_prune_t1.py L27-28); a later task's truncated normal 0.02 (generator_prune.py
    L17-20), bias 0 (the code has none)."""
    head = nn.Linear(encoder.embedding.embedding_dim, task.output_size)
    with torch.no_grad():
        if task.kind is TaskKind.NEXT_ITEM:
            head.weight.normal_(0.0, 0.01)
            head.bias.fill_(0.1)
        else:
            truncated_normal_(head.weight, 0.02)
            head.bias.zero_()
    return head


def prune_owned(owner: torch.Tensor, weight: torch.Tensor, position: int, ratio: float) -> None:
    """Release (set FREE) the `ratio` lowest-magnitude entries of `weight` owned by `position`
    (code: per conv top-k)."""
    owned = owner == position
    n_release = int(round(ratio * int(owned.sum())))
    if n_release == 0:
        return
    magnitude = torch.where(owned, weight.detach().abs(), torch.full_like(weight, float("inf")))
    released = torch.topk(magnitude.flatten(), n_release, largest=False).indices
    owner.view(-1)[released] = FREE


class Ownership(TaskSwitched):
    """The weight hook Conure installs on a weight site: task k sees the weights owned by 1..k.

    `owner` holds one small integer per weight (0 = free, k = owned by the task learnt k-th).
    """

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("owner", torch.ones_like(weight, dtype=torch.uint8))
        self.active_position = 0

    def select(self, key: str, position: int) -> None:
        self.active_position = position

    def visible(self) -> torch.Tensor:
        return (self.owner != FREE) & (self.owner <= self.active_position)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.active_position <= 0:
            raise RuntimeError("an ownership-masked weight was used before a task was selected")
        return torch.where(self.visible(), weight, torch.zeros_like(weight))

    # --- ownership changes -------------------------------------------------------------------
    def claim_free(self, position: int) -> None:
        self.owner[self.owner == FREE] = position

    def prune(self, weight: torch.Tensor, position: int, ratio: float) -> None:
        """Release the `ratio` lowest-magnitude weights owned by `position` (code: per conv top-k)."""
        prune_owned(self.owner, weight, position, ratio)


def _draw_as_a_new_layer(site: nn.Module) -> None:
    """Draw from the global RNG what building a new layer like `site` draws, and discard it.

    Before the backbone seam Conure replaced every conv by a newly built ownership-masked
    copy; keeping those draws keeps every later random number (heads, batches), so results
    on NextItNet stay bit-identical to the runs published before (tests/test_nextitnet_fixture.py).
    """
    if hasattr(site, "reset_parameters"):
        with torch.no_grad():
            copy.deepcopy(site).to("cpu").reset_parameters()  # the old layer was built on the CPU


class OwnedWeight:
    """A weight site with its Ownership hook: what Conure prunes and guards."""

    def __init__(self, site):
        self.site = site

    @property
    def weight(self) -> nn.Parameter:
        return self.site.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return self.site.bias

    @property
    def owner(self) -> torch.Tensor:
        return self.site.weight_hook.owner

    def owned_parameter(self) -> nn.Parameter:
        """The tensor the ownership covers (OwnedWeightGuard moves only a task's entries)."""
        return self.site.weight

    def effective_weight(self) -> torch.Tensor:
        return self.site.effective_weight()

    def claim_free(self, position: int) -> None:
        self.site.weight_hook.claim_free(position)

    def prune(self, position: int, ratio: float) -> None:
        self.site.weight_hook.prune(self.site.weight, position, ratio)


class OwnedEmbedding(TaskSwitched):
    """The item table with one owner per entry, as a weight site's Ownership (`prune_embedding`).

    `weight` is the table task k sees (entries owned by tasks 1..k, the rest 0), so a tied
    head (TiedItemHead reads `embedding.weight`) scores with exactly those entries too; the
    trained tensor is `table`."""

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self.num_embeddings, self.embedding_dim = embedding.num_embeddings, embedding.embedding_dim
        self.padding_idx = embedding.padding_idx
        self.table = nn.Parameter(embedding.weight.detach().clone(), requires_grad=embedding.weight.requires_grad)
        self.register_buffer("owner", torch.ones_like(self.table, dtype=torch.uint8))
        self.active_position = 0

    def select(self, key: str, position: int) -> None:
        self.active_position = position

    def owned_parameter(self) -> nn.Parameter:
        return self.table

    @property
    def weight(self) -> torch.Tensor:
        if self.active_position <= 0:
            raise RuntimeError("OwnedEmbedding used before a task was selected")
        visible = (self.owner != FREE) & (self.owner <= self.active_position)
        return torch.where(visible, self.table, torch.zeros_like(self.table))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.embedding(inputs, self.weight, self.padding_idx)

    def claim_free(self, position: int) -> None:
        self.owner[self.owner == FREE] = position

    def prune(self, position: int, ratio: float) -> None:
        """Release the `ratio` lowest-magnitude entries owned by `position`, over the whole table."""
        prune_owned(self.owner, self.table, position, ratio)


class OwnedWeightGuard:
    """Training hooks that let only the weights owned by one task move (the weight sites, and
    the item table with `prune_embedding`): any unit with `owner` and `owned_parameter()`."""

    def __init__(self, units: list, position: int):
        self.params = [unit.owned_parameter() for unit in units]
        self.trainable = [unit.owner == position for unit in units]
        self.snapshots = [param.detach().clone() for param in self.params]

    def after_backward(self) -> None:
        for param, trainable in zip(self.params, self.trainable):
            if param.grad is not None:
                param.grad.mul_(trainable)

    def after_step(self) -> None:
        with torch.no_grad():
            for param, trainable, snapshot in zip(self.params, self.trainable, self.snapshots):
                param.copy_(torch.where(trainable, param, snapshot))

    def hooks(self) -> TrainHooks:
        return TrainHooks(after_backward=self.after_backward, after_step=self.after_step)


@METHODS.register("Conure")
class Conure(TaskSwitchedMethod):
    Options = ConureOptions
    paper = "Conure (Yuan et al., SIGIR 2021)"

    sites = ("weights",)
    mechanisms = {
        "nextitnet": "prunes and freezes the dilated convolutions' weights",
        "sasrec": "prunes and freezes the attention (Q, K, V, O) and feed-forward weight matrices",
    }
    variants = {
        "postln": {"block": "post_ln"},  # the run's post-LN NextItNet block
        "bias": {"conv_bias": True},  # conv biases trained on T1, frozen afterwards
        "tasknorms": {"task_norms": True},  # fresh trainable layer norms per task
        "harnessinit": {"init": "harness"},  # the harness's inits, the run's shared T1 recipe
        "embprune": {"prune_embedding": True},  # paper Table 5: the item embedding pruned too
    }

    @classmethod
    def required_sites(cls, options) -> tuple[str, ...]:
        return cls.sites + (("norms",) if options.task_norms else ())

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "prune_ratio": trial.suggest_float("prune_ratio", 0.3, 0.9)}

    def __init__(self, context, options=None):
        super().__init__(context, options)
        self.variant_scores = {"Conure-": {}}

    # --- structure -------------------------------------------------------------------------
    def owned_convs(self) -> list[OwnedWeight]:
        """The backbone's weight sites Conure owns (NextItNet's convs, SASRec's attention and
        feed-forward matrices), in the backbone's order."""
        return [OwnedWeight(site) for site in self.encoder.weight_sites() if isinstance(site.weight_hook, Ownership)]

    def owned_units(self) -> list:
        """Everything pruned by ownership: the weight sites, and the item table with `prune_embedding`."""
        table = [self.encoder.embedding] if isinstance(self.encoder.embedding, OwnedEmbedding) else []
        return self.owned_convs() + table

    def _adopt_first_model(self, task, context) -> nn.Module:
        """A T1 model with Conure's block (trained once per run and backbone), its weight sites
        ownership-masked (all owned by T1), its item table too with `prune_embedding`;
        per-task norms only with `task_norms`."""
        if self.options.init == "released":
            encoder, head = self._released_first_model(task, self._backbone(context), context)
        else:
            encoder, head = context.pretrained(task, self._backbone(context))
        encoder.requires_grad_(False)  # each phase turns on what it trains (_task_parameters)
        self._install_ownership(task, encoder, head)
        return head

    def _backbone(self, context):
        return dataclasses.replace(context.backbone, block=self.options.block, conv_bias=self.options.conv_bias)

    def _first_model(self, task, backbone, context) -> tuple[Backbone, nn.Module]:
        """An untrained T1 encoder and head as `init` draws them."""
        encoder = build_encoder(context.n_items, backbone)
        if self.options.init == "released":
            encoder = released_init(encoder).to(context.device)
            return encoder, released_head(task, encoder).to(context.device)
        encoder = encoder.to(context.device)
        return encoder, make_head(task, encoder).to(context.device)

    def _released_first_model(self, task, backbone, context) -> tuple[Backbone, nn.Module]:
        """T1 trained from the released initialisers (released_init, released_head) under the
        run's seed, once per run and backbone (the T1 cache, keyed on this file too); the
        global RNG is left as it was, as context.pretrained leaves it."""
        devices = [context.device] if context.device.type == "cuda" else []
        backbone = canonical(backbone)  # Conure's block on SASRec is the run's SASRec

        def train() -> dict:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(context.seed)
                encoder, head = self._first_model(task, backbone, context)
                log = context.fit_model(task, encoder, head, description=f"Conure pretrain {task.name}")
            return {"model": nn.ModuleList([encoder, head]).state_dict(), "log": dataclasses.asdict(log)}

        entry = context.first_model_entry("Conure T1 (released init)", "conure", task, backbone,
                                          {"init": "released"}, train, code=(__file__,))
        with torch.random.fork_rng(devices=devices):
            encoder, head = self._first_model(task, backbone, context)
        nn.ModuleList([encoder, head]).load_state_dict(entry["model"])
        return encoder, head

    def _install_ownership(self, task, encoder, head: nn.Module) -> None:
        """Ownership hooks on every weight site (and the item table with `prune_embedding`, a
        tied head reading the owned table); per-task norms with `task_norms`."""
        for site in require_sites(encoder, "weights", "Conure"):
            _draw_as_a_new_layer(site)
            site.weight_hook = Ownership(site.weight)
        if self.options.prune_embedding:
            encoder.embedding = OwnedEmbedding(encoder.embedding)
            if isinstance(head, TiedItemHead):
                head.embedding = encoder.embedding
        if self.options.task_norms:
            make_norms_task_specific(encoder, module_key(task), "Conure+tasknorms")
        self.encoder = encoder

    def restore(self, learnt, context) -> None:
        """T1's model as `init` builds it (with the released init: Conure's own T1 model and its
        untied softmax), its weight sites ownership-masked (and its item table with
        `prune_embedding`), then each later task's head (and norms); the ownership itself is
        a buffer, loaded with the weights."""
        if not learnt:
            return
        encoder, head = self._first_model(learnt[0], canonical(self._backbone(context)), context)
        encoder.requires_grad_(False)
        self.heads[module_key(learnt[0])] = head
        self._install_ownership(learnt[0], encoder, head)
        for position, task in enumerate(learnt, start=1):
            self.positions[module_key(task)] = position
            if position > 1:
                self.heads[module_key(task)] = self._add_task(task, position, context)

    def _add_task(self, task, position: int, context) -> nn.Module:
        """Free weights go to the new task, which also gets a head (and fresh norms with `task_norms`)."""
        if position > MAX_TASKS:
            raise BenchError(f"Conure: at most {MAX_TASKS} tasks (ownership is stored as uint8)")
        for unit in self.owned_units():
            unit.claim_free(position)
        for norm in task_norms(self.encoder):
            norm.add_task(module_key(task))
        if self.options.init == "released" and task.kind is not TaskKind.NEXT_ITEM:
            return released_head(task, self.encoder).to(context.device)
        return make_head(task, self.encoder).to(context.device)

    def _task_parameters(self, task, head: nn.Module, position: int) -> list[nn.Parameter]:
        """What task `position` trains after T1's pretraining: its weight-site weights (masked
        by the guard) and head, as the code's var_list=[weight, softmax]; its own norms with
        `task_norms`; T1's site biases with `conv_bias` (and SASRec's). The item embedding only
        with `prune_embedding` (its entries masked by the guard like the sites'); otherwise
        never (the tied next-item heads share it)."""
        key = module_key(task)
        params = [unit.owned_parameter() for unit in self.owned_units()]
        params += [p for norm in task_norms(self.encoder) for p in norm.norms[key].parameters()]
        params += list(head.parameters())
        if position == 1:
            params += [conv.bias for conv in self.owned_convs() if conv.bias is not None]
        embedding = None if self.options.prune_embedding else self.encoder.embedding.weight
        return list({id(p): p for p in params if p is not embedding}.values())

    def _freeze_after_task(self) -> None:
        """A learnt task's norms and head never move again; nor do T1's embeddings and biases."""
        self.encoder.embedding.requires_grad_(False)
        for conv in self.owned_convs():
            if conv.bias is not None:
                conv.bias.requires_grad_(False)
        for head in self.heads.values():
            head.requires_grad_(False)
        for module in self.encoder.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(False)

    # --- training phases ---------------------------------------------------------------------
    def _train(self, task, head, position: int, context, phase: str, epochs: int | None = None) -> None:
        guard = OwnedWeightGuard(self.owned_units(), position)

        def loss_fn(x, y):
            return training_loss(task, self.encode(task, x), head, x, y)

        def score_fn(x):
            return evaluation_scores(task, self.encode(task, x), head)

        train = dataclasses.replace(context.train_for(task), epochs=epochs) if epochs else None
        params = self._task_parameters(task, head, position)
        for p in params:
            p.requires_grad_(True)
        self.record(context.fit(task, params, loss_fn, score_fn, nn.ModuleList([self.encoder, head]),
                                hooks=guard.hooks(), description=f"Conure {phase} {task.name}",
                                train=train))

    def _prune_and_retrain(self, task, head, position: int, context) -> None:
        ratio = self.options.ratio_for(position)
        for unit in self.owned_units():
            unit.prune(position, ratio)
        self._train(task, head, position, context, "retrain", self.options.retrain_epochs or None)

    # --- the runner's interface ------------------------------------------------------------
    def learn(self, tasks, context) -> None:
        for task in tasks:
            key = module_key(task)
            position = len(self.learned) + 1
            self.positions[key] = position
            if self.encoder is None:
                head = self._adopt_first_model(task, context)
            else:
                head = self._add_task(task, position, context)
            self.heads[key] = head
            if position > 1:
                self._train(task, head, position, context, "train")
            self.variant_scores["Conure-"][task.name] = self._evaluate(task, context)
            self._prune_and_retrain(task, head, position, context)
            self._freeze_after_task()
            self.learned.append(task.name)

    def _evaluate(self, task, context) -> dict[str, float]:
        """The Conure- row: scored in eval mode (SASRec's dropout off), as every reported score."""
        training = self.training
        self.eval()
        try:
            return context.evaluate(task, lambda x: self.scores(task, x))
        finally:
            self.train(training)

    # --- accounting --------------------------------------------------------------------------
    def parameter_count(self) -> int:
        """Every stored float parameter: the one backbone, per-task norms and heads.

        Ownership is one uint8 per conv weight (a buffer, not a parameter): the paper's
        per-task binary masks packed into one tensor, a quarter of the conv weights' bytes;
        it is reported by `mask_entries`, not added here, as the papers count parameters.
        """
        return super().parameter_count()

    def mask_entries(self) -> int:
        return sum(unit.owner.numel() for unit in self.owned_units())

    def ownership(self) -> list[torch.Tensor]:
        """A copy of every ownership tensor (0 = free, k = task learnt k-th): the weight sites',
        then the item table's with `prune_embedding`."""
        return [unit.owner.clone() for unit in self.owned_units()]
