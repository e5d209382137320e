"""Leaderboard fairness (issue 11): default and tuned runs are separate tables, a best cell is
marked only when it beats the runner-up by more than both stds, fewer than 3 seeds are not ranked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.results import leaderboard


def _publish(root, run_id, seed, method_scores: dict[str, list[float]], tuned: dict | None = None):
    """A published run written as `leaderboard.publish` writes it, without training anything."""
    folder = root / leaderboard.PUBLISHED / run_id
    config = {"dataset": "toy", "seed": seed, "preset": "paper", "order": None, "eval_split": "test"}
    if tuned:
        config["tuned_trials"] = tuned
    (folder / "methods").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "environment.json").write_text(json.dumps({"commit": "abc"}))
    tasks = ["A", "B", "C"]
    for method, final in method_scores.items():
        steps = []
        for row in range(3):
            scores = {tasks[j]: {"mrr@5": final[j] if row == 2 else final[j] + 0.01} for j in range(row + 1)}
            steps.append({"row": row, "tasks": [tasks[row]], "scores": scores, "seconds": 1.0,
                          "parameters": 10, "backbones": 1})
        record = {"method": method, "tasks": tasks, "metrics": {t: "mrr@5" for t in tasks},
                  "steps": steps, "complete": True}
        (folder / "methods" / method).mkdir()
        (folder / "methods" / method / "result.json").write_text(json.dumps(record))


def test_tables_split_defaults_from_tuned_and_mark_only_clear_wins(tmp_path):
    for seed, noise in enumerate([0.0, 0.01, -0.01]):
        _publish(tmp_path, f"d-s{seed}", seed, {"SinMo": [0.5, 0.2 + noise, 0.3],
                                                "FineAll": [0.5, 0.6 + noise, 0.3 + noise]})
        _publish(tmp_path, f"t-s{seed}", seed, {"FineAll": [0.5, 0.7 + noise, 0.3]}, tuned={"FineAll": 8})
    _publish(tmp_path, "one-s0", 0, {"SinMo": [0.9, 0.9, 0.9], "FineAll": [0.1, 0.1, 0.1]},
             tuned={"SinMo": 4})
    text = leaderboard.generate(tmp_path)
    assert "### paper defaults" in text and "### tuned, 8 trials each (FineAll" in text
    defaults = text.split("### paper defaults")[1].split("###")[0]
    # T2: FineAll 0.6 vs SinMo 0.2 (stds 0.01): marked; T1: a tie: not marked.
    assert "**0.6000 ± 0.0100**" in defaults
    assert "**0.5000" not in defaults
    # one seed: no std, nothing marked, and the summary says it is not ranked
    single = text.split("### tuned, 4 trials each")[1]
    assert "**" not in single
    assert "1 seed(s), fewer than 3: not ranked" in text
    assert "Avg T2–T3" in text


def test_clear_best_needs_a_margin_larger_than_both_stds():
    mean = pd.DataFrame({"Avg": [0.50, 0.47, 0.40]}, index=["A", "B", "C"])
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [0.01, 0.01, 0.0]}, index=mean.index), "Avg") == "A"
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [0.02, 0.02, 0.0]}, index=mean.index), "Avg") is None
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [np.nan] * 3}, index=mean.index), "Avg") is None
