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
    config = {"dataset": "toy", "seed": seed, "preset": "paper", "order": None, "eval_split": "test",
              "method_options": {}}
    if tuned:
        config["tuned_trials"] = tuned
    (folder / "methods").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "environment.json").write_text(json.dumps({"commit": "abc"}))
    tasks = ["A", "B", "C"]
    for method, final in method_scores.items():
        steps = []
        for row in range(3):
            scores = {tasks[j]: {"mrr@5": final[j] if row == 2 else final[j] + 0.01}
                      for j in range(row + 1) if final[j] is not None}  # None: no score (MTL's T1)
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
    rows = list(mean.index)
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [0.01, 0.01, 0.0]}, index=mean.index), "Avg", rows) == "A"
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [0.02, 0.02, 0.0]}, index=mean.index), "Avg", rows) is None
    assert leaderboard.clear_best(mean, pd.DataFrame({"Avg": [np.nan] * 3}, index=mean.index), "Avg", rows) is None


def test_single_method_runs_and_variants_join_one_table(tmp_path):
    """A grid of one-method runs (`bench grid`) averages per method: each row shows
    its own seeds and runs, a variant row sits under its method and is never marked best."""
    for seed, noise in enumerate([0.0, 0.01, -0.01]):
        _publish(tmp_path, f"g-SinMo-s{seed}", seed, {"SinMo": [0.5, 0.2 + noise, 0.3]})
        _publish(tmp_path, f"g-FineAll-s{seed}", seed, {"FineAll": [0.5, 0.6 + noise, 0.3 + noise]})
        _publish(tmp_path, f"g-TERACON+floor-s{seed}", seed, {"TERACON+floor": [0.5, 0.9 + noise, 0.3]})
        config = json.loads((tmp_path / "published" / f"g-TERACON+floor-s{seed}" / "config.json").read_text())
        config["method_options"] = {"TERACON+floor": {"min_ratio": 0.25}}  # as the run records it
        (tmp_path / "published" / f"g-TERACON+floor-s{seed}" / "config.json").write_text(json.dumps(config))
    _publish(tmp_path, "g-MTL-s0", 0, {"MTL": [0.1, 0.95, 0.95]})  # one seed: shown, not ranked
    text = leaderboard.generate(tmp_path)
    assert text.count("### paper defaults") == 1
    table = text.split("### paper defaults")[1]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")]
            for line in table.splitlines() if line.startswith("| ")}
    assert list(rows)[1:] == ["SinMo", "FineAll", "MTL", "TERACON+floor"]
    assert "0,1,2" in rows["FineAll"] and "g-FineAll-s0 g-FineAll-s1 g-FineAll-s2" in rows["FineAll"]
    assert "0" in rows["MTL"] and "g-MTL-s0" in rows["MTL"]
    # T2: TERACON+floor (0.9) and MTL (0.95, one seed) are higher but do not compete; FineAll wins
    assert "**0.6000 ± 0.0100**" in rows["FineAll"]
    assert not any("**" in cell for cell in rows["TERACON+floor"] + rows["MTL"])
    summary = text.split("## Summary")[1].split("\n## ")[0]
    assert "Avg T2–T3: FineAll" in summary and "MTL" not in summary and "TERACON" not in summary
    assert "they are not ranked" in table


def test_a_variant_with_extra_settings_is_its_own_setup():
    recorded = {"dataset": "toy", "method_options": {"TERACON+floor": {"min_ratio": 0.25}}}
    plain = {"dataset": "toy", "method_options": {}}
    changed = {"dataset": "toy", "method_options": {"TERACON+floor": {"min_ratio": 0.5}}}
    assert leaderboard.setup_key(recorded) == leaderboard.setup_key(plain)
    assert leaderboard.setup_key(changed) != leaderboard.setup_key(plain)


def test_an_average_over_fewer_tasks_is_not_ranked_against_full_ones(tmp_path):
    """MTL has no T1 score: its all-task Avg (over T2, T3) is shown but never marked or named as
    the lead there; on Avg T2–T3, which every row has, it competes."""
    for seed, noise in enumerate([0.0, 0.002, -0.002]):
        _publish(tmp_path, f"m-s{seed}", seed, {"FineAll": [0.1, 0.5 + noise, 0.5],
                                                "SinMo": [0.1, 0.3 + noise, 0.3],
                                                "MTL": [None, 0.6 + noise, 0.6]})
    text = leaderboard.generate(tmp_path)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")]
            for line in text.split("### paper defaults")[1].splitlines() if line.startswith("| ")}
    header = rows["method"]
    avg, later = header.index("Avg"), header.index("Avg T2–T3")
    assert rows["MTL"][avg] == "0.6000 ± 0.0010" and rows["FineAll"][avg].startswith("**0.3667")
    assert rows["MTL"][later].startswith("**0.6000")
    summary = text.split("## Summary")[1]
    assert "Avg: FineAll 0.3667" in summary and "Avg T2–T3: MTL 0.6000" in summary
