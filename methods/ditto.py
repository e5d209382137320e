"""DITTO: dynamic time-aware continual user representation learning (Choi et al., SIGIR 2025).

Read from the released code (github seungyoon-Choi/DITTO_official, HEAD cfcd3b9); file:line
below refers to it. docs/methods/ditto.md has the same list for users.

Backbone: TERACON's relation-aware masked backbone, reused from methods/teracon.py
(`TeraconNet`, its task embeddings U(0, 2) and relation mixers): ditto.py `attn_fmask`
(L83-102) and `mask` (L68-71) are TERACON's, applied after both ReLUs of every block
(L145, L153); item embedding U(+-sqrt(1/rows)) with a trained padding row (L216-218), LayerNorm
eps 1e-8 (L38, L40) (`released_encoder`). On SASRec the masks gate each block's attention and
feed-forward outputs (the `gates` sites, as TERACON; DITTO's rebuttal Table 5 ran it there).

Heads (ditto.py L238-241): every task's head is Linear(d, d), weights N(0, 0.01), bias 0.1.
- item-vocabulary tasks (T1, and item tasks whose targets are shared item ids,
  `task.shared_targets`): the score of item j is <head(h), E_j> with the shared item table E;
  loss = BPR summed (not averaged) over the batch and `negatives` (99) negatives,
  -sum log sigmoid(<o, E_pos> - <o, E_neg>) (train_ditto.py L265-270, L289-295);
- class tasks: cross-entropy over the d outputs (L298), so labels must be < d; the harness
  scores the class task by all d outputs, as model_test_acc's argmax (utils.py L215): a
  prediction outside the labels is wrong, as in the code;
- HARNESS ADDITION: item tasks with their own target vocabulary (TTL, ML, synthetic: targets are
  not item ids) have no released counterpart. They get a per-task target table
  nn.Embedding(n_targets, d), initialised as the item table (U(+-sqrt(1/rows))), scored by dot
  product with head(h) and trained with the same BPR loss over uniform negatives of the table.

Task 1 (train_task1.py, model generator_hat_other.py): a fresh masked backbone (plain mask
sigmoid(s e_1)) trained with BPR at every position (inputs batch[:, :-1], targets batch[:, 1:],
padding targets included, L131-132, L157-167) against 99 negatives drawn from `dl.prob`
(L134): data_loader.py L67-85 builds it as exp(-(r+1)/(rho V)) by frequency rank r (rho 0.3,
V = vocabulary with padding) but stores it in rank order, and np.random.choice reads it by
item id, so item id j is drawn with the probability of the j-th most frequent item
(`t1_negatives="released"`; "uniform": uniform ids). The T1 model is cached like TERACON's
(`context.first_model_entry`).

Later tasks (train_ditto.py); with the frozen copy of the model before the task (teacher) and
the student's masks under the annealed s (L215):
- sampling ratio per old task i, r_i = 1 - mean_l sigmoid(2 cos(m_i^l, m_new^l)) (utils.py
  L239-248, teracon.py `sampling_ratio` with scale 2), 0.9 before the first batch (L194),
  recomputed after every batch from the teacher's masks (L381); k_i = min(B, max(int(r_i B), 20))
  (L246, L256).
- mean embedding of task i: the mean of the item table rows 0..V_i (V_i = the vocabulary after
  task i, padding row included) once task i is learnt (L176-177 saves the previous model's mean
  when the next task starts: the same values).
- FKT (alpha 0.7, L301-327): users = the top-k_i of the batch by cosine between the teacher's
  representation for task i (its hidden state, L243) and task i's mean embedding, kept if their
  sequence holds old items only (no id > V_{t-1}, L227; next-item tasks read the sequence
  without its last item, L275, L308). Item tasks: MSE between student and teacher scores
  <h_i, E_neg> of their HIDDEN states (not head outputs, L319-325) on `negatives` old items
  drawn uniformly from 0..V_{t-1} (padding included, L281), E detached; class tasks: MSE of the
  hidden states (L327). Each weighted r_i / sum r.
- BKT1 (beta 0.4, L335-360): users with new items (some id > V_{t-1}), the top-k_1 by their
  number of distinct new items; T1's BPR at every position of the sequence without its last item
  (input seq[:, :-2], targets seq[:, 1:-1], padding included) under T1's relation-aware mask,
  uniform negatives over 0..V_t.
- BKT2 (gamma 0.8, L362-376) for every other item task i: the top-k_i users LEAST similar to
  task i's mean embedding whose sequences hold an id > V_i + 1 (L231: the code compares with the
  row count V_i + 1 of task i's table, so item V_i + 1 still counts as known; kept); two views,
  `aug_masking` (drop 20 % of the positions, left-pad) and `aug_substitute` (replace 20 % of the
  positions) (utils.py L250-299), and InfoNCE over the cosine similarities of the two views'
  hidden states under task i's mask, no temperature, summed over the 2n rows.
  `aug_substitute` quirks kept: row i of the batch replaces its positions with the in-batch item
  most similar to in-batch item number i (it indexes the similarity matrix by the row, L286),
  `torch.unique(...)[1:]` drops the smallest id (padding when present).
- total: L_task + alpha FKT + beta BKT1 + gamma BKT2 (L390); Adam, weight decay 0, no gradient
  clipping, no HAT compensation (L187, L398-404); task embeddings clamped at +-6 (L407-410).
- "new items" are ids above the previous step's vocabulary (`Task.n_items_known`; None = the
  whole vocabulary, so there are none and both BKT losses are 0, as in the code on such data).
Switches `fkt`, `task1_bkt`, `rest_bkt` (L64-66) are options; rows `DITTO+nofkt`,
`DITTO+notask1bkt`, `DITTO+norestbkt` are the ablations (paper Table 9).

Deviations from the released code (each named):
- randomness: negatives, augmentation positions and batch order come from torch's generators,
  seeded from the run; the code draws them with NumPy's global generator (same distributions).
- vectorised: the augmentation loops and the InfoNCE double loop (utils.py L250-299,
  train_ditto.py L370-376) are computed over the whole batch; tests/test_ditto.py checks them
  against literal transcriptions of the loops. BPR uses log-sigmoid (the code's
  sigmoid().log() underflows to -inf for large margins).
- edge cases where the code fails: an FKT user set that is empty (the code's MSE of an empty
  tensor is NaN) adds 0; `aug_substitute` for a row index beyond the number of distinct in-batch
  items (the code raises IndexError) uses the row index modulo that number; with a single
  distinct item the item itself.
- model selection: the harness's by default (validation full-ranking MRR@5 or accuracy, every
  row, ties broken by validation loss, best epoch restored); the code selects on the sampled
  MRR@5 of the LAST validation batch only (train_ditto.py L476, `acc = sum(result_[0])/...`
  after the loop; T1: of every batch, train_task1.py L262), which `train.protocol=released`
  gives (`released_validation`), with the partial last training batch dropped and s annealed
  over n/B (utils.py L55, train_ditto.py L215). When the rows divide evenly into batches,
  that protocol still drops the last (full) batch, which DITTO's getBatch (`<=`) keeps; the
  early stop counts epochs after `train.min_epochs` only.
- a non-finite task loss: the code skips the step (L385-388); the harness's `train.nonfinite`.

BPR pairs (`pairs`): the code's training BPR (T1, task, BKT1) tiles the positives' scores but
lays the negatives' out row by row, so a negative is set against another row's positive (see
`bpr_loss`); that is the default, as released. Variant `DITTO+userpairs` is the paper's BPR,
every positive against its own negatives. Validation and test score per row in the code too.
- evaluation: the run's `eval.protocol` (full ranking by default; `sampled` is the code's
  1 + 99 negatives).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.engine import checkpoints, t1cache
from bench.engine.backbone import build_encoder
from bench.engine.objectives import evaluation_pairs
from bench.engine.tasks import Task, TaskKind
from bench.engine.training import FitLog, TrainHooks, as_tensors
from bench.errors import BenchError
from bench.methods import _gates
from bench.methods import teracon
from bench.methods._gates import Annealing, check_finite, install_gates
from bench.methods.base import ContinualMethod, module_key
from bench.methods.teracon import RetentionState, TeraconNet, released_encoder
from bench.registry import METHODS


@dataclass
class DITTOOptions:
    alpha: float = field(default=0.7, metadata={"min": 0})  # FKT weight (train_ditto.py L31)
    beta: float = field(default=0.4, metadata={"min": 0})  # BKT1 weight (L33)
    gamma: float = field(default=0.8, metadata={"min": 0})  # BKT2 weight (L35)
    fkt: bool = True  # --fkt 1 (L66)
    task1_bkt: bool = True  # --task1_bkt 1 (L64)
    rest_bkt: bool = True  # --rest_bkt 1 (L65)
    smax: float = field(default=50.0, metadata={"gt": 0})  # --smax 50 (L53; train_task1.py L42)
    thres_emb: float = field(default=6.0, metadata={"gt": 0})  # clamp of the task embeddings (L407)
    negatives: int = field(default=99, metadata={"min": 1})  # --n_neg 99 (L60; train_task1.py L44)
    initial_ratio: float = field(default=0.9, metadata={"min": 0, "max": 1})  # L194
    similarity_scale: float = field(default=2.0, metadata={"gt": 0})  # utils.py L245: sigmoid(2 cos)
    min_rows: int = field(default=20, metadata={"min": 0})  # k = max(int(r B), 20) (L246)
    augment_ratio: float = field(default=0.2, metadata={"min": 0, "max": 1})  # aug_masking/substitute 0.2 (L365-366)
    t1_rho: float = field(default=0.3, metadata={"gt": 0})  # --rho 0.3 (train_task1.py L43)
    # BPR pairs (`bpr_loss`): "released" = the code's tiled positives, each negative set against
    # another row's positive (train_task1.py L159-167, train_ditto.py L290-295, L355-360);
    # "user" = each row's positive against its own negatives (the paper's BPR; DITTO+userpairs)
    pairs: Literal["released", "user"] = "released"
    # T1 negatives: "released" = data_loader.py's rank-ordered list read by item id (see the
    # module docstring); "uniform" = item ids 0..V uniformly
    t1_negatives: Literal["released", "uniform"] = "released"
    init_low: float = 0.0  # task embeddings ~ U(0, 2) (ditto.py L48-51, task_embs [0, 2])
    init_high: float = 2.0
    norm_eps: float = field(default=1e-8, metadata={"gt": 0})  # nn.LayerNorm(eps=1e-8) (ditto.py L38)
    # "released": U(+-sqrt(1/rows)) on every row (ditto.py L216-218); "harness": N(0, 0.02) start
    # (the padding row then trains like any other row under DITTO's losses, as in the code)
    embedding_init: Literal["released", "harness"] = "released"


# Options that act from task 2 on only: the variants share one cached T1 model.
LATER_TASKS_ONLY = ("alpha", "beta", "gamma", "fkt", "task1_bkt", "rest_bkt", "initial_ratio",
                    "similarity_scale", "min_rows", "augment_ratio")


# --------------------------------------------------------------------------- losses and helpers

def ditto_head(d: int) -> nn.Linear:
    """ditto.py L238-241: Linear(d, d), weights N(0, 0.01), bias 0.1."""
    head = nn.Linear(d, d)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01)
        head.bias.fill_(0.1)
    return head


def target_table(n_targets: int, d: int) -> nn.Embedding:
    """The harness's table of a task's own targets, initialised as the item table (U(+-sqrt(1/rows)))."""
    table = nn.Embedding(n_targets, d)
    bound = (1.0 / n_targets) ** 0.5
    with torch.no_grad():
        table.weight.uniform_(-bound, bound)
    return table


def candidate_scores(outputs: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """<outputs[r], weight[ids[r, j]]> (rows x candidates). A small table is scored whole and
    gathered (rows x V floats), a large one gathered first (rows x candidates x d floats): the
    same values, whichever needs less memory."""
    if weight.shape[0] <= ids.shape[1] * weight.shape[1]:
        return (outputs @ weight.T).gather(1, ids)
    return torch.einsum("nd,nkd->nk", outputs, weight[ids])


def bpr_loss(outputs: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
             negatives: torch.Tensor, pairs: str = "released") -> torch.Tensor:
    """-sum log sigmoid(pos - neg) with scores <o, e>, e = rows of `weight`: outputs (N, d),
    targets (N,), negatives (N, n); summed over rows and negatives (train_ditto.py L289-295).

    `pairs="user"` pairs each row's positive with its own negatives (the paper's BPR).
    `pairs="released"` pairs them as the code does: the negatives' scores are laid out row by
    row (`outputs.unsqueeze(1).repeat(1, n, 1).view(-1, d)`) but the positives' are TILED
    (`pos.unsqueeze(1).repeat(1, n, 1)` on a 2-D tensor repeats along a new leading dimension),
    so flat pair k sets row k // n's negative against row k mod N's positive
    (train_task1.py L159-167, train_ditto.py L290-295 and L355-360)."""
    pos = (outputs * weight[targets]).sum(-1)
    neg = candidate_scores(outputs, weight, negatives)
    paired = pos.repeat(neg.shape[1]).view_as(neg) if pairs == "released" else pos[:, None]
    return -F.logsigmoid(paired - neg).sum()


def released_t1_probabilities(rows: int, rho: float) -> torch.Tensor:
    """data_loader.py L67-85 as train_task1.py L134 reads it: id j gets exp(-(j+1)/(rho V)),
    normalised (the list is in rank order and indexed by id)."""
    ranks = torch.arange(rows, dtype=torch.float64)
    p = torch.exp(-(ranks + 1) / (rho * rows))
    return p / p.sum()


def rows_to_take(batch: int, ratio: float, floor: int) -> int:
    """k = min(B, max(int(r B), floor)) (train_ditto.py L246, L256, L343)."""
    return min(batch, max(int(batch * ratio), floor))


def distinct_above(inputs: torch.Tensor, known: int) -> torch.Tensor:
    """Per row, the number of distinct ids > known (BKT1's count, train_ditto.py L338-341)."""
    values = torch.where(inputs > known, inputs, torch.zeros_like(inputs)).sort(dim=1).values
    new = values > 0
    first = torch.ones_like(new[:, :1])
    changed = torch.cat([first, values[:, 1:] != values[:, :-1]], dim=1)
    return (new & changed).sum(dim=1)


def choose_positions(inputs: torch.Tensor, ratio: float) -> torch.Tensor:
    """The positions one augmentation edits: per row int(ratio * #non-zero) distinct positions
    drawn uniformly from the first non-zero position to the end (utils.py L251-257, L275-281)."""
    count = (ratio * (inputs > 0).sum(dim=1).to(torch.int)).to(torch.int64)  # float32, as the code
    length = inputs.shape[1]
    start = (inputs != 0).int().argmax(dim=1)
    keys = torch.rand(inputs.shape, device=inputs.device)
    positions = torch.arange(length, device=inputs.device)
    keys = torch.where(positions[None, :] < start[:, None], torch.full_like(keys, 2.0), keys)
    rank = keys.argsort(dim=1).argsort(dim=1)
    return rank < count[:, None]


def mask_positions(inputs: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """aug_masking (utils.py L250-270): drop the chosen positions, left-pad with zeros."""
    order = (~chosen).int().argsort(dim=1, stable=True)  # dropped first, then the kept in order
    out = inputs.gather(1, order)
    dropped = chosen.sum(dim=1, keepdim=True)
    return out.masked_fill(torch.arange(inputs.shape[1], device=inputs.device)[None, :] < dropped, 0)


def in_batch_similarity(items: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """torchmetrics' pairwise_cosine_similarity of the in-batch items' embeddings."""
    vectors = table[items]
    vectors = vectors / vectors.norm(dim=1, keepdim=True)
    return vectors @ vectors.T


def substitute_positions(inputs: torch.Tensor, chosen: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """aug_substitute (utils.py L272-299): row i's chosen positions all take the in-batch item
    ranked second by similarity to in-batch item number i (the code indexes by the row)."""
    items = torch.unique(inputs.reshape(-1))[1:]
    if len(items) == 0:
        return inputs.clone()
    with torch.no_grad():
        similarity = in_batch_similarity(items, table)
    rows = torch.arange(len(inputs), device=inputs.device) % len(items)
    second = similarity[rows].topk(min(2, len(items)), dim=1).indices[:, -1]
    return torch.where(chosen, items[second][:, None], inputs)


def info_nce(hidden: torch.Tensor) -> torch.Tensor:
    """train_ditto.py L369-376: rows r and r + n are the two views of one user; for every row,
    -log(exp(cos(own, pair)) / sum over the other rows of exp(cos)), summed over the 2n rows."""
    n = len(hidden) // 2
    norms = hidden.norm(dim=1).clamp_min(1e-6)
    cos = (hidden @ hidden.T) / (norms[:, None] * norms[None, :])
    index = torch.arange(len(hidden), device=hidden.device)
    pair = (index + n) % len(hidden)
    others = cos.masked_fill(torch.eye(len(hidden), dtype=torch.bool, device=hidden.device), float("-inf"))
    return (torch.logsumexp(others, dim=1) - cos[index, pair]).sum()


def known_items(task: Task, n_items: int) -> int:
    """The vocabulary once `task`'s data has arrived (ids 1..V)."""
    return task.n_items_known if task.n_items_known is not None else n_items


# --------------------------------------------------------------------------- the method

@METHODS.register("DITTO")
class DITTO(ContinualMethod):
    paper = "Choi et al., SIGIR 2025"
    Options = DITTOOptions
    sites = ("gates",)
    mechanisms = {
        "nextitnet": "TERACON's relation-aware masks on the conv output channels after each ReLU",
        "sasrec": "TERACON's relation-aware masks on each block's attention and feed-forward outputs",
    }
    variants = {
        "nofkt": {"fkt": False},  # ablation: no forward knowledge transfer (paper Table 9)
        "notask1bkt": {"task1_bkt": False},  # ablation: no backward transfer to T1
        "norestbkt": {"rest_bkt": False},  # ablation: no backward transfer to the other item tasks
        "userpairs": {"pairs": "user"},  # the paper's BPR: each positive against its own negatives
    }

    @classmethod
    def search_space(cls, trial):
        return {**super().search_space(trial),
                "alpha": trial.suggest_float("alpha", 0.1, 10.0, log=True),
                "beta": trial.suggest_float("beta", 0.05, 5.0, log=True),
                "gamma": trial.suggest_float("gamma", 0.05, 5.0, log=True)}

    def __init__(self, context, options=None):
        super().__init__(context, options)
        check_finite(self.options.smax, "smax")
        self.net: TeraconNet | None = None
        self.targets = nn.ModuleDict()  # own target tables of item tasks without shared targets
        self.register_buffer("mean_embeddings", torch.zeros(0, context.backbone.embedding_dim))
        self._tasks: list[Task] = []  # the tasks learnt (kinds and vocabularies), never saved
        self._t1_probabilities: dict = {}  # T1's negative distribution, built once per vocabulary

    # ------------------------------------------------------------ structure
    def _build(self, first: Task, context) -> None:
        encoder = released_encoder(build_encoder(context.n_items, context.backbone), self.options)
        encoder = encoder.to(context.device)
        install_gates(encoder, gate_conv_outputs=False, method="DITTO")
        d = encoder.embedding.embedding_dim
        self.net = TeraconNet(encoder, ditto_head(d), first, self.options).to(context.device)
        self._add_targets(first, d, context)

    def _add_task(self, task: Task, context) -> None:
        d = self.net.encoder.embedding.embedding_dim
        self.net.add_task(task, ditto_head(d))
        self._add_targets(task, d, context)

    def _add_targets(self, task: Task, d: int, context) -> None:
        if task.kind is TaskKind.CLASS and task.n_targets > d:
            raise BenchError(f"DITTO: task {task.name} has {task.n_targets} classes, more than the {d} outputs "
                             f"of its Linear(d, d) head (ditto.py L238); use a larger backbone.embedding_dim")
        if task.kind is TaskKind.ITEM and not task.shared_targets:
            self.targets[module_key(task)] = target_table(task.n_targets, d).to(context.device)
        self._tasks.append(task)

    def _keep_mean(self) -> None:
        """Task k's mean item embedding over its vocabulary rows 0..V_k (train_ditto.py L176)."""
        rows = known_items(self._tasks[len(self.mean_embeddings)], self.n_items) + 1
        mean = self.net.encoder.embedding.weight[:rows].detach().mean(dim=0)
        self.mean_embeddings = torch.cat([self.mean_embeddings, mean[None]])

    def restore(self, learnt, context) -> None:
        """T1's masked model (untrained), then each later task's embedding, head and table."""
        if not learnt:
            return
        self.n_items = context.n_items
        first, *later = learnt
        self._build(first, context)
        for task in later:
            self._add_task(task, context)
        self.mean_embeddings = torch.zeros(len(learnt), self.mean_embeddings.shape[1], device=context.device)

    def grow_items(self, n_items: int, context) -> None:
        """The harness's growth of the item table (new rows as ditto.py L216-218, old rows
        copied, train_ditto.py L149); DITTO's other state is per task, not per item: the target
        tables of its own-vocabulary tasks do not grow, the mean embeddings are kept."""
        super().grow_items(n_items, context)
        self.n_items = n_items

    # ------------------------------------------------------------ learning
    def learn(self, tasks, context) -> None:
        self.n_items = context.n_items
        for task in tasks:
            if self.net is None:
                self._learn_first(task, context)
            else:
                teacher = copy.deepcopy(self.net).requires_grad_(False).eval()
                self._add_task(task, context)
                self.record(self._fit(task, teacher, context))
            self._keep_mean()
            self.learned.append(task.name)

    def _learn_first(self, task, context) -> None:
        """Task 1 with its mask (train_task1.py), from the T1 cache when trained before."""
        self._build(task, context)
        options = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in LATER_TASKS_ONLY}
        extra = {"options": options, "rng": t1cache.rng_digest()}

        def train() -> dict:
            log = self._fit(task, None, context)
            return {"model": self.state_dict(), "log": dataclasses.asdict(log), "rng": checkpoints.rng_states()}

        entry = context.first_model_entry("DITTO T1", "ditto", task, context.backbone, extra, train,
                                          code=(__file__, _gates.__file__, teracon.__file__))
        self.load_state_dict(entry["model"])
        checkpoints.set_rng_states(entry["rng"])
        self.record(FitLog(**entry["log"]))

    def _fit(self, task, teacher, context) -> FitLog:
        net, options = self.net, self.options
        annealing = Annealing(options.smax)
        k = net.index(task.name)
        state = RetentionState(options.initial_ratio, k)
        first = teacher is None
        old = None if first else known_items(self._tasks[k - 1], self.n_items)

        def loss_fn(x, y):
            s = annealing.s
            if first and task.kind is TaskKind.NEXT_ITEM:
                return self.first_task_loss(task, x, s)
            hidden, mask = net.hidden(k, s, x if task.kind is not TaskKind.NEXT_ITEM else x[:, :-1])
            if task.kind is TaskKind.NEXT_ITEM:
                y = x[:, -1]
            loss = self.task_loss(k, task, hidden[:, -1], y)
            if first:
                return loss
            parts = self.transfer_losses(teacher, x, s, k, old, state.ratios)
            state.update(parts.pop("teacher_masks"), mask.detach(), options.similarity_scale, 0.0)
            return (loss + options.alpha * parts["fkt"] + options.beta * parts["bkt1"]
                    + options.gamma * parts["bkt2"])

        def clamp():
            with torch.no_grad():
                for e in net.task_embeddings:
                    e.clamp_(-options.thres_emb, options.thres_emb)

        hooks = TrainHooks(on_batch_start=annealing, after_step=clamp, resumable=[state])
        train = context.train_for(task)
        validate = None
        if train.protocol == "released":
            validate = lambda: self.released_validation(task, context.device, 512 if first else train.batch_size)
        return context.fit(task, self.parameters(), loss_fn, lambda x: self.scores(task, x), self, hooks=hooks,
                           description=f"DITTO {task.name}", train=train, validate=validate)

    @torch.no_grad()
    def released_validation(self, task: Task, device, size: int) -> float:
        """`train.protocol=released`: the code's selection score. The full batches of a fresh
        shuffle of the validation split (utils.py getBatch, L55 `<=`; all rows when none is
        full); item tasks: MRR@5 of the target among itself and `negatives` drawn negatives
        (strictly higher scores rank above it), of the LAST batch only for later tasks
        (train_ditto.py L453-476) and over every batch for T1 with its negatives
        (train_task1.py L223-262); class tasks: accuracy over all d outputs (L465-479)."""
        k = self.net.index(task.name)
        inputs, targets = evaluation_pairs(task, *as_tensors(task.valid, device))
        order = torch.randperm(len(targets))
        full = len(targets) // size * size
        blocks = order[:full].view(-1, size) if full else order[None]
        values = []
        for rows in blocks:
            rows = rows.to(device)
            hidden, _ = self.net.hidden(k, self.options.smax, inputs[rows])
            outputs = self.net.heads[k](hidden[:, -1])
            y = targets[rows]
            if task.kind is TaskKind.CLASS:
                values.append((outputs.argmax(dim=1) == y).double())
                continue
            values.append(self._sampled_mrr(task, outputs, y, k == 0 and task.kind is TaskKind.NEXT_ITEM))
        if task.kind is TaskKind.CLASS or (k == 0 and task.kind is TaskKind.NEXT_ITEM):
            return float(torch.cat(values).mean())
        return float(values[-1].mean())

    def _sampled_mrr(self, task: Task, outputs: torch.Tensor, y: torch.Tensor, first: bool) -> torch.Tensor:
        """Per row MRR@5 of the target among itself and `negatives` negatives (L442-460)."""
        n = self.options.negatives
        if task.item_vocabulary:
            table, rows = self.net.encoder.embedding.weight, self.vocabulary_rows(task)
        else:
            table = self.targets[module_key(task)].weight
            rows = len(table)
        if first and self.options.t1_negatives == "released":
            p = released_t1_probabilities(rows, self.options.t1_rho).float().to(y.device)
            negatives = torch.multinomial(p, len(y) * n, replacement=True).view(len(y), n)
        else:
            negatives = torch.randint(0, rows, (len(y), n), device=y.device)
        positive = (outputs * table[y]).sum(dim=1, keepdim=True)
        rank = 1 + (candidate_scores(outputs, table, negatives) > positive).sum(dim=1)
        return torch.where(rank <= 5, 1.0 / rank.double(), torch.zeros_like(rank, dtype=torch.float64))

    def item_rows(self, task: Task) -> int:
        """Rows of the item table an item-vocabulary task is scored over: the vocabulary now,
        padding included (never less than the task's own output size)."""
        rows = max(task.output_size, self.n_items + 1)
        return min(rows, self.net.encoder.embedding.num_embeddings)

    def vocabulary_rows(self, task: Task) -> int:
        """`len(items)` while `task` trains: the dictionary once its data arrived, padding
        included (uniform negatives range over it, train_ditto.py L265, L347)."""
        return min(known_items(task, self.n_items) + 1, self.net.encoder.embedding.num_embeddings)

    def first_task_loss(self, task: Task, x: torch.Tensor, s: float) -> torch.Tensor:
        """train_task1.py L131-167: BPR at every position, padding targets included."""
        hidden, _ = self.net.hidden(0, s, x[:, :-1])
        outputs = self.net.heads[0](hidden).flatten(0, 1)
        targets = x[:, 1:].flatten()
        rows = self.vocabulary_rows(task)
        n = self.options.negatives
        if self.options.t1_negatives == "released":
            key = (rows, str(x.device))
            if key not in self._t1_probabilities:
                self._t1_probabilities = {key: released_t1_probabilities(rows, self.options.t1_rho).float().to(x.device)}
            p = self._t1_probabilities[key]
            negatives = torch.multinomial(p, len(targets) * n, replacement=True).view(len(targets), n)
        else:
            negatives = torch.randint(0, rows, (len(targets), n), device=x.device)
        return bpr_loss(outputs, self.net.encoder.embedding.weight, targets, negatives, self.options.pairs)

    def task_loss(self, k: int, task: Task, last: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The current task's loss from its representation `last` (B, d)."""
        outputs = self.net.heads[k](last)
        if task.kind is TaskKind.CLASS:
            return F.cross_entropy(outputs, y)
        n = self.options.negatives
        if task.item_vocabulary:
            table, rows = self.net.encoder.embedding, self.vocabulary_rows(task)
        else:
            table = self.targets[module_key(task)]
            rows = table.num_embeddings
        negatives = torch.randint(0, rows, (len(y), n), device=y.device)
        return bpr_loss(outputs, table.weight, y, negatives, self.options.pairs)

    def transfer_losses(self, teacher: TeraconNet, x: torch.Tensor, s: float, k: int, old: int,
                        ratios: list[float]) -> dict:
        """FKT, BKT1 and BKT2 of one batch (train_ditto.py L227-376), and the teacher's masks."""
        options = self.options
        zero = torch.zeros((), device=x.device)
        out = {"fkt": zero, "bkt1": zero, "bkt2": zero}
        batch = len(x)
        with torch.no_grad():
            out["teacher_masks"] = [teacher.mask(i, s) for i in range(k)]
        need_fkt = options.fkt and options.alpha != 0
        need_bkt2 = options.rest_bkt and options.gamma != 0
        only_old = ~(x > old).any(dim=1)  # inputs_masking, L227
        fkt = zero
        weight = sum(ratios)
        for i in range(k):
            kind = self._tasks[i].kind
            bkt2 = need_bkt2 and i != 0 and kind is not TaskKind.CLASS
            if not (need_fkt or bkt2):
                continue
            take = rows_to_take(batch, ratios[i], options.min_rows)
            with torch.no_grad():
                hidden, _ = teacher.hidden(i, s, x)
                similarity = F.cosine_similarity(self.mean_embeddings[i][None], hidden[:, -1], dim=1)
            if need_fkt and weight > 0:
                rows = similarity.topk(take).indices
                rows = rows[only_old[rows]]
                if len(rows):
                    fkt = fkt + ratios[i] / weight * self._forward_transfer(teacher, i, x[rows], s, old)
            if bkt2:
                rows = (-similarity).topk(take).indices
                known = known_items(self._tasks[i], self.n_items)
                rows = rows[(x[rows] > known + 1).any(dim=1)]  # L231: the table's row count, kept
                if len(rows):
                    out["bkt2"] = out["bkt2"] + self._contrastive(i, x[rows], s)
        out["fkt"] = fkt
        if options.task1_bkt and options.beta != 0 and self._tasks[0].kind is TaskKind.NEXT_ITEM:
            out["bkt1"] = self._first_task_backward(x[~only_old], s, old, ratios[0])
        return out

    def _forward_transfer(self, teacher: TeraconNet, i: int, x: torch.Tensor, s: float, old: int) -> torch.Tensor:
        """L315-327: MSE of old-item scores of the hidden states (class tasks: of the states)."""
        if self._tasks[i].kind is TaskKind.NEXT_ITEM:
            x = x[:, :-1]
        with torch.no_grad():
            target = teacher.hidden(i, s, x)[0][:, -1]
        student = self.net.hidden(i, s, x)[0][:, -1]
        if self._tasks[i].kind is TaskKind.CLASS:
            return F.mse_loss(student, target)
        n = self.options.negatives
        negatives = torch.randint(0, old + 1, (len(x), n), device=x.device)
        table = self.net.encoder.embedding.weight.detach()
        return F.mse_loss(candidate_scores(student, table, negatives), candidate_scores(target, table, negatives))

    def _first_task_backward(self, x: torch.Tensor, s: float, old: int, ratio: float) -> torch.Tensor:
        """BKT1, L335-360: T1's BPR on the users with the most distinct new items."""
        if len(x) == 0:
            return torch.zeros((), device=x.device)
        rows = distinct_above(x, old).topk(rows_to_take(len(x), ratio, self.options.min_rows)).indices
        x = x[rows]
        hidden, _ = self.net.hidden(0, s, x[:, :-2])
        outputs = self.net.heads[0](hidden).flatten(0, 1)
        targets = x[:, 1:-1].flatten()
        n = self.options.negatives
        negatives = torch.randint(0, self.vocabulary_rows(self._tasks[-1]), (len(targets), n), device=x.device)
        return bpr_loss(outputs, self.net.encoder.embedding.weight, targets, negatives, self.options.pairs)

    def _contrastive(self, i: int, x: torch.Tensor, s: float) -> torch.Tensor:
        """BKT2, L362-376: InfoNCE between a masked and a substituted view under task i's mask."""
        ratio = self.options.augment_ratio
        masked = mask_positions(x, choose_positions(x, ratio))
        substituted = substitute_positions(x, choose_positions(x, ratio), self.net.encoder.embedding.weight)
        hidden, _ = self.net.hidden(i, s, torch.cat([masked, substituted]))
        return info_nce(hidden[:, -1])

    # ------------------------------------------------------------ scoring
    def scores(self, task, inputs: torch.Tensor) -> torch.Tensor:
        """Item-vocabulary tasks: <head(h), E_j> over the item table (padding -inf); own
        target tables likewise; class tasks: all d outputs (argmax as model_test_acc)."""
        k = self.net.index(task.name)
        hidden, _ = self.net.hidden(k, self.options.smax, inputs)
        outputs = self.net.heads[k](hidden[:, -1])
        if task.kind is TaskKind.CLASS:
            return outputs
        if task.item_vocabulary:
            scores = outputs @ self.net.encoder.embedding.weight[:self.item_rows(task)].T
            return scores.index_fill(1, torch.zeros(1, dtype=torch.long, device=scores.device), float("-inf"))
        return outputs @ self.targets[module_key(task)].weight.T


