"""Paper-style tables from stored records: pandas builds them, tabulate renders them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.engine.metrics import average_performance, backward_transfer, forgetting_matrix, forward_transfer
from bench.results.store import MethodRecord

METRIC_LABEL = {"mrr@5": "MRR@5", "accuracy": "Acc"}


def task_columns(record: MethodRecord) -> list[str]:
    return [f"T{i + 1} {METRIC_LABEL.get(record.metrics[name], record.metrics[name])}"
            for i, name in enumerate(record.tasks)]


def later_average_label(n_tasks: int) -> str:
    """The column of the average over the tasks after the first (those every method scores)."""
    return f"Avg T2–T{n_tasks}" if n_tasks > 2 else "Avg T2"


def _nanmean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if values.size and not np.isnan(values).all() else math.nan


def missing_first_caption(frame: pd.DataFrame) -> str:
    """A sentence naming the rows without a score on the first task (MTL), or ''."""
    first = next((c for c in frame.columns if str(c).startswith("T")), None)
    if first is None:
        return ""
    rows = [str(name) for name, value in frame[first].items() if _missing(value)]
    if not rows:
        return ""
    later = next((c for c in frame.columns if str(c).startswith("Avg T2") or str(c).startswith("Avg w/o")), "")
    return (f"{', '.join(rows)} {'has' if len(rows) == 1 else 'have'} no {first.split()[0]} score, so "
            f"{'its' if len(rows) == 1 else 'their'} Avg covers fewer tasks; compare every row on {later}.")


def _missing(value) -> bool:
    if isinstance(value, str):
        return value.strip() in ("–", "", "nan")
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def reference_scores(records: list[MethodRecord]) -> np.ndarray | None:
    """Single-task scores for FWT: SinMo's diagonal when the run has SinMo."""
    for record in records:
        if record.method == "SinMo":
            return np.diag(record.matrix())
    return None


def learnt_so_far(record: MethodRecord) -> np.ndarray:
    """R up to the last step that finished: an interrupted run's table shows where it got to
    (its last row, Avg and BWT over the tasks learnt) rather than an empty final row."""
    R = record.matrix()
    if record.complete or not record.steps:
        return R
    last = max(step["row"] for step in record.steps) + 1
    return R[:last, :last]


def comparison_frame(records: list[MethodRecord]) -> pd.DataFrame:
    """Rows = methods (plus variants such as Conure-), columns = final score per task, Avg, BWT, FWT, #B."""
    if not records:
        return pd.DataFrame()
    reference = reference_scores(records)
    columns = task_columns(records[0])
    later = later_average_label(len(columns))
    rows = []
    for record in records:
        R = learnt_so_far(record)
        last = record.last_step
        final = np.full(len(columns), np.nan)
        final[:len(R)] = R[-1]
        row = dict(zip(columns, final))
        row.update({
            "Avg": average_performance(R),
            later: _nanmean(R[-1][1:]),
            "BWT": backward_transfer(R),
            "FWT": forward_transfer(R, reference[:len(R)]) if reference is not None else math.nan,
            "#B": last.get("backbones"),
            "Params": last.get("parameters"),
            "Time (s)": sum(step.get("seconds", 0.0) for step in record.steps),
        })
        name = record.method if record.complete else f"{record.method} (partial, {len(record.steps)} step(s))"
        rows.append(pd.Series(row, name=name))
        for variant, scores in record.variants.items():
            values = [scores.get(name, {}).get(record.metrics[name], math.nan) for name in record.tasks]
            variant_row = dict(zip(columns, values))
            variant_row["Avg"] = _nanmean(values)
            variant_row[later] = _nanmean(values[1:])
            rows.append(pd.Series(variant_row, name=variant))
    return pd.DataFrame(rows)


def render(frame: pd.DataFrame, fmt: str = "github", floatfmt: str = ".4f") -> str:
    """Numbers in one format, missing cells as '–' (tabulate skips floatfmt in mixed columns)."""
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "–" if math.isnan(value) else format(value, floatfmt)
        return value

    shown = frame.astype(object).map(cell)
    return tabulate(shown, headers="keys", tablefmt=fmt, disable_numparse=True)


def protocol_caption(records: list[MethodRecord]) -> str | None:
    """The sentence naming the evaluation protocol (bench/engine/protocols.py) when it is not
    the default full ranking @5; runs made before protocols existed record none (full @5)."""
    from bench.engine.protocols import describe

    described = sorted({describe(_as_settings(record.evaluation)) or "full ranking, cut-offs @5" for record in records})
    if described == ["full ranking, cut-offs @5"]:
        return None
    return f"Item tasks scored by {' / '.join(described)}."


def scenario_caption(records: list[MethodRecord]) -> str | None:
    """The sentence saying that past tasks were scored on later data (the time-aware scenario,
    docs/scenarios.md), naming the tasks that have it; None for every other run."""
    later = sorted({name for record in records for name in record.scenario.get("later", [])},
                   key=lambda name: records[0].tasks.index(name) if name in records[0].tasks else 0)
    if not any(record.scenario for record in records):
        return None
    if not later:
        return "Time-aware scenario: the item vocabulary grows from task to task (no task has later data)."
    caption = ("Time-aware scenario: past tasks scored on later data (rows after a task's own step, "
               f"for {', '.join(later)}); each task's own row on its test split.")
    extra = sorted({row for record in records for row in record.variants})
    if extra:  # e.g. Conure-: each task right after its own step, so never on later data
        caption += (f" {', '.join(extra)} score{'s' if len(extra) == 1 else ''} each task right after its "
                    "own step, on its test split (as the diagonal), not on later data.")
    return caption


def _as_settings(evaluation: dict) -> dict:
    """A result.json `evaluation` record as `eval` settings (its seed is the resolved one)."""
    return {key: value for key, value in evaluation.items() if key != "seed"}


def render_run(records: list[MethodRecord], fmt: str = "github", matrices: bool = True) -> str:
    """Each method's performance and forgetting matrices if asked, then the comparison table
    last, so that it is what a terminal or a log shows at its end."""
    if not records:
        return "(no finished method results yet)"
    frame = comparison_frame(records)
    for column in ("#B", "Params"):
        if column in frame:
            frame[column] = frame[column].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}")
    frame["Time (s)"] = frame["Time (s)"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    parts = []
    if matrices:
        for record in records:
            labels = [f"T{i + 1}" for i in range(len(record.tasks))]
            forgetting = pd.DataFrame(forgetting_matrix(record.matrix()),
                                      index=record.matrix_frame().index, columns=labels)
            later = "; past tasks scored on later data" if record.scenario.get("later") else ""
            parts += [f"{record.method}: performance matrix R[i][j] (task j after training task i{later})",
                      render(record.matrix_frame(), fmt),
                      "", f"{record.method}: forgetting matrix R[i][j] - R[j][j]"
                      + (" (past tasks on later data, R[j][j] on the test split)" if later else ""),
                      render(forgetting, fmt, floatfmt="+.4f"), ""]
    caption = ("Final performance after the last task (MRR@5 for item tasks, accuracy for "
               "classification); Avg over all tasks, Avg T2–Tn over the tasks after the first; "
               "BWT < 0 means forgetting; FWT is measured against SinMo.")
    missing = missing_first_caption(frame)
    protocol = protocol_caption(records)
    scenario = scenario_caption(records)
    parts += [caption + (" " + missing if missing else "") + (" " + protocol if protocol else "")
              + (" " + scenario if scenario else ""), "",
              render(frame, fmt)]
    return "\n".join(parts)
