"""The embedded default: a TTL-shaped dataset generated from planted user preferences.

Every user has a latent preference over topics. That one vector drives all six tasks
(the items the user clicks in order, the items they pick in two other domains, and their
three profile labels), so a representation learnt on T1 genuinely helps T2..T6, and
overwriting it to fit a later task genuinely hurts the earlier ones.
"""

from __future__ import annotations

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
    valid_fraction: float = field(default=0.1, metadata={"min": 0, "max": 1})
    test_fraction: float = field(default=0.1, metadata={"min": 0, "max": 1})
    seed: int = field(default=0, metadata=SEED_BOUNDS)

    def validate(self) -> None:
        if self.n_users < 20 or self.n_items < self.n_topics or self.seq_len < 4:
            raise BenchError("synthetic: need n_users >= 20, n_items >= n_topics and seq_len >= 4")
        if not 0 < self.valid_fraction + self.test_fraction < 1:
            raise BenchError("synthetic: valid_fraction + test_fraction must be in (0, 1)")


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

    def task(name, kind, n_targets, targets, description, rounds=1):
        """`targets` has one entry per user and round (round-major), as _item_targets makes."""
        per_round = targets.reshape(rounds, options.n_users)[:, by_split]
        splits = {}
        for split, block in blocks.items():
            inputs = sequences[block] if rounds == 1 else np.concatenate([sequences[block]] * rounds)
            splits[split] = TaskSplit(inputs, per_round[:, block].ravel())
        return Task(name, kind, n_targets, **splits, description=description)

    tasks = [task("T1-sequence", TaskKind.NEXT_ITEM, options.n_items, last_items,
                  "next-item prediction over the behaviour sequence")]
    for number, n_targets in enumerate(options.target_items, start=2):
        topic_map = rng.permutation(options.n_topics)
        targets = _item_targets(rng, preference_cdf, last_topic, n_targets, options, topic_map)
        tasks.append(task(f"T{number}-items", TaskKind.ITEM, n_targets, targets,
                          f"items of another domain ({n_targets} items)", rounds=options.targets_per_user))
    first_class_number = 2 + len(options.target_items)
    for offset, n_classes in enumerate(options.classes):
        labels = _labels(rng, prefs, n_classes, options.label_noise)
        tasks.append(task(f"T{first_class_number + offset}-profile{n_classes}", TaskKind.CLASS,
                          n_classes, labels, f"user label with {n_classes} classes"))
    return Dataset("synthetic", options.n_items, tasks, info={"options": options.__dict__})


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
