"""`bench reproduce`: run the grid of a published table and set the harness's numbers beside the paper's.

A table is a JSON file under results/reference/ (the data, not code):

    {"name", "source": {"paper", "table", "page", "url"}, "dataset", "methods", "tasks",
     "metric", "published": {row: {task: value}}, "note",
     "settings": {...},                              optional: what the table's setting is
     "runs": [{"label": "no T2", "settings": {...}}]} optional: several grids, one row set each

`methods` are the table's rows: registered methods and variants (`Conure+embprune`) or the
extra rows a method reports (`Conure-`, run by running `Conure`). `settings` are run
settings in the config file's shape (`{"order": [1, 2, 3]}`, `{"backbone": {"name":
"sasrec"}}`, `{"method_options": {...}}`), laid over the preset and under the caller's own
settings; each entry of `runs` adds its own and names its rows "<row> (<label>)" (Conure's
Table 3: T3 with and without T2 before it is one table of two grids).

Every grid runs with the `paper` preset (the released settings, bench/presets.py) unless the
caller's settings say otherwise, one run per seed as a sweep (so an interrupted reproduction
resumes), and the side-by-side table has one row per method and task (plus Avg): harness
mean, std over seeds, published value and the difference harness − published.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import build_run_config
from bench.errors import BenchError
from bench.io import read_json
from bench.presets import merge_settings
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
    settings: dict = dataclasses.field(default_factory=dict)  # the table's setting, for every grid
    runs: list[dict] = dataclasses.field(default_factory=list)  # [{"label", "settings"}]; none: one grid

    def citation(self) -> str:
        page = self.source.get("page")
        return f"{self.source.get('paper', '?')}, {self.source.get('table', '?')}" + (f", p. {page}" if page else "")

    def grids(self) -> list[tuple[str, dict]]:
        """(label, settings) per grid: the table's settings with each run's laid over them."""
        return [(str(run.get("label", "")), merge_settings(self.settings, run.get("settings") or {}))
                for run in (self.runs or [{}])]

    def rows(self) -> list[str]:
        """The side-by-side rows: every method row per grid, "<row> (<label>)" for a labelled one."""
        return [row_name(method, label) for label, _ in self.grids() for method in self.methods]

    def run_methods(self) -> list[str]:
        """The methods to run: each row's own method, or the method whose extra row it is."""
        return list(dict.fromkeys(runnable(row) for row in self.methods))

    def describe(self) -> str:
        """One line for `--list`: the citation, the settings the table fixes and its grids."""
        fixed = _dotted(self.settings)
        if self.runs:
            fixed.append(f"{len(self.runs)} grids: " + ", ".join(f"'{label}'" for label, _ in self.grids()))
        return self.citation() + (f" [{'; '.join(fixed)}]" if fixed else "")


def row_name(method: str, label: str) -> str:
    return f"{method} ({label})" if label else method


def runnable(row: str) -> str:
    """The registered method (or variant) behind a row: the row itself, or for an extra row
    such as "Conure-" or "Conure+embprune-" the longest registered name it starts with."""
    from bench.registry import METHODS

    for end in range(len(row), 0, -1):
        if row[:end] in METHODS:
            return METHODS.canonical(row[:end])
    raise BenchError(f"reproduce: row '{row}' is neither a method nor an extra row of one")


def _dotted(settings: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in settings.items():
        if isinstance(value, dict):
            out += _dotted(value, f"{prefix}{key}.")
        else:
            text = ",".join(map(str, value)) if isinstance(value, list) else value
            out.append(f"{prefix}{key}={text}")
    return out


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


def run_config(reference: Reference, settings: dict, data_dir: str | None, grid: dict | None = None):
    """One grid of the table (dataset, methods, the table's settings) on the user's settings,
    with the paper preset by default; the user's settings win over the table's."""
    table = reference.grids()[0][1] if grid is None else grid
    data = merge_settings(table, copy.deepcopy(settings))
    if data.get("dataset", reference.dataset) != reference.dataset:
        raise BenchError(f"reproduce {reference.name}: the table is on '{reference.dataset}', not '{data['dataset']}'")
    data.update(dataset=reference.dataset, methods=reference.run_methods())
    data.setdefault("preset", "paper")
    if data_dir is not None:
        data["data_dir"] = data_dir
    return build_run_config(data)


def reproduce(reference: Reference, settings: dict, data_dir: str | None, seeds: list[int], root: Path,
              run_id: str | None = None, progress: bool = True, log=print) -> pd.DataFrame:
    """Run (or resume) every grid for every seed and return the side-by-side frame.

    Every grid's settings are checked before the first one trains."""
    from bench.experiments import sweeps
    from bench.experiments.runner import preflight, resolve_order

    base_id = run_id or f"reproduce-{reference.name}"
    planned = []
    for label, grid in reference.grids():
        config = run_config(reference, settings, data_dir, grid)
        n_tasks, config.methods = preflight(config)
        planned.append((label, config, resolve_order(config.order, n_tasks)))
    frames = []
    for label, config, order in planned:
        sweep_id = f"{base_id}-{_slug(label)}" if label else base_id
        sweep = sweeps.run_sweep(config, seeds, [order], sweep_id, root, progress=progress, log=log)
        frames += [_label_rows(frame, label) for group in sweeps.sweep_frames(sweep, root).values()
                   for frame in group]
    return side_by_side(frames, reference)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-").lower()


def _label_rows(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    return frame.rename(index=lambda row: row_name(row, label)) if label else frame


def side_by_side(frames: list[pd.DataFrame], reference: Reference) -> pd.DataFrame:
    """Rows (method, task) for the reference's methods and tasks plus Avg: harness vs published."""
    mean, std, count = mean_std(frames)
    columns = {}  # "T3" -> the frame's column for dataset task 3
    for column in mean.columns:
        match = TASK_COLUMN.match(str(column))
        if match:
            columns[f"T{match.group(1)}"] = column
    rows = []
    for method in reference.rows():
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

    cells = frame[frame.index.get_level_values("task") != "Avg"]  # a paper's table has no Avg
    missing = int(np.isnan(cells["published"].to_numpy(dtype=float)).sum())
    lines = [f"{reference.name}: {reference.citation()}",
             f"harness: mean ± std over seeds on '{reference.dataset}'; difference = harness − published."]
    if missing:
        lines.append(f"{missing} of {len(cells)} published values are not in results/reference/{reference.name}.json "
                     "(shown as –); see its note.")
    return "\n".join(lines + ["", render(frame.reset_index().set_index("method"), fmt)])
