"""Mean ± std over repeated runs: one comparison frame per run, grouped by method.

Seeds and task orders change which task sits in which column, so task columns are
labelled by the task's number in the dataset (T3 is the same task in every order) and
sorted by it; that makes tables of different orders line up.
"""

from __future__ import annotations

import math
import re

import pandas as pd

from bench.results.store import MethodRecord
from bench.results.tables import comparison_frame, missing_first_caption, render

TASK_COLUMN = re.compile(r"^T(\d+) (.+)$")
COUNT_COLUMNS = ("#B", "Params")


def run_frame(records: list[MethodRecord], order: list[int] | None = None) -> pd.DataFrame:
    """comparison_frame with task columns renamed from training position to dataset task number."""
    frame = comparison_frame(records)
    if frame.empty:
        return frame
    order = order or list(range(1, len(records[0].tasks) + 1))
    renamed, tasks = {}, []
    for column in frame.columns:
        match = TASK_COLUMN.match(str(column))
        if match:
            number = order[int(match.group(1)) - 1]
            renamed[column] = f"T{number} {match.group(2)}"
            tasks.append((number, renamed[column]))
    if order[0] != 1:  # "tasks after the first" are not T2..Tn in the dataset's numbering
        renamed.update({c: f"Avg w/o T{order[0]}" for c in frame.columns if str(c).startswith("Avg T2")})
    frame = frame.rename(columns=renamed)
    task_names = {name for _, name in tasks}
    others = [c for c in frame.columns if c not in task_names]
    return frame[[name for _, name in sorted(tasks)] + others]


def mean_std(frames: list[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Per method (row name) and column: mean, sample std (NaN for one run) and the number of runs."""
    stacked = pd.concat(frames)
    numeric = stacked.apply(pd.to_numeric, errors="coerce")
    groups = numeric.groupby(level=0, sort=False)
    return groups.mean(), groups.std(ddof=1), groups.size()


def format_cell(mean: float, std: float, count_column: bool = False, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if count_column:
        text = f"{int(round(mean)):,}"
        return text if (std is None or math.isnan(std) or std == 0) else f"{text} ± {std:,.0f}"
    text = f"{mean:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} ± {std:.{digits}f}"


def formatted(mean: pd.DataFrame, std: pd.DataFrame, count: pd.Series | None = None) -> pd.DataFrame:
    """Cells as 'mean ± std' strings (times with one decimal, counts as integers)."""
    out = pd.DataFrame(index=mean.index)
    for column in mean.columns:
        digits = 1 if column == "Time (s)" else 4
        out[column] = [format_cell(m, s, column in COUNT_COLUMNS, digits)
                       for m, s in zip(mean[column], std[column])]
    if count is not None:
        out["runs"] = count.reindex(mean.index).astype(int)
    return out


def render_mean_std(frames: list[pd.DataFrame], fmt: str = "github") -> str:
    """The mean ± std table, preceded by a line naming rows without a first-task score (MTL)."""
    mean, std, count = mean_std(frames)
    table = formatted(mean, std, count)
    caption = missing_first_caption(table)
    return (caption + "\n\n" if caption else "") + render(table, fmt)


def avg_by_order(frames_by_order: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Order sensitivity: each method's Avg per order (mean over seeds), then mean, std and range."""
    columns = {}
    for label, frames in frames_by_order.items():
        mean, _, _ = mean_std(frames)
        columns[label] = mean["Avg"]
    table = pd.DataFrame(columns)
    values = table.astype(float)  # pandas skips NaN cells without warnings (partial runs)
    table["mean"] = values.mean(axis=1)
    table["std"] = values.std(axis=1, ddof=1) if values.shape[1] > 1 else math.nan
    table["min"], table["max"] = values.min(axis=1), values.max(axis=1)
    table["range"] = table["max"] - table["min"]
    return table
