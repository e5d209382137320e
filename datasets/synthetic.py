"""The embedded default: a TTL-shaped dataset generated from planted user preferences.

Every user has a latent preference over topics. That one vector drives all six tasks
(the items the user clicks in order, the items they pick in two other domains, and their
three profile labels), so a representation learnt on T1 genuinely helps T2..T6, and
overwriting it to fit a later task genuinely hurts the earlier ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.config import SEED_BOUNDS, from_dict
from bench.errors import BenchError
from bench.registry import DATASETS
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit
from bench.datasets.base import DatasetAdapter


@dataclass
class SyntheticOptions:
    n_users: int = field(default=2000, metadata={"min": 20})
    n_items: int = field(default=300, metadata={"min": 1})
    seq_len: int = field(default=20, metadata={"min": 4})
    n_topics: int = field(default=8, metadata={"min": 1})
    target_items: list[int] = field(default_factory=lambda: [120, 80], metadata={"min": 1})  # T2, T3 vocabularies
    classes: list[int] = field(default_factory=lambda: [8, 2, 6], metadata={"min": 2})  # T4, T5, T6
    targets_per_user: int = field(default=2, metadata={"min": 1})
    stay_probability: float = field(default=0.7, metadata={"min": 0, "max": 1})  # next item continues the current topic's chain
    preference_concentration: float = field(default=0.3, metadata={"gt": 0})  # Dirichlet alpha: small = few topics per user
    label_noise: float = field(default=0.3, metadata={"min": 0})  # Gumbel noise scale relative to the label signal
    # The time-aware scenario (docs/scenarios.md): each later task brings round(new_items * n_items)
    # new items; 0 = every task shares one vocabulary (the default, unchanged data)
    new_items: float = field(default=0.0, metadata={"min": 0})
    new_item_share: float = field(default=0.3, metadata={"min": 0, "max": 1})  # chance an item of a later task's sequence is one of its stage's new items
    shared_item_targets: bool = False  # time-aware: item tasks predict items of the shared vocabulary
    valid_fraction: float = field(default=0.1, metadata={"min": 0, "max": 1})
    test_fraction: float = field(default=0.1, metadata={"min": 0, "max": 1})
    seed: int = field(default=0, metadata=SEED_BOUNDS)

    def validate(self) -> None:
        if self.n_users < 20 or self.n_items < self.n_topics or self.seq_len < 4:
            raise BenchError("synthetic: need n_users >= 20, n_items >= n_topics and seq_len >= 4")
        if not 0 < self.valid_fraction + self.test_fraction < 1:
            raise BenchError("synthetic: valid_fraction + test_fraction must be in (0, 1)")
        if self.shared_item_targets and not self.new_items:
            raise BenchError("synthetic: shared_item_targets is part of the time-aware scenario; set new_items > 0")
        if self.new_items and self.stage_size < 1:
            raise BenchError(f"synthetic: new_items {self.new_items} brings no item per task with n_items {self.n_items}")

    @property
    def stage_size(self) -> int:
        """Items each later task (and the later data) brings in the time-aware scenario."""
        return int(round(self.new_items * self.n_items))


def _sample_rows(rng: np.random.Generator, cumulative: np.ndarray) -> np.ndarray:
    """One categorical draw per row, given the rows' cumulative probabilities (n, k).

    Counting the entries below the draw column by column keeps a (n, k) boolean matrix
    out of memory and is several times faster for the few topics a user mixes.
    """
    draws = rng.random(len(cumulative)) * cumulative[:, -1]
    chosen = np.zeros(len(cumulative), dtype=np.int64)
    for column in range(cumulative.shape[1]):
        chosen += cumulative[:, column] < draws
    return np.minimum(chosen, cumulative.shape[1] - 1)


def _sequences(rng, preference_cdf, options):
    """Topic-chained item sequences: within a topic, items follow a fixed order."""
    K, n_items, L = options.n_topics, options.n_items, options.seq_len
    item_topic = np.arange(n_items) % K  # item id = index + 1
    chain_next = (np.arange(n_items) + K) % n_items  # next item of the same topic
    per_topic = np.bincount(item_topic, minlength=K)
    users = len(preference_cdf)

    def random_item_of(topics):
        offsets = (rng.random(len(topics)) * per_topic[topics]).astype(int)
        return topics + K * offsets

    # int32 halves the memory of TTL-sized data (1.47M x 100); ids stay far below 2**31
    items = np.empty((users, L), dtype=np.int32, order="F")  # written one position at a time
    current = random_item_of(_sample_rows(rng, preference_cdf))
    items[:, 0] = current
    for t in range(1, L):
        stay = rng.random(users) < options.stay_probability
        step = chain_next[current]
        jumped = random_item_of(_sample_rows(rng, preference_cdf))
        current = np.where(stay, step, jumped)
        items[:, t] = current
    last_topic = item_topic[items[:, -1]]
    sequences = items
    sequences += 1
    lengths = rng.integers(L // 2, L + 1, size=users)
    for start in range(0, users, 65536):  # left padding, in blocks to bound the mask's memory
        block = slice(start, start + 65536)
        sequences[block][np.arange(L)[None, :] < (L - lengths[block])[:, None]] = 0
    return sequences, last_topic


def _item_targets(rng, preference_cdf, last_topic, n_targets, options, topic_map):
    """Target items of another domain: topic from the preference (or the latest topic), Zipf within.

    Every user of one topic shares one cumulative weight row, so a draw is a binary search
    in that row (the same numbers as a draw from a users x items weight matrix, without it).
    """
    K = options.n_topics
    target_topic = np.arange(n_targets) % K
    popularity = 1.0 / (1.0 + np.arange(n_targets) // K)  # Zipf over each topic's items
    cumulative = ((target_topic[None, :] == np.arange(K)[:, None]) * popularity[None, :]).cumsum(axis=1)
    targets = []
    for _ in range(options.targets_per_user):
        topic = np.where(rng.random(len(last_topic)) < 0.5, last_topic, _sample_rows(rng, preference_cdf))
        topic = topic_map[topic]
        draws = rng.random(len(topic)) * cumulative[topic, -1]
        chosen = np.empty(len(topic), dtype=np.int64)
        for k in range(K):
            users = np.flatnonzero(topic == k)
            chosen[users] = np.searchsorted(cumulative[k], draws[users], side="left")
        targets.append(np.minimum(chosen, n_targets - 1))
    return np.concatenate(targets)  # round-major: every user once per round


def _labels(rng, prefs, n_classes, noise):
    weights = rng.normal(size=(prefs.shape[1], n_classes))
    logits = prefs @ weights
    logits = logits / logits.std() + noise * rng.gumbel(size=logits.shape)
    return logits.argmax(axis=1)


SPLITS = ("test", "valid", "train")


class Stages:
    """The time-aware scenario's model of time (docs/scenarios.md). Stage 1 is T1 with items
    1..n_items; stage k (task k) brings `size` new items, numbered in order of arrival after
    the earlier ones (each with topic (id - 1) mod K, as the first items); stage T+1 is the
    later time at which past tasks are re-evaluated, with `size` items no task trains on.
    A stage's sequences are the users' sequences with each item replaced, with probability
    `share`, by one of the stage's new items of the same topic: the same preferences, seen
    through newer items. Draws come from a generator of their own, so the base data is the
    data of `new_items = 0`."""

    def __init__(self, options: SyntheticOptions):
        self.n_items, self.size, self.share, self.K = options.n_items, options.stage_size, options.new_item_share, options.n_topics
        self.rng = np.random.default_rng([options.seed, 1])

    def known(self, stage: int) -> int:
        """The vocabulary once stage `stage` has arrived (ids 1..known)."""
        return self.n_items + (stage - 1) * self.size

    def substitute(self, items: np.ndarray, stage: int) -> np.ndarray:
        """`items` (ids, 0 = padding) with some replaced by stage `stage`'s new items of their topic."""
        new = np.arange(self.known(stage - 1) + 1, self.known(stage) + 1)
        out = items.copy()
        replace = (items > 0) & (self.rng.random(items.shape) < self.share)
        topic = (items.astype(np.int64) - 1) % self.K
        for k in range(self.K):
            candidates = new[(new - 1) % self.K == k]
            where = replace & (topic == k)
            if len(candidates) and where.any():
                out[where] = candidates[self.rng.integers(0, len(candidates), size=int(where.sum()))]
        return out

    def item_targets(self, targets: np.ndarray, stage: int) -> np.ndarray:
        """Targets 0..n-1 of another domain as items of the shared vocabulary: target t keeps its
        topic (t mod K) and popularity rank (t div K) among the first items of that topic, then
        some become the stage's new items, as in the sequences."""
        topic, rank = targets % self.K, targets // self.K
        per_topic = np.bincount(np.arange(self.n_items) % self.K, minlength=self.K)
        ids = topic + 1 + self.K * (rank % per_topic[topic])
        return self.substitute(ids, stage) if stage > 1 else ids


def generate(options: SyntheticOptions) -> Dataset:
    options.validate()
    rng = np.random.default_rng(options.seed)
    prefs = rng.dirichlet(np.full(options.n_topics, options.preference_concentration), size=options.n_users)
    preference_cdf = np.asfortranarray(prefs.cumsum(axis=1))  # read column by column
    sequences, last_topic = _sequences(rng, preference_cdf, options)
    last_items = sequences[:, -1].astype(np.int64)

    order = rng.permutation(options.n_users)
    n_test = max(1, int(options.n_users * options.test_fraction))
    n_valid = max(1, int(options.n_users * options.valid_fraction))
    split_of_user = np.full(options.n_users, SPLITS.index("train"), dtype=np.int8)
    split_of_user[order[:n_test]] = SPLITS.index("test")
    split_of_user[order[n_test:n_test + n_valid]] = SPLITS.index("valid")
    # Users grouped by split (ascending ids within each), so every one-row-per-user task
    # takes its splits as views of one array instead of copies.
    by_split = np.argsort(split_of_user, kind="stable")
    sequences = np.ascontiguousarray(sequences[by_split])
    bounds = np.concatenate([[0], np.cumsum(np.bincount(split_of_user, minlength=len(SPLITS)))])
    blocks = {split: slice(bounds[i], bounds[i + 1]) for i, split in enumerate(SPLITS)}

    def task(name, kind, n_targets, targets, description, rounds=1, seqs=None):
        """`targets` has one entry per user and round (round-major), as _item_targets makes."""
        seqs = sequences if seqs is None else seqs
        per_round = targets.reshape(rounds, options.n_users)[:, by_split]
        splits = {}
        for split, block in blocks.items():
            inputs = seqs[block] if rounds == 1 else np.concatenate([seqs[block]] * rounds)
            splits[split] = TaskSplit(inputs, per_round[:, block].ravel())
        return Task(name, kind, n_targets, **splits, description=description)

    tasks = [task("T1-sequence", TaskKind.NEXT_ITEM, options.n_items, last_items,
                  "next-item prediction over the behaviour sequence")]
    item_targets = []
    for number, n_targets in enumerate(options.target_items, start=2):
        topic_map = rng.permutation(options.n_topics)
        targets = _item_targets(rng, preference_cdf, last_topic, n_targets, options, topic_map)
        item_targets.append(targets)
        tasks.append(task(f"T{number}-items", TaskKind.ITEM, n_targets, targets,
                          f"items of another domain ({n_targets} items)", rounds=options.targets_per_user))
    first_class_number = 2 + len(options.target_items)
    for offset, n_classes in enumerate(options.classes):
        labels = _labels(rng, prefs, n_classes, options.label_noise)
        tasks.append(task(f"T{first_class_number + offset}-profile{n_classes}", TaskKind.CLASS,
                          n_classes, labels, f"user label with {n_classes} classes"))
    if not options.new_items:
        return Dataset("synthetic", options.n_items, tasks, info={"options": options.__dict__})
    return time_aware(tasks, sequences, item_targets, task, options)


def time_aware(tasks: list[Task], sequences: np.ndarray, item_targets: list[np.ndarray], task,
               options: SyntheticOptions) -> Dataset:
    """The tasks of `generate` as the time-aware scenario (the `Stages` docstring): task k's
    sequences at stage k, item targets in the shared vocabulary with `shared_item_targets`,
    and every task but the last re-drawn at the later stage as its `later` split."""
    stages = Stages(options)
    later_stage = len(tasks) + 1
    timed = []
    for stage, base in enumerate(tasks, start=1):
        seqs = sequences if stage == 1 else stages.substitute(sequences, stage)
        if base.kind is TaskKind.ITEM:
            targets, n_targets = item_targets[stage - 2], base.n_targets
            if options.shared_item_targets:  # item ids 1..known, 0 = padding
                targets, n_targets = stages.item_targets(targets, stage), stages.known(stage)
            built = task(base.name, base.kind, n_targets, targets, base.description,
                         rounds=options.targets_per_user, seqs=seqs)
        else:  # one row per user: next-item targets are the stage's last items, labels the users' own
            built = dataclasses.replace(base, **{
                split: TaskSplit(seqs[block], seqs[block][:, -1] if base.kind is TaskKind.NEXT_ITEM
                                 else base.split(split).targets)
                for split, block in _blocks(base).items()})
        built.n_items_known = stages.known(stage)
        built.shared_targets = options.shared_item_targets and base.kind is TaskKind.ITEM
        if stage < len(tasks):
            test = built.test
            inputs = stages.substitute(test.inputs, later_stage)
            if base.kind is TaskKind.NEXT_ITEM:
                later_targets = inputs[:, -1].astype(np.int64)
            elif built.shared_targets:
                later_targets = stages.substitute(test.targets, later_stage)
            else:
                later_targets = test.targets
            built.later = TaskSplit(inputs, later_targets)
        timed.append(built)
    return Dataset("synthetic", stages.known(later_stage), timed, info={"options": options.__dict__})


def _blocks(base: Task) -> dict[str, slice]:
    """The user blocks of a one-row-per-user task's splits (test, valid, train, in that order)."""
    sizes = {"test": len(base.test), "valid": len(base.valid), "train": len(base.train)}
    bounds = np.cumsum([0, *sizes.values()])
    return {split: slice(bounds[i], bounds[i + 1]) for i, split in enumerate(sizes)}


@DATASETS.register("synthetic")
class Synthetic(DatasetAdapter):
    Options = SyntheticOptions
    summary = "embedded TTL-shaped data with planted user preferences (no download)"

    @classmethod
    def load(cls, options: SyntheticOptions, data_dir: Path | None) -> Dataset:
        return generate(options)

    @classmethod
    def estimated_bytes(cls, options: dict, data_dir) -> tuple[int, int]:
        """Measured with tracemalloc: the generator peaks near 20 bytes per sequence position plus
        430 per user; the training copies (int64 batches, evaluation pairs) add about half."""
        parsed = from_dict(SyntheticOptions, options, "dataset_options")
        return parsed.n_users * (32 * parsed.seq_len + 650), parsed.n_items
