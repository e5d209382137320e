"""A small time-aware dataset written in DITTO's release layout, for benchmarks/parity_ditto.py.

Why its own generator: the parity run needs files that drive every branch of the released
scripts and that those scripts can read at all, which fixes more than the harness's synthetic
data does:

- time: tasks arrive in periods; T1 knows items 1..`items`, each later task's period brings
  `new_items` more (numbered on from there), so DITTO's backward transfer has users whose
  sequences hold items the previous model never saw (without them both BKT losses are 0);
  about half of the users of a period explore (their jumps may land on the period's new
  items), the others keep to the items of earlier periods (FKT's teacher users);
- item tasks: targets are raw item ids of the same dictionary as the sequences (items of a
  preferred topic, Zipf within it), so the released `Data_Loader_Sup` appends unseen targets;
- class tasks: a label from the user's topic preference (`classes` of them, all present);
- later data (`task<k>_inference.csv`, every task but the last): drawn one period after the
  last task. T1's file brings that period's never-trained items in its inputs (the released
  inference script sizes its item table from them: `inference_past_tasks_update.py` L117), but
  its targets are known items; the other tasks' files hold only items of the final dictionary,
  because the released script builds their table at the final model's size (L119) and an
  unseen id would index past it.

Raw ids are a fixed random relabelling of the internal ones (the released loaders sort T1's
ids as ints and append later ones by first appearance, so the file's ids are not the model's).
Every user appears in every file (the same topic preferences drive all tasks); sequences hold
`seq_len` items, left-padded with 0 for short users.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TOPICS = 8


@dataclass
class ReleaseDataOptions:
    users: int = 12000
    items: int = 600
    new_items: int = 120  # per later period (tasks 2..n and the inference period)
    seq_len: int = 20
    tasks: list[str] = field(default_factory=lambda: ["item", "item", "class"])  # T2.. in order
    targets: list[int] = field(default_factory=lambda: [2, 1])  # per user, for each item task in order
    classes: int = 4
    explorers: float = 0.5  # share of a period's users whose jumps may land on its new items
    stay: float = 0.7  # next item continues the topic's chain
    seed: int = 0

    def validate(self) -> None:
        if any(kind not in ("item", "class") for kind in self.tasks):
            raise SystemExit("error: tasks are 'item' or 'class'")
        if len(self.targets) != self.tasks.count("item") or min(self.targets, default=1) < 1:
            raise SystemExit("error: one targets-per-user count >= 1 for each item task")
        if self.new_items < TOPICS or self.items < TOPICS or self.seq_len < 4 or self.classes < 2:
            raise SystemExit(f"error: need items and new_items >= {TOPICS}, seq_len >= 4, classes >= 2")


class _Periods:
    """Item pools over time: period p (1-based) knows internal items 0..bound(p)-1; topic = item % TOPICS."""

    def __init__(self, options: ReleaseDataOptions, rng: np.random.Generator):
        self.options, self.rng = options, rng
        self.prefs = rng.dirichlet(np.full(TOPICS, 0.3), size=options.users)
        self.cdf = self.prefs.cumsum(axis=1)

    def bound(self, period: int) -> int:
        return self.options.items + (period - 1) * self.options.new_items

    def topics(self) -> np.ndarray:
        draws = self.rng.random(len(self.cdf)) * self.cdf[:, -1]
        return np.minimum((self.cdf < draws[:, None]).sum(axis=1), TOPICS - 1)

    def item_of(self, topics: np.ndarray, low: np.ndarray, high: np.ndarray, zipf: bool = False) -> np.ndarray:
        """One item of each row's topic in [low, high) (uniform, or Zipf over the topic's items)."""
        first = low + (topics - low) % TOPICS
        count = np.maximum(1, (high - first + TOPICS - 1) // TOPICS)
        u = self.rng.random(len(topics))
        offset = np.floor(count ** u) - 1 if zipf else np.floor(u * count)  # log-uniform ~ Zipf(1)
        return first + TOPICS * np.minimum(offset.astype(np.int64), count - 1)

    def sequences(self, period: int, last_bound: int | None = None) -> np.ndarray:
        """Topic-chained walks of period `period` (internal ids, -1 = padding); `last_bound`
        keeps the last position among items below it (known targets of later data)."""
        users, length = self.options.users, self.options.seq_len
        old, now = self.bound(max(1, period - 1)), self.bound(period)
        explorer = self.rng.random(users) < self.options.explorers if period > 1 else np.ones(users, bool)
        allowed = np.where(explorer, now, old)
        zeros = np.zeros(users, dtype=np.int64)
        walk = np.empty((users, length), dtype=np.int64)
        current = self.item_of(self.topics(), zeros, allowed)
        walk[:, 0] = current
        for t in range(1, length):
            high = allowed if t < length - 1 or last_bound is None else np.minimum(allowed, last_bound)
            step = np.where(current + TOPICS < high, current + TOPICS, current % TOPICS)
            jump = self.item_of(self.topics(), zeros, high)
            if period > 1:  # explorers' jumps land on the period's new items half of the time
                fresh = self.item_of(self.topics(), np.full(users, old), high)
                jump = np.where(explorer & (high > old) & (self.rng.random(users) < 0.5), fresh, jump)
            current = np.where(self.rng.random(users) < self.options.stay, step, jump)
            walk[:, t] = current
        lengths = self.rng.integers(length // 2, length + 1, size=users)
        walk[np.arange(length)[None, :] < (length - lengths)[:, None]] = -1
        return walk

    def item_targets(self, period: int, walks: np.ndarray, per_user: int, high_cap: int | None = None) -> np.ndarray:
        """(users, per_user) target items of a preferred (or the latest) topic, Zipf within it."""
        high = np.full(len(walks), self.bound(period) if high_cap is None else high_cap)
        columns = []
        for _ in range(per_user):
            topic = np.where(self.rng.random(len(walks)) < 0.5, walks[:, -1] % TOPICS, self.topics())
            columns.append(self.item_of(topic, np.zeros(len(walks), dtype=np.int64), high, zipf=True))
        return np.stack(columns, axis=1)

    def labels(self) -> np.ndarray:
        weights = np.random.default_rng(self.options.seed + 1).normal(size=(TOPICS, self.options.classes))
        logits = self.prefs @ weights
        logits = logits / logits.std() + 0.3 * self.rng.gumbel(size=logits.shape)
        return logits.argmax(axis=1)


def _line(raw: np.ndarray, walk: np.ndarray) -> str:
    return ",".join("0" if item < 0 else str(raw[item]) for item in walk)


def write_release_data(directory: Path, options: ReleaseDataOptions) -> list[Path]:
    """Write task1.csv, task<k>.csv and task<k>_inference.csv (k < n) under `directory`; cached by DONE.json."""
    options.validate()
    done = directory / "DONE.json"
    wanted = asdict(options)
    n_tasks = 1 + len(options.tasks)
    names = [f"task{k}.csv" for k in range(1, n_tasks + 1)] + [f"task{k}_inference.csv" for k in range(1, n_tasks)]
    if done.exists() and json.loads(done.read_text()) == wanted:
        return [directory / name for name in names]
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(options.seed)
    periods = _Periods(options, rng)
    future = periods.bound(n_tasks + 1)  # the inference period's items exist too (T1's later file)
    raw = 1000 + rng.permutation(future)  # internal item -> raw id (never 0)
    labels = periods.labels()
    item_counts = iter(options.targets)
    per_user = {}
    files: dict[str, list[str]] = {}

    walks = periods.sequences(1)
    files["task1.csv"] = [_line(raw, walk) for walk in walks]
    seen = set(walks[walks >= 0].ravel().tolist())
    for k, kind in enumerate(options.tasks, start=2):
        walks = periods.sequences(k)
        seen.update(walks[walks >= 0].ravel().tolist())
        if kind == "item":
            per_user[k] = next(item_counts)
            targets = periods.item_targets(k, walks, per_user[k])
            seen.update(targets.ravel().tolist())
            files[f"task{k}.csv"] = [_line(raw, w) + ",," + ",".join(str(raw[t]) for t in row)
                                     for w, row in zip(walks, targets)]
        else:
            files[f"task{k}.csv"] = [_line(raw, w) + ",," + str(label) for w, label in zip(walks, labels)]

    known = periods.bound(n_tasks)
    seen_known = np.array(sorted(seen))

    def to_seen(items: np.ndarray) -> np.ndarray:
        """Items of the final period's range that no training file used go to their topic's first item."""
        inside = (items >= 0) & (items < known)
        unseen = inside & ~np.isin(items, seen_known)
        return np.where(unseen, items % TOPICS, items)

    for k in range(1, n_tasks):
        kind = "click" if k == 1 else options.tasks[k - 2]
        if kind == "click":
            walks = to_seen(periods.sequences(n_tasks + 1, last_bound=known))
            files[f"task{k}_inference.csv"] = [_line(raw, walk) for walk in walks]
            continue
        walks = to_seen(periods.sequences(n_tasks))
        if kind == "item":
            targets = to_seen(periods.item_targets(n_tasks, walks, per_user[k], high_cap=known))
            files[f"task{k}_inference.csv"] = [_line(raw, w) + ",," + ",".join(str(raw[t]) for t in row)
                                               for w, row in zip(walks, targets)]
        else:
            files[f"task{k}_inference.csv"] = [_line(raw, w) + ",," + str(label) for w, label in zip(walks, labels)]
    for name in names:
        (directory / name).write_text("\n".join(files[name]) + "\n")
    if "class" in options.tasks and set(labels.tolist()) != set(range(options.classes)):
        raise SystemExit("error: not every class occurs; use more users or fewer classes")
    done.write_text(json.dumps(wanted))
    return [directory / name for name in names]
