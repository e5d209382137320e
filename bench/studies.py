"""Repeated runs: several seeds and/or task orders of one configuration (Conure Table 4).

Every (order, seed) pair is an ordinary run in results/runs/ (so `table`, `plot`,
`--resume` and the leaderboard work on it unchanged); the study only records which runs
belong together:

    results/studies/<study-id>/study.json   {"runs": [{"run_id", "seed", "order"}, ...], ...}
    results/runs/<study-id>-o<order>-s<seed>/   one run per order and seed

Re-running the same command with the same `--run-id` resumes the study: finished runs
are kept, unfinished ones continue from their last step.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.aggregate import avg_by_order, render_mean_std, run_frame
from bench.commands.common import split_list
from bench.config import RunConfig, build_run_config
from bench.errors import BenchError
from bench.io import read_json, write_json
from bench.runner import prepare, resolve_order, run
from bench.store import RunStore, new_run_id
from bench.tables import render


@dataclass
class StudyRun:
    run_id: str
    seed: int
    order: list[int]


@dataclass
class Study:
    study_id: str
    runs: list[StudyRun] = field(default_factory=list)

    @staticmethod
    def path(root: Path, study_id: str) -> Path:
        return Path(root) / "studies" / study_id / "study.json"

    def save(self, root: Path) -> None:
        write_json(self.path(root, self.study_id), dataclasses.asdict(self))

    @classmethod
    def load(cls, root: Path, study_id: str) -> "Study":
        path = cls.path(root, study_id)
        if not path.exists():
            raise BenchError(f"no study '{study_id}' under {Path(root) / 'studies'}")
        data = read_json(path)
        return cls(data["study_id"], [StudyRun(**entry) for entry in data["runs"]])

    @property
    def orders(self) -> list[list[int]]:
        seen: list[list[int]] = []
        for entry in self.runs:
            if entry.order not in seen:
                seen.append(entry.order)
        return seen


def is_study(study_id: str, root: Path) -> bool:
    return Study.path(root, study_id).exists()


# --- command-line parsing -----------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", help="repeat every method for these seeds, e.g. 0,1,2 (tables show mean ± std)")
    parser.add_argument("--orders", nargs="+", metavar="ORDER",
                        help="task orders to compare, e.g. 1,2,3,4,5,6 1,3,2,4,5,6; or 'all-permutations'")
    parser.add_argument("--fixed-first", type=int, metavar="TASK",
                        help="with all-permutations: keep this task first (Conure Table 4 keeps T1)")


def requested(args: argparse.Namespace) -> bool:
    return bool(args.seeds or args.orders)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in split_list(text)]
    except ValueError:
        raise BenchError(f"--seeds expects integers such as 0,1,2, got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds expects distinct integers, got '{text}'")
    return seeds


def parse_orders(values: list[str], fixed_first: int | None, n_tasks: int) -> list[list[int]]:
    if fixed_first is not None and not 1 <= fixed_first <= n_tasks:
        raise BenchError(f"--fixed-first {fixed_first}: expected a task number between 1 and {n_tasks}")
    if values == ["all-permutations"]:
        tasks = list(range(1, n_tasks + 1))
        if fixed_first is None:
            return [list(p) for p in itertools.permutations(tasks)]
        rest = [t for t in tasks if t != fixed_first]
        return [[fixed_first, *p] for p in itertools.permutations(rest)]
    if fixed_first is not None:
        raise BenchError("--fixed-first only applies to --orders all-permutations")
    orders = []
    for text in values:
        try:
            order = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise BenchError(f"--orders expects orders such as 1,3,2,4,5,6 or all-permutations, got '{text}'") from None
        order = resolve_order(order, n_tasks)
        if len(order) != n_tasks:
            raise BenchError(f"order {text}: expected all {n_tasks} tasks")
        if order in orders:
            raise BenchError(f"order {text} given twice")
        orders.append(order)
    return orders


def order_label(order: list[int]) -> str:
    return ",".join(map(str, order))


def _order_key(order: list[int]) -> str:
    return ("" if max(order) < 10 else "_").join(map(str, order))


# --- running ------------------------------------------------------------------------------

def plan(base: RunConfig, seeds: list[int], orders: list[list[int]], study_id: str) -> Study:
    """One run per (order, seed); the run id says which, so the study resumes by name."""
    several_orders = len(orders) > 1
    runs = []
    for order in orders:
        for seed in seeds:
            suffix = (f"-o{_order_key(order)}" if several_orders else "") + f"-s{seed}"
            runs.append(StudyRun(f"{study_id}{suffix}", seed, order))
    return Study(study_id, runs)


def execute(args: argparse.Namespace, data: dict) -> int:
    """`run --seeds/--orders`: run (or resume) every run of the study, then print its tables."""
    base = build_run_config(data)
    dataset, _, methods = prepare(base)
    base.methods = methods
    n_tasks = len(dataset.tasks)
    seeds = parse_seeds(args.seeds) if args.seeds else [base.seed]
    orders = (parse_orders(args.orders, args.fixed_first, n_tasks) if args.orders
              else [resolve_order(base.order, n_tasks)])
    study_id = args.run_id or new_run_id({**data, "dataset": base.dataset, "seed": "x"}).replace("-sx", "")
    study = plan(base, seeds, orders, study_id)
    if is_study(study_id, args.results) and Study.load(args.results, study_id).runs != study.runs:
        raise BenchError(f"study '{study_id}' exists with other seeds or orders; choose another --run-id")
    study.save(args.results)
    print(f"study {study_id}: {len(study.runs)} run(s) -> {Study.path(args.results, study_id).parent}",
          file=sys.stderr)
    for entry in study.runs:
        config = dataclasses.replace(base, seed=entry.seed, order=entry.order)
        store = _open_or_create(config, args.results, entry.run_id)
        print(f"run {entry.run_id} (order {order_label(entry.order)}, seed {entry.seed})", file=sys.stderr)
        try:
            run(config, store, progress=not args.quiet)
        except KeyboardInterrupt:
            print(f"interrupted; resume the study with the same command and --run-id {study_id}",
                  file=sys.stderr)
            return 130
    print(render_study(study, args.results, args.format))
    return 0


def _open_or_create(config: RunConfig, root: Path, run_id: str) -> RunStore:
    try:
        store = RunStore.open(run_id, root)
    except BenchError:
        return RunStore.create(config.to_dict(), root, run_id)
    if build_run_config(store.config) != config:
        raise BenchError(f"run '{run_id}' exists with another configuration; choose another --run-id")
    return store


# --- tables -------------------------------------------------------------------------------

def study_frames(study: Study, root: Path) -> dict[str, list]:
    """Per order label: one comparison frame per finished run (seed)."""
    frames: dict[str, list] = {order_label(order): [] for order in study.orders}
    for entry in study.runs:
        try:
            records = RunStore.open(entry.run_id, root).records()
        except BenchError:
            continue
        if records:
            frames[order_label(entry.order)].append(run_frame(records, entry.order))
    return frames


def render_study(study: Study, root: Path, fmt: str = "github") -> str:
    """One mean ± std table per order, then (with several orders) each method's sensitivity to order."""
    frames = study_frames(study, root)
    seeds = sorted({entry.seed for entry in study.runs})
    parts = [f"Study {study.study_id}: mean ± std over seeds {', '.join(map(str, seeds))} "
             "(sample std; tasks numbered as in the dataset)."]
    for label, order_frames in frames.items():
        parts += ["", f"Order {label} ({len(order_frames)} run(s))", ""]
        parts.append(render_mean_std(order_frames, fmt) if order_frames else "(no finished runs yet)")
    finished = {label: f for label, f in frames.items() if f}
    if len(finished) > 1:
        sensitivity = avg_by_order(finished)
        if len(finished) > 6:  # too wide: the per-order tables above hold each order's Avg
            sensitivity = sensitivity[["mean", "std", "min", "max", "range"]]
        parts += ["", "Sensitivity to task order: each method's Avg per order (mean over seeds), "
                  "with mean, std and range across orders", "", render(sensitivity, fmt)]
    return "\n".join(parts)
