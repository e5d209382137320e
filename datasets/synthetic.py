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
    seed: int = field(default=0, metadata={"min": 0})

    def validate(self) -> None:
        if self.n_users < 20 or self.n_items < self.n_topics or self.seq_len < 4:
            raise BenchError("synthetic: need n_users >= 20, n_items >= n_topics and seq_len >= 4")
        if not 0 < self.valid_fraction + self.test_fraction < 1:
            raise BenchError("synthetic: valid_fraction + test_fraction must be in (0, 1)")


def _sample_rows(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of a (n, k) probability matrix."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), 1)) * cumulative[:, -1:]
    return np.minimum((cumulative < draws).sum(axis=1), probabilities.shape[1] - 1)


def _sequences(rng, prefs, options):
    """Topic-chained item sequences: within a topic, items follow a fixed order."""
    K, n_items, L = options.n_topics, options.n_items, options.seq_len
    item_topic = np.arange(n_items) % K  # item id = index + 1
    chain_next = (np.arange(n_items) + K) % n_items  # next item of the same topic
    per_topic = np.bincount(item_topic, minlength=K)
    users = len(prefs)

    def random_item_of(topics):
        offsets = (rng.random(len(topics)) * per_topic[topics]).astype(int)
        return topics + K * offsets

    items = np.empty((users, L), dtype=np.int64)
    current = random_item_of(_sample_rows(rng, prefs))
    items[:, 0] = current
    for t in range(1, L):
        stay = rng.random(users) < options.stay_probability
        step = chain_next[current]
        jumped = random_item_of(_sample_rows(rng, prefs))
        current = np.where(stay, step, jumped)
        items[:, t] = current
    sequences = items + 1
    lengths = rng.integers(L // 2, L + 1, size=users)
    sequences[np.arange(L)[None, :] < (L - lengths)[:, None]] = 0  # left padding
    return sequences, item_topic[items[:, -1]]


def _item_targets(rng, prefs, last_topic, n_targets, options, topic_map):
    """Target items of another domain: topic from the preference (or the latest topic), Zipf within."""
    K = options.n_topics
    target_topic = np.arange(n_targets) % K
    popularity = 1.0 / (1.0 + np.arange(n_targets) // K)  # Zipf over each topic's items
    rows, targets = [], []
    for _ in range(options.targets_per_user):
        topic = np.where(rng.random(len(prefs)) < 0.5, last_topic, _sample_rows(rng, prefs))
        topic = topic_map[topic]
        weights = (target_topic[None, :] == topic[:, None]) * popularity[None, :]
        targets.append(_sample_rows(rng, weights))
        rows.append(np.arange(len(prefs)))
    return np.concatenate(rows), np.concatenate(targets)


def _labels(rng, prefs, n_classes, noise):
    weights = rng.normal(size=(prefs.shape[1], n_classes))
    logits = prefs @ weights
    logits = logits / logits.std() + noise * rng.gumbel(size=logits.shape)
    return logits.argmax(axis=1)


def generate(options: SyntheticOptions) -> Dataset:
    options.validate()
    rng = np.random.default_rng(options.seed)
    prefs = rng.dirichlet(np.full(options.n_topics, options.preference_concentration), size=options.n_users)
    sequences, last_topic = _sequences(rng, prefs, options)

    order = rng.permutation(options.n_users)
    n_test = max(1, int(options.n_users * options.test_fraction))
    n_valid = max(1, int(options.n_users * options.valid_fraction))
    user_split = {"test": order[:n_test], "valid": order[n_test:n_test + n_valid],
                  "train": order[n_test + n_valid:]}

    def task(name, kind, n_targets, rows, targets, description):
        split_of_user = np.empty(options.n_users, dtype=object)
        for split, users in user_split.items():
            split_of_user[users] = split
        splits = {split: TaskSplit(sequences[rows[split_of_user[rows] == split]],
                                   targets[split_of_user[rows] == split])
                  for split in user_split}
        return Task(name, kind, n_targets, **splits, description=description)

    users = np.arange(options.n_users)
    tasks = [task("T1-sequence", TaskKind.NEXT_ITEM, options.n_items, users, sequences[:, -1],
                  "next-item prediction over the behaviour sequence")]
    for number, n_targets in enumerate(options.target_items, start=2):
        topic_map = rng.permutation(options.n_topics)
        rows, targets = _item_targets(rng, prefs, last_topic, n_targets, options, topic_map)
        tasks.append(task(f"T{number}-items", TaskKind.ITEM, n_targets, rows, targets,
                          f"items of another domain ({n_targets} items)"))
    first_class_number = 2 + len(options.target_items)
    for offset, n_classes in enumerate(options.classes):
        labels = _labels(rng, prefs, n_classes, options.label_noise)
        tasks.append(task(f"T{first_class_number + offset}-profile{n_classes}", TaskKind.CLASS,
                          n_classes, users, labels, f"user label with {n_classes} classes"))
    return Dataset("synthetic", options.n_items, tasks, info={"options": options.__dict__})


@DATASETS.register("synthetic")
class Synthetic(DatasetAdapter):
    Options = SyntheticOptions
    summary = "embedded TTL-shaped data with planted user preferences (no download)"

    @classmethod
    def load(cls, options: SyntheticOptions, data_dir: Path | None) -> Dataset:
        return generate(options)
