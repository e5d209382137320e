"""TERACON: task relation-aware continual user representation learning (Kim et al., KDD 2023).

Equations used (following the paper and the authors' code, Sein-Kim/TERACON):
- task embeddings e_k^l (one d-vector per task k and gated layer l, initialised U(0, 2))
  give soft masks on the ReLU outputs of both convolutions of every residual block.
- relation-aware masks (eqs. 12-13): with N tasks known, for task k and layer l
      m_k^l = sigmoid(s * MLP_k^l(tanh(s * [e_k; e_i; -e_i for i != k])))
  where MLP_k^l is a linear map over the 2N-1 stacked embeddings (per unit); the MLPs are
  re-initialised (N(0, 0.01), bias 0.1) whenever a task is added, as in the code. With a
  single task (the first one) the mask is plain sigmoid(s * e_1^l).
- annealing (eq. 19): s = 1/smax + (smax - 1/smax) b/B within each epoch; s = smax at test.
- knowledge retention (eqs. 9-10, 14-16): a frozen copy of the model before the current
  task gives pseudo-labels (the old heads' logits) for every earlier task i on a random
  fraction r_i of the current batch; the current model reproduces them under MSE,
      L = CE(current task) + alpha * sum_i r_i / sum_j r_j * MSE(student_i, teacher_i).
  Teacher and student use the same annealed s (as in the code).
- sampling ratio (eq. 15): r_i = 1 - mean_l sigmoid(6 cos(m_i^l(teacher), m_t^l)), updated
  after every batch from the latest masks, starting at r_i = 0.9.
- task embeddings are clamped to [-thres_emb, thres_emb] after every step (code: 6).
Every parameter (item embedding, convolutions, LayerNorms, all task embeddings, MLPs and
heads) stays trainable through the whole sequence; one backbone (#B = 1).
On any backbone (bench/engine/backbone.py) the masks act on the backbone's *unit layers*:
NextItNet's conv channels after each ReLU (the code); on SASRec each block's attention
output and feed-forward output (what each sub-layer adds to the residual stream), the
sites DITTO's authors' SASRec runs of TERACON gate (their rebuttal Table 5; code not
released), every parameter still trainable.

- task 1 (train_task1.py): a fresh NextItNet trained once with its own mask (plain
  sigmoid(s e_1)), the run's first-task schedule; no retention.
- sampled rows per old task: int(r_i * batch), as train_teracon.py (~L175); no floor on r_i.
  The `quick` preset (128-row batches, bench/presets.py) sets `rows="expected"` instead:
  floor(r_i * batch) plus one row with probability frac(r_i * batch), so each batch keeps the
  paper's fraction r_i on average (eq. 14); int() would keep 0 of 128 rows for related tasks
  (r_i ~ 0.0025) and switch retention off. Rows `TERACON+int` / `TERACON+expected` name either
  rule under any preset.
- learning rate: the released script (ttl_train.sh) trains task 2 at 1e-3 and tasks 3..6
  at 1e-4; `later_lr_scale` (0.1) and `later_lr_from` (3) reproduce that relative to the
  run's lr. alpha = 0.7 (train_teracon.py default). No dataset sets other values.
  `bench tune` searches alpha, smax and later_lr_scale.

Variants (rows `TERACON+<name>`, not in the paper or code):
- `floor` (min_ratio 0.25): r_i floored. The masks of related tasks are nearly parallel
  (cos ~ 1, so r_i ~ 0.0025): on the authors' data (1024-row batches) that leaves ~2 rows
  per batch, on 128-row batches int() leaves none and retention is off (measured effect:
  docs/methods/teracon.md).
- `ceil` (rows "ceil"): ceil(r_i * batch), at least one row per old task and batch.
- `sharedt1` (shared_first_task): task 1 starts from the run's shared T1 model (trained
  unmasked, as the baselines') and is then trained again with its mask.

Initialisation and T1 objective as the code (issue 19: each measured with
benchmarks/parity_teracon.py, docs/parity.md):
- heads (`heads="released"`): a separate Linear per task, T1's too, weights N(0, 0.01),
  bias 0.1 (teracon.py L241-244, generator_hat_other.py L183-185); `heads="harness"` is the
  harness's make_head (tied T1 softmax, PyTorch's default Linear init).
- item embedding (`embedding_init="released"`): U(+-sqrt(1/rows)) on every row, the padding
  row trained like the others (generator_hat_other.py L163-165); LayerNorm eps 1e-8
  (`norm_eps`, teracon.py L38-40).
- T1 loss over every position, padding targets included (`t1_padding_loss`, train_task1.py
  L126, L150).
- next-item tasks take pseudo-labels at the last position of the sequence without its final
  item, as the code does for task 1 (train_teracon.py L204, L223).

Deviations that remain:
- model selection, partial batches and the annealing's batch count follow the run's protocol
  (`train.protocol`): the harness's by default (primary metric, every row); `--protocol
  released` gives the code's (hit@1 with a strict `>`, the partial last batch dropped,
  s over batch_idx / (n / batch)).
- evaluation: the harness scores every test row and never ranks the padding item; the code
  scores full batches only (a random subset of the test split) and leaves item 0 a candidate.
- batch size, epochs and patience are the run's (`train.*`, `train.first_task.*`); the
  released values are T1 batch 32, 10 epochs (train_task1.py) and later tasks batch 1024,
  100 epochs, patience 5 (ttl_train.sh, train_teracon.py), which `--preset paper` sets.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine.backbone import Backbone, build_encoder, make_head
from bench.engine.objectives import evaluation_scores, head_parameters, training_loss
from bench.engine.softmax import chunked_cross_entropy
from bench.errors import BenchError
from bench.registry import METHODS
from bench.engine.tasks import Task, TaskKind
from bench.engine import checkpoints, t1cache
from bench.engine.training import FitLog, TrainHooks
from bench.methods import _gates
from bench.methods._gates import Annealing, check_finite, install_gates, masked, n_gated_layers, n_units
from bench.methods.base import ContinualMethod


@dataclass
class TERACONOptions:
    alpha: float = field(default=0.7, metadata={"min": 0})  # weight of the knowledge-retention loss (code default)
    smax: float = field(default=50.0, metadata={"gt": 0})  # code/paper s_max
    thres_emb: float = field(default=6.0, metadata={"gt": 0})  # clamp of the task embeddings
    init_low: float = 0.0  # task embeddings ~ U(init_low, init_high)
    init_high: float = 2.0
    initial_ratio: float = field(default=0.9, metadata={"min": 0, "max": 1})  # r_i before the first mask-similarity update
    similarity_scale: float = field(default=6.0, metadata={"gt": 0})  # r_i = 1 - mean sigmoid(scale * cos)
    min_ratio: float = field(default=0.0, metadata={"min": 0, "max": 1})  # floor on r_i; 0 = the code (variant TERACON+floor: 0.25)
    # rows per old task: int(r_i * batch) as the code; ceil; or "expected": floor(r_i * batch)
    # plus one with probability frac(r_i * batch), so the mean is r_i * batch at any batch size
    rows: Literal["int", "ceil", "expected"] = "int"
    shared_first_task: bool = False  # True: T1 starts from the run's shared (unmasked) T1 model
    # The released script (ttl_train.sh) trains task 2 at lr 1e-3 and tasks 3..6 at 1e-4:
    # later tasks take the run's lr times `later_lr_scale` from task `later_lr_from` on.
    later_lr_scale: float = field(default=0.1, metadata={"gt": 0})
    later_lr_from: int = field(default=3, metadata={"min": 1})
    # Initialisation and T1 objective of the released code (issue 19 measured each one):
    # "released" heads are separate Linear layers, weights N(0, 0.01), bias 0.1, T1's too
    # (teracon.py L241-244, generator_hat_other.py L183-185); "harness" = make_head (tied T1 head,
    # PyTorch's default Linear init).
    heads: Literal["released", "harness"] = "released"
    # "released": item embedding U(+-sqrt(1/rows)) on every row, the padding row trained like any
    # other (generator_hat_other.py L163-165); "harness": N(0, 0.02) with a fixed zero padding row.
    embedding_init: Literal["released", "harness"] = "released"
    norm_eps: float = field(default=1e-8, metadata={"gt": 0})  # nn.LayerNorm(eps=1e-8), teracon.py L38-40
    # T1 loss on every position, padding targets included (train_task1.py L126, L150); False:
    # the harness's loss over non-padding targets only.
    t1_padding_loss: bool = True


class RelationMixer(nn.Module):
    """MLP_k of eq. 12 for every gated layer: a linear map over 2N-1 stacked task embeddings."""

    def __init__(self, n_tasks: int, n_layers: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_layers, 2 * n_tasks - 1) * 0.01)
        self.bias = nn.Parameter(torch.full((n_layers,), 0.1))

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:  # (2N-1, n_layers, d) -> (n_layers, d)
        return torch.einsum("jld,lj->ld", stacked, self.weight) + self.bias[:, None]


class TeraconNet(nn.Module):
    """Backbone with gated units, per-task embeddings, relation mixers and heads."""

    def __init__(self, encoder: nn.Module, first_head: nn.Module, first_task: Task, options: TERACONOptions):
        super().__init__()
        self.encoder = encoder
        self.n_layers = n_gated_layers(encoder)
        self.d = n_units(encoder)
        self.options = options
        self.task_embeddings = nn.ParameterList()
        self.mixers = nn.ModuleList()  # empty while only one task is known
        self.heads = nn.ModuleList()
        self.tasks: list[_TaskRef] = []
        self._add(first_task, first_head)

    def _add(self, task: Task, head: nn.Module) -> None:
        device = self.encoder.embedding.weight.device
        e = torch.empty(self.n_layers, self.d, device=device).uniform_(self.options.init_low, self.options.init_high)
        self.task_embeddings.append(nn.Parameter(e))
        self.heads.append(head)
        self.tasks.append(_TaskRef(task))

    def add_task(self, task: Task, head: nn.Module | None = None) -> None:
        """A new task: its embedding and head (TERACON's `task_head` unless given: DITTO's
        heads differ), and fresh relation mixers for all N tasks."""
        if head is None:
            head = task_head(task, self.encoder, self.options.heads)
        self._add(task, head.to(self.encoder.embedding.weight.device))
        n = len(self.task_embeddings)
        self.mixers = nn.ModuleList(RelationMixer(n, self.n_layers) for _ in range(n)).to(
            self.encoder.embedding.weight.device)

    def index(self, name: str) -> int:
        return [t.name for t in self.tasks].index(name)

    def mask(self, k: int, s: float) -> torch.Tensor:
        """m_k (n_layers, d): relation-aware once several tasks exist, plain for one."""
        e_k = self.task_embeddings[k]
        if len(self.mixers) == 0:
            return torch.sigmoid(s * e_k)
        others = [e for i, e in enumerate(self.task_embeddings) if i != k]
        stacked = torch.stack([e_k] + [v for e in others for v in (e, -e)])
        return torch.sigmoid(s * self.mixers[k](torch.tanh(s * stacked)))

    def hidden(self, k: int, s: float, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.mask(k, s)
        with masked(self.encoder, mask):
            return self.encoder(inputs), mask

    def retention_logits(self, k: int, s: float, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Task k's head on the user representation of `inputs` (pseudo-label space)."""
        task = self.tasks[k]
        if task.kind is TaskKind.NEXT_ITEM:
            inputs = inputs[:, :-1]
        hidden, mask = self.hidden(k, s, inputs)
        return self.heads[k](hidden[:, -1]), mask


def task_head(task: Task, encoder: nn.Module, kind: str) -> nn.Module:
    """The task's output layer: the released one (a separate Linear, N(0, 0.01) weights, bias
    0.1, teracon.py L241-244) or the harness's `make_head`."""
    if kind == "harness":
        return make_head(task, encoder)
    head = nn.Linear(encoder.embedding.embedding_dim, task.output_size)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01)
        head.bias.fill_(0.1)
    return head


def released_encoder(encoder: Backbone, options: TERACONOptions) -> Backbone:
    """The released backbone's initialisation on a fresh encoder: item embedding
    U(+-sqrt(1/rows)) with a trained padding row (generator_hat_other.py L163-165) and
    LayerNorm eps `norm_eps` (teracon.py L38-40)."""
    if options.embedding_init == "released":
        embedding = encoder.embedding
        embedding.padding_idx = None
        bound = (1.0 / embedding.num_embeddings) ** 0.5
        with torch.no_grad():
            embedding.weight.uniform_(-bound, bound)
    for module in encoder.modules():
        if isinstance(module, nn.LayerNorm):
            module.eps = options.norm_eps
    return encoder


def padded_next_item_loss(hidden: torch.Tensor, head: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """train_task1.py's T1 loss: cross-entropy of the next item at every position, padding
    targets (item 0) included (always the full softmax, whatever train.loss says)."""
    weight, bias = head_parameters(head)
    return chunked_cross_entropy(hidden[:, :-1].flatten(0, 1), weight, bias, inputs[:, 1:].flatten())


class _TaskRef:
    """Name and kind of a task, without its data (kept on the model between steps)."""

    def __init__(self, task: Task):
        self.name, self.kind = task.name, task.kind


def sampling_ratio(old_mask: torch.Tensor, new_mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Eq. 15: 1 - mean over layers of sigmoid(scale * cos(m_old^l, m_new^l)), left on the device."""
    cosine = F.cosine_similarity(old_mask, new_mask, dim=1, eps=1e-6)
    return 1.0 - torch.sigmoid(scale * cosine).mean()


def retention_loss(student: TeraconNet, teacher: TeraconNet, inputs: torch.Tensor, s: float,
                   ratios: list[float], rows: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Eq. 16: sum_i r_i/sum r * MSE(student_i, teacher_i) over the teacher's tasks.

    Returns the loss and the teacher's masks (for the next sampling ratios).
    """
    total = torch.zeros((), device=inputs.device)
    with torch.no_grad():
        teacher_masks = [teacher.mask(k, s) for k in range(len(ratios))]
    weight = sum(ratios)
    for k, (ratio, chosen) in enumerate(zip(ratios, rows)):
        if len(chosen) == 0 or weight <= 0:
            continue
        with torch.no_grad():
            target, _ = teacher.retention_logits(k, s, inputs[chosen])
        prediction, _ = student.retention_logits(k, s, inputs[chosen])
        total = total + ratio / weight * F.mse_loss(prediction, target)
    return total, teacher_masks


# Options that only act from task 2 on: TERACON's cached T1 model is shared across them
# (rows TERACON, TERACON+floor and TERACON+ceil train the same T1).
LATER_TASKS_ONLY = ("alpha", "initial_ratio", "similarity_scale", "min_ratio", "rows",
                    "later_lr_scale", "later_lr_from")


@METHODS.register("TERACON")
class TERACON(ContinualMethod):
    paper = "Kim et al., KDD 2023"
    Options = TERACONOptions
    sites = ("gates",)
    mechanisms = {
        "nextitnet": "relation-aware masks on the conv output channels after each ReLU",
        "sasrec": "relation-aware masks on each block's attention and feed-forward outputs",
    }
    variants = {
        "floor": {"min_ratio": 0.25},  # keeps retention on for near-parallel masks on small data
        "ceil": {"rows": "ceil"},  # at least one retention row per old task and batch
        "expected": {"rows": "expected"},  # r_i * batch rows on average (stochastic rounding)
        "int": {"rows": "int"},  # the code's int(r_i * batch), where a preset chose another rule
        "sharedt1": {"shared_first_task": True},  # T1 from the shared unmasked model, then masked
    }

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
                "smax": trial.suggest_float("smax", 10.0, 400.0, log=True),
                "later_lr_scale": trial.suggest_float("later_lr_scale", 0.05, 1.0, log=True)}

    def __init__(self, context, options=None):
        super().__init__(context, options)
        check_finite(self.options.smax, "smax")
        if self.options.rows not in ROW_RULES:
            raise BenchError(f"TERACON: rows must be one of {', '.join(ROW_RULES)}, got {self.options.rows!r}")
        self.net: TeraconNet | None = None

    def learn(self, tasks, context) -> None:
        for task in tasks:
            if self.net is None:
                self._learn_first(task, context)
            else:
                teacher = copy.deepcopy(self.net).requires_grad_(False).eval()
                self.net.add_task(task)
                self.record(self._fit(task, teacher, context))
            self.learned.append(task.name)

    def restore(self, learnt, context) -> None:
        """T1's gated model (built as `_first_model` builds it, untrained), then each later
        task's embedding, head and the relation mixers."""
        if not learnt:
            return
        first, *later = learnt
        if self.options.shared_first_task:
            encoder = build_encoder(context.n_items, context.backbone).to(context.device)
            head = make_head(first, encoder).to(context.device)
        else:
            encoder, head = self._first_model(first, context)
        install_gates(encoder, gate_conv_outputs=False, method="TERACON")
        self.net = TeraconNet(encoder, head, first, self.options).to(context.device)
        for task in later:
            self.net.add_task(task)

    def _learn_first(self, task, context) -> None:
        """Task 1 with its mask, taken from the T1 cache when the same model was trained before
        (same data, backbone, schedule and T1-relevant options, and the same RNG state to start
        from); a cached model also restores the RNG state its training ended with, so what
        follows is bit-identical."""
        encoder, head = self._first_model(task, context)
        install_gates(encoder, gate_conv_outputs=False, method="TERACON")
        self.net = TeraconNet(encoder, head, task, self.options).to(context.device)
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in LATER_TASKS_ONLY}
        options["t1_lr_scale"] = self.options.later_lr_scale if self.options.later_lr_from <= 1 else 1.0
        extra = {"options": options, "rng": t1cache.rng_digest()}

        def train() -> dict:
            log = self._fit(task, None, context)
            return {"model": self.net.state_dict(), "log": dataclasses.asdict(log), "rng": checkpoints.rng_states()}

        entry = context.first_model_entry("TERACON T1", "teracon", task, context.backbone, extra, train,
                                          code=(__file__, _gates.__file__))
        self.net.load_state_dict(entry["model"])
        checkpoints.set_rng_states(entry["rng"])
        self.record(FitLog(**entry["log"]))

    def _first_model(self, task, context):
        """A fresh encoder that T1 trains once with its mask (train_task1.py), or the run's
        shared T1 model (`shared_first_task`), which T1 then trains again with its mask."""
        if self.options.shared_first_task:
            return context.pretrained(task)
        encoder = released_encoder(build_encoder(context.n_items, context.backbone), self.options).to(context.device)
        return encoder, task_head(task, encoder, self.options.heads).to(context.device)

    def _fit(self, task, teacher, context):
        net, options = self.net, self.options
        annealing = Annealing(options.smax)
        k = net.index(task.name)
        state = RetentionState(options.initial_ratio, 0 if teacher is None else len(teacher.tasks), options.rows)

        def loss_fn(x, y):
            hidden, mask = net.hidden(k, annealing.s, x)
            if task.kind is TaskKind.NEXT_ITEM and options.t1_padding_loss:
                loss = padded_next_item_loss(hidden, net.heads[k], x)
            else:
                loss = training_loss(task, hidden, net.heads[k], x, y)
            if teacher is None or options.alpha == 0:
                return loss
            kept, teacher_masks = retention_loss(net, teacher, x, annealing.s, state.ratios,
                                                 state.sample_rows(len(x), x.device))
            state.update(teacher_masks, mask.detach(), options.similarity_scale, options.min_ratio)
            return loss + options.alpha * kept

        def score_fn(x):
            hidden, _ = net.hidden(k, options.smax, x)
            return evaluation_scores(task, hidden, net.heads[k])

        def clamp():
            with torch.no_grad():
                for e in net.task_embeddings:
                    e.clamp_(-options.thres_emb, options.thres_emb)

        hooks = TrainHooks(on_batch_start=annealing, after_step=clamp, resumable=[state])
        train = context.train_for(task)
        if k + 1 >= options.later_lr_from:
            train = dataclasses.replace(train, lr=train.lr * options.later_lr_scale)
        return context.fit(task, net.parameters(), loss_fn, score_fn, net, hooks=hooks,
                           description=f"TERACON {task.name}", train=train)

    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        k = self.net.index(task.name)
        hidden, _ = self.net.hidden(k, self.options.smax, inputs)
        return evaluation_scores(task, hidden, self.net.heads[k])


def expected_rows(exact: float) -> int:
    """Stochastic rounding: floor(x) + 1 with probability frac(x), so E[rows] = x exactly.
    The draw is on the CPU generator: no device sync, and reproducible from the run's seed."""
    whole = math.floor(exact)
    return whole + int(float(torch.rand(())) < exact - whole)


ROW_RULES = {"int": int, "ceil": math.ceil, "expected": expected_rows}


class RetentionState:
    """Per-old-task sampling ratios r_i (eq. 15) and the batch rows they select (eq. 14)."""

    def __init__(self, initial: float, n_old: int, rows: str = "int"):
        self._ratios = [initial] * n_old
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None, float] | None = None
        self.round = ROW_RULES[rows]

    @property
    def ratios(self) -> list[float]:
        """The latest r_i. `update` leaves them on the device and starts their copy to the host;
        they are read when the next batch needs them, by which time that copy has long run, so
        the host never waits for a step to finish (the values are those of a per-batch .item())."""
        if self._pending is not None:
            values, ready, floor = self._pending
            if ready is not None:
                ready.synchronize()
            self._ratios, self._pending = [max(floor, r) for r in values.tolist()], None
        return self._ratios

    @ratios.setter
    def ratios(self, values: list[float]) -> None:
        self._ratios, self._pending = list(values), None

    def sample_rows(self, batch: int, device) -> list[torch.Tensor]:
        """round(r_i * batch) random rows per old task. The code truncates (int): with related
        tasks (r ~ 0.0025) that is ~2 rows of a 1024-row batch, and none of a 128-row batch, where
        retention is off; "expected" keeps the paper's fraction r_i of any batch on average."""
        return [torch.randperm(batch, device=device)[:self.round(batch * r)] for r in self.ratios]

    def update(self, teacher_masks, current_mask, scale: float, floor: float) -> None:
        if not teacher_masks:
            return
        values = torch.stack([sampling_ratio(m, current_mask, scale) for m in teacher_masks]).detach()
        ready = None
        if values.is_cuda:  # into pinned memory without waiting; an event says when it is there
            values = values.to("cpu", non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        self._pending = (values, ready, floor)

    def state_dict(self) -> dict:  # the ratios move every batch: in-task checkpoints keep them
        return {"ratios": list(self.ratios)}

    def load_state_dict(self, state: dict) -> None:
        self.ratios = list(state["ratios"])
