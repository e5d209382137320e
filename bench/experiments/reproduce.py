"""`bench reproduce`: run the grid of a published table and set the harness's numbers beside the paper's.

A table is a JSON file under results/reference/ (the data, not code):

    {"name", "source": {"paper", "table", "page", "url"}, "dataset", "methods", "tasks",
     "metric", "published": {method: {task: value}}, "note"}

The grid runs with the `paper` preset (the released settings, bench/presets.py) unless the
caller's settings say otherwise, one run per seed as a sweep (so an interrupted reproduction
resumes), and the side-by-side table has one row per method and task (plus Avg): harness
mean, std over seeds, published value and the difference harness − published.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import build_run_config
from bench.errors import BenchError
from bench.io import read_json
from bench.results.aggregate import TASK_COLUMN, mean_std

# results/reference/ of a checkout; an installed wheel ships the same files as bench/reference/.
_CHECKOUT_REFERENCE = Path(__file__).resolve().parents[2] / "results" / "reference"
REFERENCE_DIR = (_CHECKOUT_REFERENCE if _CHECKOUT_REFERENCE.is_dir()
                 else Path(__file__).resolve().parents[1] / "reference")


@dataclass
class Reference:
    name: str
    source: dict
    dataset: str
    methods: list[str]
    tasks: list[str]
    metric: str
    published: dict[str, dict[str, float]]
    note: str = ""

    def citation(self) -> str:
        page = self.source.get("page")
        return f"{self.source.get('paper', '?')}, {self.source.get('table', '?')}" + (f", p. {page}" if page else "")


def available(directory: Path = REFERENCE_DIR) -> list[str]:
    return sorted(path.stem for path in Path(directory).glob("*.json"))


def load_reference(name: str, directory: Path = REFERENCE_DIR) -> Reference:
    path = Path(directory) / f"{name}.json"
    if not path.exists():
        raise BenchError(f"reproduce: no published table '{name}'; choose from: {', '.join(available(directory)) or '(none)'}")
    data = read_json(path)
    try:
        return Reference(**data)
    except TypeError as error:
        raise BenchError(f"{path}: {error}") from None


def run_config(reference: Reference, settings: dict, data_dir: str | None):
    """The table's grid (dataset, methods) on the user's settings, with the paper preset by default."""
    data = copy.deepcopy(settings)
    if data.get("dataset", reference.dataset) != reference.dataset:
        raise BenchError(f"reproduce {reference.name}: the table is on '{reference.dataset}', not '{data['dataset']}'")
    data.update(dataset=reference.dataset, methods=reference.methods)
    data.setdefault("preset", "paper")
    if data_dir is not None:
        data["data_dir"] = data_dir
    return build_run_config(data)


def reproduce(reference: Reference, settings: dict, data_dir: str | None, seeds: list[int], root: Path,
              run_id: str | None = None, progress: bool = True, log=print) -> pd.DataFrame:
    """Run (or resume) the grid for every seed and return the side-by-side frame."""
    from bench.experiments import sweeps
    from bench.experiments.runner import preflight, resolve_order

    config = run_config(reference, settings, data_dir)
    n_tasks, config.methods = preflight(config)
    order = resolve_order(config.order, n_tasks)
    sweep = sweeps.run_sweep(config, seeds, [order], run_id or f"reproduce-{reference.name}", root,
                             progress=progress, log=log)
    frames = [frame for group in sweeps.sweep_frames(sweep, root).values() for frame in group]
    return side_by_side(frames, reference)


def side_by_side(frames: list[pd.DataFrame], reference: Reference) -> pd.DataFrame:
    """Rows (method, task) for the reference's methods and tasks plus Avg: harness vs published."""
    mean, std, count = mean_std(frames)
    columns = {}  # "T3" -> the frame's column for dataset task 3
    for column in mean.columns:
        match = TASK_COLUMN.match(str(column))
        if match:
            columns[f"T{match.group(1)}"] = column
    rows = []
    for method in reference.methods:
        published = reference.published.get(method, {})
        for task in [*reference.tasks, "Avg"]:
            column = columns.get(task, task if task == "Avg" else None)
            ours = _cell(mean, method, column)
            spread = _cell(std, method, column)
            paper = published.get(task)
            paper = math.nan if paper is None else float(paper)
            rows.append({"method": method, "task": task,
                         "metric": "" if column is None else (str(column).split(" ", 1)[1] if task != "Avg" else "mean"),
                         "harness": ours, "± std": spread, "seeds": int(count.get(method, 0)),
                         "published": paper, "difference": ours - paper})
    return pd.DataFrame(rows).set_index(["method", "task"])


def _cell(frame: pd.DataFrame, method: str, column) -> float:
    if column is None or method not in frame.index or column not in frame.columns:
        return math.nan
    value = frame.at[method, column]
    return float(value) if value is not None and not pd.isna(value) else math.nan


def render_side_by_side(frame: pd.DataFrame, reference: Reference, fmt: str = "github") -> str:
    from bench.results.tables import render

    missing = int(np.isnan(frame["published"].to_numpy(dtype=float)).sum())
    lines = [f"{reference.name}: {reference.citation()}",
             f"harness: mean ± std over seeds on '{reference.dataset}'; difference = harness − published."]
    if missing:
        lines.append(f"{missing} of {len(frame)} published values are not in results/reference/{reference.name}.json "
                     "(shown as –); see its note.")
    return "\n".join(lines + ["", render(frame.reset_index().set_index("method"), fmt)])
