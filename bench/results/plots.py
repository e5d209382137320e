"""PNG figures of a stored run: forgetting heatmaps and per-task curves (matplotlib, Agg).

matplotlib is the optional `plot` extra, imported only here so the rest of the harness
never needs it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.errors import BenchError
from bench.engine.metrics import forgetting_matrix
from bench.results.store import MethodRecord, RunStore
from bench.results.tables import METRIC_LABEL


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise BenchError("plotting needs matplotlib: pip install 'bench[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _labels(record: MethodRecord) -> list[str]:
    return [f"T{i + 1}" for i in range(len(record.tasks))]


def forgetting_heatmap(record: MethodRecord, path: Path) -> Path:
    """F[i][j] = R[i][j] - R[j][j] with a diverging colour scale centred on zero (red = forgot)."""
    plt = _pyplot()
    F = forgetting_matrix(record.matrix())
    labels = _labels(record)
    limit = float(np.nanmax(np.abs(F))) if np.isfinite(F).any() else 0.0
    limit = limit or 1e-3
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(labels), 0.8 + 0.8 * len(labels)))
    image = ax.imshow(np.ma.masked_invalid(F), cmap="RdBu", vmin=-limit, vmax=limit)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if not math.isnan(F[i, j]):
                dark = abs(F[i, j]) > 0.6 * limit  # white on the saturated cells, black elsewhere
                ax.text(j, i, f"{F[i, j]:+.3f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), [f"after {label}" for label in labels])
    ax.set_xlabel("task j (evaluated)")
    later = "\n(past tasks scored on later data)" if record.scenario.get("later") else ""
    ax.set_title(f"{record.method}: forgetting R[i][j] - R[j][j]{later}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def performance_lines(record: MethodRecord, path: Path) -> Path:
    """One line per task: its score after each training step, from the step that learnt it."""
    plt = _pyplot()
    R = record.matrix()
    labels = _labels(record)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for j, label in enumerate(labels):
        rows = [i for i in range(len(labels)) if not math.isnan(R[i, j])]
        if rows:
            metric = METRIC_LABEL.get(record.metrics[record.tasks[j]], record.metrics[record.tasks[j]])
            name = record.tasks[j] if record.tasks[j].startswith(label) else f"{label} {record.tasks[j]}"
            ax.plot(rows, R[rows, j], marker="o", label=f"{name} ({metric})")
    ax.set_xticks(range(len(labels)), [f"after {label}" for label in labels])
    ax.set_xlabel("training step")
    ax.set_ylabel("score (primary metric)")
    later = "\n(past tasks scored on later data)" if record.scenario.get("later") else ""
    ax.set_title(f"{record.method}: per-task performance over the training sequence{later}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_run(store: RunStore) -> list[Path]:
    """Write <run>/plots/<method>-forgetting.png and <method>-performance.png for every method."""
    _pyplot()
    records = store.records()
    if not records:
        raise BenchError(f"run '{store.run_id}' has no method results to plot yet")
    directory = store.directory / "plots"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for record in records:
        written.append(forgetting_heatmap(record, directory / f"{record.method}-forgetting.png"))
        written.append(performance_lines(record, directory / f"{record.method}-performance.png"))
    return written
