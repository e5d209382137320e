"""Sweeps: several seeds and/or task orders of one configuration (Conure Table 4).

("Study" is kept for Optuna studies, see tuning.py.)

Every (order, seed) pair is an ordinary run in results/runs/ (so `table`, `plot`,
`--resume` and the leaderboard work on it unchanged); the sweep only records which runs
belong together:

    results/sweeps/<sweep-id>/sweep.json   {"runs": [{"run_id", "seed", "order"}, ...], ...}
    results/runs/<sweep-id>-o<order>-s<seed>/   one run per order and seed

Re-running the same command with the same `--run-id` resumes the sweep: finished runs
are kept, unfinished ones continue from their last step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from bench.results.aggregate import avg_by_order, render_mean_std, run_frame
from bench.config import RunConfig, build_run_config
from bench.errors import BenchError
from bench.io import read_json, write_json
from bench.experiments.runner import run
from bench.results.names import is_safe_name, safe_name
from bench.results.store import RunStore
from bench.results.tables import protocol_caption, render, scenario_caption


@dataclass
class SweepRun:
    run_id: str
    seed: int
    order: list[int]


@dataclass
class Sweep:
    sweep_id: str
    runs: list[SweepRun] = field(default_factory=list)

    @staticmethod
    def path(root: Path, sweep_id: str) -> Path:
        return Path(root) / "sweeps" / sweep_id / "sweep.json"

    def save(self, root: Path) -> None:
        write_json(self.path(root, self.sweep_id), dataclasses.asdict(self))

    @classmethod
    def load(cls, root: Path, sweep_id: str) -> "Sweep":
        path = cls.path(root, safe_name(sweep_id, "sweep id"))
        if not path.exists():
            raise BenchError(f"no sweep '{sweep_id}' under {Path(root) / 'sweeps'}")
        data = read_json(path)
        return cls(data["sweep_id"], [SweepRun(**entry) for entry in data["runs"]])

    @property
    def orders(self) -> list[list[int]]:
        seen: list[list[int]] = []
        for entry in self.runs:
            if entry.order not in seen:
                seen.append(entry.order)
        return seen


def is_sweep(sweep_id: str, root: Path) -> bool:
    return is_safe_name(sweep_id) and Sweep.path(root, sweep_id).exists()


def order_label(order: list[int]) -> str:
    return ",".join(map(str, order))


def _order_key(order: list[int]) -> str:
    return ("" if max(order) < 10 else "_").join(map(str, order))


# --- running ------------------------------------------------------------------------------

def plan(base: RunConfig, seeds: list[int], orders: list[list[int]], sweep_id: str) -> Sweep:
    """One run per (order, seed); the run id says which, so the sweep resumes by name. The
    sweep id and every run id made from it are checked here, before anything is written."""
    safe_name(sweep_id, "sweep id")
    several_orders = len(orders) > 1
    runs = []
    for order in orders:
        for seed in seeds:
            suffix = (f"-o{_order_key(order)}" if several_orders else "") + f"-s{seed}"
            runs.append(SweepRun(safe_name(f"{sweep_id}{suffix}", f"run id of sweep '{sweep_id}'"), seed, order))
    return Sweep(sweep_id, runs)


def run_sweep(base: RunConfig, seeds: list[int], orders: list[list[int]], sweep_id: str, root: Path,
              progress: bool = True, log=print) -> Sweep:
    """Run (or resume) every run of a sweep; `KeyboardInterrupt` leaves finished runs in place."""
    sweep = plan(base, seeds, orders, sweep_id)
    if is_sweep(sweep_id, root) and Sweep.load(root, sweep_id).runs != sweep.runs:
        raise BenchError(f"sweep '{sweep_id}' exists with other seeds or orders; choose another --run-id")
    sweep.save(root)
    log(f"sweep {sweep_id}: {len(sweep.runs)} run(s) -> {Sweep.path(root, sweep_id).parent}")
    for entry in sweep.runs:
        config = dataclasses.replace(base, seed=entry.seed, order=entry.order)
        store = _open_or_create(config, root, entry.run_id)
        log(f"run {entry.run_id} (order {order_label(entry.order)}, seed {entry.seed})")
        run(config, store, progress=progress)
    return sweep


def _open_or_create(config: RunConfig, root: Path, run_id: str) -> RunStore:
    try:
        store = RunStore.open(run_id, root)
    except BenchError:
        return RunStore.create(config.to_dict(), root, run_id)
    if build_run_config(store.config) != config:
        raise BenchError(f"run '{run_id}' exists with another configuration; choose another --run-id")
    return store


# --- tables -------------------------------------------------------------------------------

def run_records(sweep: Sweep, root: Path) -> Iterator[tuple[Any, list]]:
    """(sweep entry, its method records) of every run that has any."""
    for entry in sweep.runs:
        try:
            records = RunStore.open(entry.run_id, root).records()
        except BenchError:
            continue
        if records:
            yield entry, records


def sweep_frames(sweep: Sweep, root: Path, runs: list | None = None) -> dict[str, list]:
    """Per order label: one comparison frame per finished run (seed); `runs`: `run_records`
    already read."""
    frames: dict[str, list] = {order_label(order): [] for order in sweep.orders}
    for entry, records in runs if runs is not None else run_records(sweep, root):
        frames[order_label(entry.order)].append(run_frame(records, entry.order))
    return frames


def render_sweep(sweep: Sweep, root: Path, fmt: str = "github") -> str:
    """One mean ± std table per order, then (with several orders) each method's sensitivity to order."""
    runs = list(run_records(sweep, root))  # every run's records, read once
    frames = sweep_frames(sweep, root, runs)
    seeds = sorted({entry.seed for entry in sweep.runs})
    records = [record for _, run in runs for record in run]
    captions = [caption(records) for caption in (protocol_caption, scenario_caption)]
    parts = [f"Sweep {sweep.sweep_id}: mean ± std over seeds {', '.join(map(str, seeds))} "
             "(sample std; tasks numbered as in the dataset)." + "".join(f" {c}" for c in captions if c)]
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
