"""results/LEADERBOARD.md from the curated runs committed under results/published/.

`results/runs/` is scratch space (git-ignored, with checkpoints and cached models);
publishing copies only a run's light files,

    results/published/<run-id>/config.json, environment.json, methods/<M>/result.json

and the leaderboard is a pure function of those files: runs that differ only in their
seed are averaged (mean ± std), rows are sorted, and nothing but stored values (no
clock, no paths) enters the text, so `--check` can tell whether the committed file is
stale.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.results.aggregate import formatted, mean_std, run_frame
from bench.errors import BenchError
from bench.io import write_json
from bench.registry import PAPER_ORDER
from bench.results.store import RunStore
from bench.results.tables import render

PUBLISHED = "published"
LEADERBOARD = "LEADERBOARD.md"
# Settings that do not change what a result means; everything else must match to average runs.
NOT_SETUP = ("seed", "methods", "device", "data_dir")
COLUMNS_DROPPED = ("FWT",)  # needs SinMo in the same run; the papers' tables show BWT only


def publish(root: Path, run_id: str, force: bool = False) -> Path:
    """Copy a finished test-split run's light files to <root>/published/<run-id>/."""
    store = RunStore.open(run_id, root)
    config = store.config
    if config.get("eval_split", "test") != "test":
        raise BenchError(f"run '{run_id}' was evaluated on {config['eval_split']}; only test runs are published")
    records = store.records()
    if not records or not all(record.complete for record in records):
        raise BenchError(f"run '{run_id}' has unfinished methods; finish it with run --resume {run_id}")
    target = Path(root) / PUBLISHED / store.run_id
    if target.exists():
        if not force:
            raise BenchError(f"{target} exists already; add --force to replace it")
        shutil.rmtree(target)
    write_json(target / "config.json", config)
    write_json(target / "environment.json", store.environment)
    for record in records:
        destination = target / "methods" / record.method
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.method_dir(record.method) / "result.json", destination / "result.json")
    return target


@dataclass
class Group:
    """Runs of one dataset, order and setup (all settings but the seed)."""

    dataset: str
    order: list[int]
    setup: str
    frames: dict[str, list[pd.DataFrame]] = field(default_factory=lambda: defaultdict(list))
    seeds: list[int] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)


def setup_key(config: dict) -> str:
    """Short hash of the settings that define a result (same key = runs averaged together)."""
    setup = {key: value for key, value in config.items() if key not in NOT_SETUP}
    return hashlib.sha1(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:8]


def gather(published: Path) -> list[Group]:
    groups: dict[tuple, Group] = {}
    directories = sorted(p for p in Path(published).iterdir() if (p / "config.json").exists()) \
        if Path(published).exists() else []
    for directory in directories:
        store = RunStore(directory)
        config, records = store.config, [r for r in store.records() if r.complete]
        if not records or config.get("eval_split", "test") != "test":
            continue
        n_tasks = len(records[0].tasks)
        order = config.get("order") or list(range(1, n_tasks + 1))
        key = (config.get("dataset", "?"), tuple(order), setup_key(config))
        group = groups.setdefault(key, Group(key[0], list(order), key[2]))
        frame = run_frame(records, order)
        for method in frame.index:
            group.frames[method].append(frame.loc[[method]])
        group.seeds.append(int(config.get("seed", 0)))
        group.run_ids.append(directory.name)
        commit = store.environment.get("commit")
        if commit and commit not in group.commits:
            group.commits.append(commit)
    return [groups[key] for key in sorted(groups)]


def _rank(method: str) -> tuple:
    base = method.split(" ")[0].rstrip("-")
    return (PAPER_ORDER.index(base) if base in PAPER_ORDER else len(PAPER_ORDER), method)


def group_frame(group: Group) -> pd.DataFrame:
    rows = []
    for method in sorted(group.frames, key=_rank):
        mean, std, _ = mean_std(group.frames[method])
        mean = mean.drop(columns=[c for c in COLUMNS_DROPPED if c in mean])
        std = std.drop(columns=[c for c in COLUMNS_DROPPED if c in std])
        row = formatted(mean, std).iloc[0]
        row["seeds"] = ",".join(map(str, sorted(group.seeds)))
        row["runs"] = " ".join(sorted(group.run_ids))
        row["commit"] = " ".join(group.commits) or "–"
        rows.append(row.rename(method))
    frame = pd.DataFrame(rows)
    frame.index.name = "method"
    return frame


def generate(root: Path) -> str:
    groups = gather(Path(root) / PUBLISHED)
    lines = [
        "# Leaderboard",
        "",
        "<!-- generated by `python -m bench leaderboard` from results/published/; do not edit by hand -->",
        "",
        "Final performance after the last task, mean ± std over seeds (MRR@5 for item tasks, accuracy",
        "for classification; tasks numbered as in the dataset). BWT < 0 means forgetting; #B counts",
        "stored backbones; time is training seconds per run. Runs are averaged when all their",
        "settings but the seed agree (`setup` is a hash of those settings, see each run's config.json).",
    ]
    if not groups:
        lines += ["", "(no published runs yet: `python -m bench leaderboard --publish <run-id>`)"]
    current = None
    for group in groups:
        heading = f"## {group.dataset}, order {','.join(map(str, group.order))}"
        if heading != current:
            lines += ["", heading]
            current = heading
        lines += ["", f"setup `{group.setup}`", "", render(group_frame(group), "github")]
    return "\n".join(lines) + "\n"


def check(root: Path, path: Path) -> bool:
    """True when the committed file equals what would be generated now."""
    return path.exists() and path.read_text() == generate(root)
