"""HAT: hard attention to the task (Serrà et al., ICML 2018) on NextItNet.

Equations used (t = the task being learnt, l = a gated layer, s = the scaling factor):
- gates: a_t^l = sigmoid(s * e_t^l), one task embedding e_t^l per layer and task (eq. 1);
  the gated layers are the output channels of both convolutions of every residual block.
- annealing: s = 1/smax + (smax - 1/smax)(b-1)/(B-1) over the B batches of each epoch
  (eq. 3); at validation and test s = smax.
- cumulative attention: a^{<t} = max(a^{<t-1}, a_{t-1}) after each task (eq. 4).
- gradient attenuation: g'_{ij} = (1 - min(a^{<t}_{l,i}, a^{<t}_{l-1,j})) g_{ij} for the
  weights from unit j of layer l-1 to unit i of layer l; per-unit parameters (biases,
  LayerNorm gain/shift) use 1 - a^{<t}_{l,i} (eq. 5).
- embedding-gradient compensation: g'_e = smax/s * (cosh(clamp(s e)) + 1)/(cosh(e) + 1) g_e
  (eq. 6, thres_cosh) and clamping e to [-thres_emb, thres_emb] after every step.
- sparsity regulariser: L + c * sum a_t(1 - a^{<t}) / sum(1 - a^{<t}) (eq. 7).

As the reference (joansj/hat src/approaches/hat.py): the mask kept for a finished task
(its scores, and a^{<t}) is sigmoid(smax e_t) (`mask=self.model.mask(task, s=self.smax)`),
and only the unit outputs are gated (here: after each conv's ReLU). Neither makes earlier
tasks exact on NextItNet: a LayerNorm mixes all channels of a conv, so its statistics move
when units another task owns move, and a few kept units stay fractional (measured on tiny
data: earlier scores move by < 5 % of their scale; tests/test_methods_b.py).

Variants (rows `HAT+<name>`; `HAT+binary+lngate` makes earlier tasks bit-identical and was
this module's default before issue 11):
- `binary`: the kept mask is 1[e_t > 0], the s -> infinity limit of sigmoid(s e_t).
- `lngate`: the conv output is gated before the LayerNorm as well (conv -> gate ->
  LayerNorm -> ReLU -> gate), so a task's LayerNorm statistics see only its own units.

On any backbone (bench/engine/backbone.py) the gated layers are the backbone's *unit
layers*: NextItNet's conv channels (after each ReLU); on SASRec each block's attention
output (W_o's units) and feed-forward output (W2's units), i.e. what each sub-layer adds
to the residual stream. Weights are attenuated by their output unit's cumulative mask;
parameters that produce units no gate covers (SASRec's Q/K/V projections, the feed-forward
hidden layer, LayerNorms, positions) serve every task, a^{<t} = 1 there, so eq. 5 freezes
them once the first task is learnt (on NextItNet every parameter but the item embedding is
in a unit layer). HAT+lngate needs a norm right after the gated sub-layer, which SASRec
does not have: it is refused there.

Deviations that remain:
- optimiser: the harness's Adam and model selection on the validation metric; the
  reference uses SGD lr 0.05 divided by 3 on plateaus (patience 5, down to 1e-4), 100
  epochs, selection on validation loss. Adam normalises per coordinate and would undo a
  scaled gradient, so besides scaling the gradient the *update* of every weight is scaled
  by the same factor (p <- p_old + (1 - min(...)) (p_new - p_old)), which is what eq. 5
  does under SGD.
- the item embedding (input of every layer and the T1 softmax) is shared and not gated:
  it is frozen after the first task, as is the first task's head.
- the first task starts from the shared T1-trained NextItNet (context.pretrained) and is
  then trained with its gates and the regulariser, like every later task (TERACON's HAT
  baseline code is not released).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bench.engine.backbone import build_encoder, make_head
from bench.engine.objectives import evaluation_scores, training_loss
from bench.registry import METHODS
from bench.engine.training import TrainHooks
from bench.methods._gates import Annealing, check_finite, install_gates, masked, n_gated_layers, n_units
from bench.methods.base import ContinualMethod, module_key


@dataclass
class HATOptions:
    smax: float = field(default=400.0, metadata={"gt": 0})  # paper's s_max
    c: float = field(default=0.75, metadata={"min": 0})  # sparsity regulariser weight (paper's c)
    thres_cosh: float = field(default=50.0, metadata={"gt": 0})  # clamp of s*e inside cosh for the compensation (HAT code)
    thres_emb: float = field(default=6.0, metadata={"gt": 0})  # task embeddings are clamped to [-thres_emb, thres_emb] (HAT code)
    clipgrad: float = field(default=10000.0, metadata={"gt": 0})  # gradient-norm clipping (HAT code)
    binarize: bool = False  # True: keep 1[e > 0] as a finished task's mask (reference: sigmoid(smax e))
    gate_conv_outputs: bool = False  # True: gate the conv output before the LayerNorm too (not in HAT)


@METHODS.register("HAT")
class HAT(ContinualMethod):
    paper = "Serrà et al., ICML 2018 (baseline in TERACON, KDD 2023)"
    Options = HATOptions
    sites = ("gates",)
    mechanisms = {
        "nextitnet": "masks the conv output channels after each ReLU",
        "sasrec": "masks each block's attention and feed-forward outputs; ungated weights frozen after T1",
    }
    variants = {
        "binary": {"binarize": True},  # kept masks 1[e > 0]
        "lngate": {"gate_conv_outputs": True},  # gate before the LayerNorm as well
    }

    @classmethod
    def required_sites(cls, options) -> tuple[str, ...]:
        return ("norm_gates",) if options.gate_conv_outputs else cls.sites

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "smax": trial.suggest_float("smax", 25.0, 800.0, log=True),
                "c": trial.suggest_float("c", 0.01, 2.0, log=True)}

    def __init__(self, context, options=None):
        super().__init__(context, options)
        check_finite(self.options.smax, "smax")
        self.encoder: nn.Module | None = None
        self.task_embeddings = nn.ParameterDict()  # e_t: (n_layers, d) per task
        self.heads = nn.ModuleDict()
        self.register_buffer("used", torch.zeros(0))  # a^{<t}: (n_layers, d)

    # --- masks -------------------------------------------------------------------------
    def gate(self, key: str, s: float) -> torch.Tensor:
        """a_t = sigmoid(s e_t) while training task t."""
        return torch.sigmoid(s * self.task_embeddings[key])

    def kept_mask(self, key: str) -> torch.Tensor:
        """The mask that serves a task at validation/test time (s = smax, or its limit)."""
        embedding = self.task_embeddings[key]
        if self.options.binarize:
            return (embedding > 0).to(embedding.dtype)
        return torch.sigmoid(self.options.smax * embedding)

    def regulariser(self, mask: torch.Tensor) -> torch.Tensor:
        """c * sum a_t(1 - a^{<t}) / sum(1 - a^{<t}): spend few of the still-free units."""
        free = 1.0 - self.used
        return self.options.c * (mask * free).sum() / free.sum().clamp(min=1e-8)

    # --- learning ----------------------------------------------------------------------
    def restore(self, learnt, context) -> None:
        """The gated T1 encoder, a^{<t}'s shape, and each learnt task's head and embedding."""
        if not learnt:
            return
        self.encoder = build_encoder(context.n_items, context.backbone).to(context.device)
        install_gates(self.encoder, gate_conv_outputs=self.options.gate_conv_outputs, method="HAT")
        self.used = torch.zeros(n_gated_layers(self.encoder), n_units(self.encoder),
                                device=context.device)
        for task in learnt:
            key = module_key(task)
            self.heads[key] = make_head(task, self.encoder).to(context.device)
            self.task_embeddings[key] = nn.Parameter(torch.zeros(self.used.shape, device=context.device))

    def learn(self, tasks, context) -> None:
        for task in tasks:
            first = self.encoder is None
            if first:
                self.encoder, head = context.pretrained(task)
                install_gates(self.encoder, gate_conv_outputs=self.options.gate_conv_outputs, method="HAT")
                n_layers, d = n_gated_layers(self.encoder), n_units(self.encoder)
                self.used = torch.zeros(n_layers, d, device=context.device)
            else:
                head = make_head(task, self.encoder).to(context.device)
            key = module_key(task)
            self.heads[key] = head
            self.task_embeddings[key] = nn.Parameter(torch.randn(self.used.shape, device=context.device))
            self.record(self._fit(task, key, context))
            self.encoder.embedding.weight.requires_grad_(False)  # shared input, ungated
            for parameter in self.ungated_parameters():  # units every task uses (a^{<t} = 1)
                parameter.requires_grad_(False)
            head.requires_grad_(False)
            self.task_embeddings[key].requires_grad_(False)
            self.used = torch.maximum(self.used, self.kept_mask(key))
            self.learned.append(task.name)

    def _fit(self, task, key, context):
        annealing = Annealing(self.options.smax)
        head, embedding = self.heads[key], self.task_embeddings[key]

        def loss_fn(x, y):
            mask = self.gate(key, annealing.s)
            with masked(self.encoder, mask):
                hidden = self.encoder(x)
            return training_loss(task, hidden, head, x, y) + self.regulariser(mask)

        def score_fn(x):
            with masked(self.encoder, self.kept_mask(key)):
                return evaluation_scores(task, self.encoder(x), head)

        attenuation = GradientAttenuation(self, embedding, annealing)
        hooks = TrainHooks(on_batch_start=annealing, after_backward=attenuation.after_backward,
                           after_step=attenuation.after_step)
        parameters = list({id(p): p for p in (*self.encoder.parameters(), *head.parameters(), embedding)}.values())
        return context.fit(task, parameters, loss_fn, score_fn, self, hooks=hooks,
                           description=f"HAT {task.name}")

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        key = module_key(task)
        with masked(self.encoder, self.kept_mask(key)):
            return evaluation_scores(task, self.encoder(inputs), self.heads[key])

    # --- which parameter belongs to which units ------------------------------------------
    def attenuation_factors(self) -> dict[nn.Parameter, torch.Tensor]:
        """1 - min(a^{<t}_out, a^{<t}_in) per backbone weight (eq. 5), shaped like it.

        A weight's output units are its unit layer's; its input units are the unit layer the
        backbone names as its source, or none: an input no gate covers (NextItNet's residual
        stream feeding conv1) is used by every task (in-mask 1), so such weights are
        attenuated by their output unit alone, as HAT does for a first layer.
        """
        used = self.used
        factors = {}
        layers = self.encoder.unit_layers()
        for index, layer in enumerate(layers):
            out = used[index]
            for weight, source in layer.weights:
                if source is None:
                    factor = 1 - out
                else:
                    factor = 1 - torch.minimum(out[:, None], used[source][None, :])
                factors[weight] = factor.reshape(factor.shape + (1,) * (weight.dim() - factor.dim())).expand_as(weight)
            for parameter in layer.unit_params:
                factors[parameter] = 1 - out
        return factors

    def ungated_parameters(self) -> list[nn.Parameter]:
        """Backbone parameters outside every unit layer (SASRec's attention projections,
        positions, norms): they produce units no gate covers, which every task uses, so
        HAT's eq. 5 (with a^{<t} = 1 there) freezes them once the first task is learnt.
        On NextItNet every parameter but the item embedding belongs to a unit layer."""
        covered = {id(p) for layer in self.encoder.unit_layers()
                   for p in [w for w, _ in layer.weights] + layer.unit_params}
        return [p for p in self.encoder.parameters() if id(p) not in covered]


class GradientAttenuation:
    """HAT's gradient surgery around each optimiser step (eqs. 5-6 and the clamp)."""

    def __init__(self, method: HAT, embedding: nn.Parameter, annealing: Annealing):
        self.method, self.embedding, self.annealing = method, embedding, annealing
        # nothing to protect while learning the first task
        self.factors = method.attenuation_factors() if bool(method.used.any()) else {}
        self.before: dict[nn.Parameter, torch.Tensor] = {}

    def after_backward(self) -> None:
        options, s, e = self.method.options, self.annealing.s, self.embedding
        for parameter, factor in self.factors.items():
            if parameter.grad is not None:
                parameter.grad.mul_(factor)
        if e.grad is not None:
            with torch.no_grad():
                numerator = torch.cosh(torch.clamp(s * e, -options.thres_cosh, options.thres_cosh)) + 1
                e.grad.mul_(options.smax / s * numerator / (torch.cosh(e) + 1))
        torch.nn.utils.clip_grad_norm_(self.method.parameters(), options.clipgrad)
        self.before = {p: p.detach().clone() for p in self.factors}

    @torch.no_grad()
    def after_step(self) -> None:
        for parameter, factor in self.factors.items():
            old = self.before[parameter]
            parameter.copy_(old + factor * (parameter - old))
        self.before = {}
        limit = self.method.options.thres_emb
        self.embedding.clamp_(-limit, limit)
