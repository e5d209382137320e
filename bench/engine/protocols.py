"""Evaluation protocols: full ranking (default) and sampled-candidate ranking (`eval.protocol`).

Full ranking ranks each target among every candidate of its task (Conure's and TERACON's
released code, the harness's default). Sampled ranking ranks it among 1 positive + `negatives`
drawn candidates, as DITTO's released code does (github seungyoon-Choi/DITTO_official, HEAD
cfcd3b9). Both report MRR/HR/NDCG at every `eval.cutoffs`; classification tasks report
accuracy under both. Only reported scores (R) follow the protocol: validation model selection
stays full-ranking MRR@5, so the two protocols score the same trained models.

What DITTO's released code does (read at cfcd3b9):
- Evaluation: validation in `train_task1.py` L226-243 (T1) and `train_ditto.py` L442-460
  (later tasks), test in `utils.py` `model_test_` L311-327 (T1) and `model_test` L115-132
  (later tasks; `inference_past_tasks_update.py` calls it for past tasks): for each batch,
  `np.random.choice(len(items), B * n_neg)` (n_neg 99), i.e. drawn **with replacement** from
  **every id of the item dictionary, padding id 0 included**; neither the positive nor the
  user's history is excluded (a negative can be the positive itself). The positive's score is
  column 0 of `cat(pos, neg)`, ranked by `torch.topk` (k = 5 and 5 + 15 = 20); `utils.py`
  `accuracy_test` L67-105 turns the position into MRR, HR, NDCG@5 and @20. A tie's place is
  whatever `topk` returns.
  (`utils.py` `model_test_allneg` L379, a full ranking for T1, is called by no script.)
- Sampling: uniform for T2+ (`train_ditto.py` L442, `utils.py` L132); on T1 with `p=dl.prob`
  (`train_task1.py` L227, `utils.py` L327), where `data_loader.py` `Data_Loader` L66-85 counts
  every token of the whole T1 file (train, validation and test rows, padding included), ranks them by count and gives rank r
  the weight exp(-(r+1) / (rho * N)) (LambdaFM, `--rho` 0.3); the list is in rank order but
  `np.random.choice(len(items), p=...)` reads it by item id, so id i gets the weight of the
  i-th most frequent token, not its own.
- The draws come from the global NumPy state (`np.random.seed(args.seed)`) after training has
  consumed it, so the negatives depend on the batch size and on everything drawn before.

What the harness does (`eval.protocol=sampled`):
- Negatives are drawn with replacement, like DITTO, from the task's candidates only (next-item:
  ids 1..n, the padding id is no candidate; item tasks: their n targets); the positive and the
  history are not excluded, like DITTO. Ties count against the target, as in full ranking, so
  a negative equal to the positive costs one place.
- `eval.sampling=uniform`: every candidate equally likely. `popularity`: proportional to the
  candidate's frequency in the task's **training** split (next-item: item occurrences in the
  training sequences; item tasks: training targets), so no test data enters the distribution
  (DITTO's rank-exponential over the whole file, read by id, is not reproduced).
- Deterministic: the rows of the split are cut into fixed blocks of BLOCK instances and block b
  of task t is drawn from a NumPy generator seeded by (seed, hash of t's name, b), whatever the
  batch size, chunking, `limit_eval_users` or number of DDP ranks (rows keep their split index).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
import torch

from bench.config import EvalConfig
from bench.engine.metrics import AccuracySums, RankingSums, target_ranks
from bench.engine.tasks import Task, TaskKind

BLOCK = 1024  # instances per generator: the unit negatives are drawn in


def task_key(name: str) -> int:
    """A stable 32-bit number for a task name (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "little")


def candidates(task: Task) -> tuple[int, int]:
    """(first id, number of candidates): item ids are 1..n (0 is padding; next-item tasks and
    item tasks with shared targets), other targets 0..n-1."""
    return (1, task.n_targets) if task.item_vocabulary else (0, task.n_targets)


def popularity(task: Task) -> np.ndarray:
    """Each candidate's share of the training split (next-item: occurrences in the training
    sequences; item tasks, shared targets too: training targets); uniform when the split holds none."""
    first, n = candidates(task)
    values = task.train.inputs if task.kind is TaskKind.NEXT_ITEM else task.train.targets
    counts = np.bincount(np.asarray(values).ravel(), minlength=first + n)[first:first + n].astype(np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full(n, 1.0 / max(n, 1))


class NegativeSampler:
    """The negatives of every instance of one task's split, a pure function of (seed, task, row)."""

    def __init__(self, task: Task, negatives: int, sampling: str, seed: int):
        self.first, self.n = candidates(task)
        self.negatives, self.seed, self.key = negatives, seed, task_key(task.name)
        self.cdf = np.cumsum(popularity(task)) if sampling == "popularity" else None
        self._blocks: dict[int, np.ndarray] = {}

    def block(self, index: int) -> np.ndarray:
        """Negatives (BLOCK x negatives candidate ids) of rows index*BLOCK .. (index+1)*BLOCK-1."""
        if index not in self._blocks:
            rng = np.random.default_rng([self.seed, self.key, index])
            if self.cdf is None:
                drawn = rng.integers(0, self.n, size=(BLOCK, self.negatives))
            else:  # inverse CDF: the same as rng.choice(p=...), kept explicit for the docstring
                drawn = np.searchsorted(self.cdf, rng.random((BLOCK, self.negatives)) * self.cdf[-1], side="right")
                drawn = np.minimum(drawn, self.n - 1)
            if len(self._blocks) > 8:  # rows come in order: older blocks are not asked for again
                self._blocks.clear()
            self._blocks[index] = drawn + self.first
        return self._blocks[index]

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Negatives of the instances `rows` (indices in the split), on `rows`' device."""
        index = rows.cpu().numpy()
        out = np.empty((len(index), self.negatives), dtype=np.int64)
        blocks = index // BLOCK
        for block in np.unique(blocks):
            where = blocks == block
            out[where] = self.block(int(block))[index[where] % BLOCK]
        return torch.from_numpy(out).to(rows.device)


class SampledRankingSums(RankingSums):
    """MRR/HR/NDCG@k of the target among itself and its drawn negatives (ties count against it)."""

    def __init__(self, cutoffs, sampler: NegativeSampler):
        super().__init__(cutoffs)
        self.sampler = sampler

    def add(self, scores: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        if rows is None:
            raise ValueError("sampled ranking needs the instances' row indices")
        candidates = torch.cat([targets.unsqueeze(1), self.sampler.rows(rows)], dim=1)
        picked = scores.gather(1, candidates)
        self.add_ranks(target_ranks(picked, torch.zeros_like(targets)).double(), picked[:, 0])


class Protocol:
    """The run's evaluation settings, resolved (the seed filled in), and the accumulator of a task."""

    def __init__(self, settings: EvalConfig | None = None, seed: int = 0):
        self.settings = settings or EvalConfig()
        self.seed = self.settings.seed if self.settings.seed is not None else seed

    @property
    def sampled(self) -> bool:
        return self.settings.protocol == "sampled"

    def sums(self, task: Task) -> RankingSums:
        if task.kind is TaskKind.CLASS:
            return AccuracySums()
        if not self.sampled:
            return RankingSums(self.settings.cutoffs)
        sampler = NegativeSampler(task, self.settings.negatives, self.settings.sampling, self.seed)
        return SampledRankingSums(self.settings.cutoffs, sampler)

    def record(self) -> dict:
        """What result.json says about how its scores were computed."""
        record = {"protocol": self.settings.protocol, "cutoffs": list(self.settings.cutoffs)}
        if self.sampled:
            record |= {"negatives": self.settings.negatives, "sampling": self.settings.sampling, "seed": self.seed}
        return record


def describe(settings: dict | None) -> str | None:
    """A table caption's words for a stored config's `eval` group; None for the default."""
    settings = {**asdict(EvalConfig()), **(settings or {})}
    if settings == asdict(EvalConfig()):
        return None
    cutoffs = "/".join(f"@{k}" for k in settings["cutoffs"])
    if settings["protocol"] == "full":
        return f"full ranking, cut-offs {cutoffs}"
    return (f"sampled ranking: 1 positive + {settings['negatives']} {settings['sampling']} negatives, "
            f"cut-offs {cutoffs}")
