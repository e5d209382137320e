"""Seeds, task orders, tuning, plots and the leaderboard on a tiny synthetic dataset (CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.experiments.runner
import bench.engine.training
import bench.engine.context
from bench.experiments import sweeps, tuning
from bench.results import leaderboard
from bench.cli import build_parser, main
from bench.commands.run import config_from_args, parse_orders, parse_seeds
from bench.commands.tune import parse_fixed
from bench.errors import BenchError
from bench.results.store import RunStore

TINY = [
    "--epochs", "1", "--quiet",
    "--set", "dataset_options.n_users=40", "--set", "dataset_options.n_items=30",
    "--set", "dataset_options.target_items=[8]", "--set", "dataset_options.classes=[3]",
    "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]",
]



def bench_main(*argv, results: Path) -> int:
    return main([*argv, *TINY, "--results", str(results)])


@pytest.fixture(scope="module")
def seed_study(tmp_path_factory):
    """Two seeds of SinMo and SinMoAll, shared by the table, plot and leaderboard tests."""
    root = tmp_path_factory.mktemp("results")
    torch.set_num_threads(1)
    assert bench_main("run", "--methods", "SinMo,SinMoAll", "--seeds", "0,1", "--run-id", "st",
                      "--no-matrices", results=root) == 0
    return root


def test_seeds_give_mean_std_table_and_keep_every_matrix(seed_study, capsys):
    study = sweeps.Sweep.load(seed_study, "st")
    assert [(run.run_id, run.seed) for run in study.runs] == [("st-s0", 0), ("st-s1", 1)]
    for run in study.runs:
        for method in ("SinMo", "SinMoAll"):
            assert (seed_study / "runs" / run.run_id / "methods" / method / "R.csv").exists()
        assert RunStore.open(run.run_id, seed_study).config["seed"] == run.seed
    assert main(["table", "st", "--results", str(seed_study)]) == 0
    text = capsys.readouterr().out
    assert "±" in text and "seeds 0, 1" in text
    row = next(line for line in text.splitlines() if line.startswith("| SinMoAll"))
    assert row.rstrip(" |").endswith("2")  # the runs column: both seeds averaged


def test_same_seed_gives_identical_results(tmp_path):
    for run_id, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert bench_main("run", "--methods", "SinMoAll,DNN", "--seed", seed, "--run-id", run_id,
                          "--no-matrices", results=tmp_path) == 0
    runs = {run_id: RunStore.open(run_id, tmp_path) for run_id in "abc"}
    for method in ("SinMoAll", "DNN"):
        R = {run_id: store.load_record(method).matrix() for run_id, store in runs.items()}
        np.testing.assert_array_equal(R["a"], R["b"])
        losses = {run_id: [epoch["loss"] for log in json.loads(
            (store.method_dir(method) / "epochs.json").read_text()) for epoch in log["epochs"]]
            for run_id, store in runs.items()}
        assert losses["a"] == losses["b"]
        assert losses["a"] != losses["c"]  # the seed does change the training


def test_orders_print_one_table_per_order_and_sensitivity(tmp_path, capsys):
    assert bench_main("run", "--methods", "SinMoAll,FineSmax", "--orders", "1,2,3", "1,3,2",
                      "--run-id", "ord", results=tmp_path) == 0
    text = capsys.readouterr().out
    assert "Order 1,2,3 (1 run(s))" in text and "Order 1,3,2 (1 run(s))" in text
    assert "Sensitivity to task order" in text
    sensitivity = text.split("Sensitivity to task order")[1]
    assert "| SinMoAll" in sensitivity and "range" in sensitivity
    assert (tmp_path / "runs" / "ord-o132-s0" / "methods" / "FineSmax" / "result.json").exists()
    # the order of the second run is stored in its config, so tables label tasks by dataset number
    assert RunStore.open("ord-o132-s0", tmp_path).config["order"] == [1, 3, 2]


def test_order_parsing():
    assert parse_orders(["all-permutations"], 1, 3) == [[1, 2, 3], [1, 3, 2]]
    assert len(parse_orders(["all-permutations"], None, 3)) == 6
    assert parse_orders(["2,1,3"], None, 3) == [[2, 1, 3]]
    for bad in (["1,2"], ["1,1,2"], ["1,x,3"]):
        with pytest.raises(BenchError):
            parse_orders(bad, None, 3)
    with pytest.raises(BenchError):
        parse_seeds("0,0")


@pytest.fixture
def no_test_split(monkeypatch):
    """Fail loudly if anything evaluates a task's test split; count the evaluations."""
    calls = []

    def guard(original):
        def evaluate(task, split, *args, **kwargs):
            assert split is not task.test, "tuning evaluated the test split"
            calls.append(task.name)
            return original(task, split, *args, **kwargs)
        return evaluate

    for module in (bench.engine.training, bench.experiments.runner, bench.engine.context):
        monkeypatch.setattr(module, "evaluate", guard(module.evaluate))
    return calls


def tune(root: Path, trials: int) -> int:
    return main(["tune", "--method", "SinMoAll", "--trials", str(trials), "--startup-trials", "1",
                 *TINY[:2], *TINY[3:], "--results", str(root)])


@pytest.mark.slow
def test_tune_resumes_and_never_touches_test(tmp_path, no_test_split, capsys, t1_cache_root):
    assert tune(tmp_path, 2) == 0
    db = tmp_path / "studies" / "synthetic-SinMoAll.db"
    study = tuning.open_study(db, "synthetic-SinMoAll", create=False)
    first = [(t.number, t.params) for t in study.trials]
    assert len(first) == 2
    assert tune(tmp_path, 4) == 0  # a rerun adds only the missing trials
    study = tuning.open_study(db, "synthetic-SinMoAll", create=False)
    assert len(study.trials) == 4
    assert [(t.number, t.params) for t in study.trials][:2] == first
    assert no_test_split  # the validation split was evaluated
    assert len(list(t1_cache_root.glob("t1-*.pt"))) == 1  # every trial reused one T1 model
    out = capsys.readouterr().out
    assert "best trial" in out and "importance" in out
    assert tune(tmp_path, 4) == 0  # nothing left to do
    assert len(tuning.open_study(db, "synthetic-SinMoAll", create=False).trials) == 4


def test_use_tuned_picks_the_best_trial(tmp_path, capsys):
    assert tune(tmp_path, 2) == 0
    study = tuning.open_study(tmp_path / "studies" / "synthetic-SinMoAll.db", "synthetic-SinMoAll", create=False)
    best = study.best_trial
    assert best.value == max(t.value for t in study.trials if t.value is not None)
    args = build_parser().parse_args(["run", "--methods", "SinMoAll,FineSmax", "--use-tuned",
                                      "--results", str(tmp_path)])
    data = config_from_args(args)
    assert data["method_train"] == {
        "SinMoAll": {key.split(".", 1)[1]: value for key, value in best.params.items()}}
    assert "FineSmax" not in data.get("method_options", {})
    args = build_parser().parse_args(["run", "--methods", "FineSmax", "--use-tuned", "--results", str(tmp_path)])
    with pytest.raises(BenchError, match="no tuning study"):
        config_from_args(args)


def test_search_space_default_and_options_mapping():
    data = tuning.apply_params({}, "Conure", {"train.lr": 0.01, "prune_ratio": 0.5, "backbone.embedding_dim": 32})
    assert data == {"method_train": {"Conure": {"lr": 0.01}},
                    "method_options": {"Conure": {"prune_ratio": 0.5}},
                    "backbone": {"embedding_dim": 32}}
    fixed = parse_fixed(["train.batch_size=64"])
    assert fixed == {"train.batch_size": 64}
    with pytest.raises(BenchError):
        parse_fixed(["lr"])


@pytest.mark.slow
def test_plots_are_written(seed_study):
    pytest.importorskip("matplotlib")
    assert main(["plot", "st-s0", "--results", str(seed_study)]) == 0
    for method in ("SinMo", "SinMoAll"):
        for kind in ("forgetting", "performance"):
            path = seed_study / "runs" / "st-s0" / "plots" / f"{method}-{kind}.png"
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_leaderboard_publish_generate_and_check(seed_study, tmp_path, capsys):
    root = tmp_path / "results"
    for run_id in ("st-s0", "st-s1"):
        (root / "runs").mkdir(parents=True, exist_ok=True)
        (root / "runs" / run_id).symlink_to(seed_study / "runs" / run_id)
    assert main(["leaderboard", "--results", str(root), "--check"]) == 1  # no file yet
    assert main(["leaderboard", "--results", str(root), "--publish", "st-s0", "st-s1"]) == 0
    published = sorted(p.relative_to(root / "published").as_posix()
                       for p in (root / "published").rglob("*") if p.is_file() and ".locks" not in p.parts)
    assert published == ["st-s0/config.json", "st-s0/environment.json", "st-s0/methods/SinMo/result.json",
                          "st-s0/methods/SinMoAll/result.json", "st-s1/config.json", "st-s1/environment.json",
                          "st-s1/methods/SinMo/result.json", "st-s1/methods/SinMoAll/result.json"]
    text = (root / "LEADERBOARD.md").read_text()
    assert "## synthetic, order 1,2,3" in text and "±" in text and "st-s0 st-s1" in text
    assert str(tmp_path) not in text
    assert leaderboard.generate(root) == text  # deterministic
    assert main(["leaderboard", "--results", str(root), "--check"]) == 0
    (root / "LEADERBOARD.md").write_text(text.replace("SinMoAll", "SinMoAII"))
    assert main(["leaderboard", "--results", str(root), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    with pytest.raises(BenchError, match="exists already"):
        leaderboard.publish(root, "st-s0")


def test_leaderboard_refuses_validation_runs(tmp_path):
    store = RunStore.create({"dataset": "synthetic", "eval_split": "valid"}, tmp_path, "v")
    assert store.directory.exists()
    with pytest.raises(BenchError, match="only test runs"):
        leaderboard.publish(tmp_path, "v")


def test_study_resumes_by_run_id_and_refuses_another_plan(seed_study, capsys):
    result = seed_study / "runs" / "st-s1" / "methods" / "SinMoAll" / "result.json"
    before = result.read_text()
    assert bench_main("run", "--methods", "SinMo,SinMoAll", "--seeds", "0,1", "--run-id", "st",
                      "--no-matrices", results=seed_study) == 0
    assert result.read_text() == before  # finished runs are kept, not retrained
    assert bench_main("run", "--methods", "SinMo,SinMoAll", "--seeds", "0,2", "--run-id", "st",
                      results=seed_study) == 2
    assert "other seeds or orders" in capsys.readouterr().err


def test_tuning_a_method_with_extra_rows_never_touches_test(tmp_path, no_test_split):
    """Conure reports a Conure- row from inside `learn`; while tuning it too reads validation."""
    code = main(["tune", "--method", "Conure", "--trials", "1", *TINY[:2], *TINY[3:],
                 "--results", str(tmp_path)])
    assert code == 0 and no_test_split
