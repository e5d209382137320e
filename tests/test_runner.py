"""End-to-end protocol: every registered method on tiny data, resume, and the baselines' signatures."""

import numpy as np
import pytest

from bench.config import TrainConfig
from bench.io import read_json
from bench.engine.metrics import backward_transfer
from bench.registry import METHODS
from bench.experiments.runner import run
from bench.results.store import RunStore
from tests.conftest import tiny_config


def run_methods(names, root, **overrides):
    config = tiny_config(methods=names, **overrides)
    store = RunStore.create(config.to_dict(), root)
    return {record.method: record for record in run(config, store, progress=False)}, store


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_fills_a_sane_matrix(name, results_root):
    records, store = run_methods([name], results_root)
    record = records[name]
    R = record.matrix()
    assert R.shape == (6, 6)
    assert record.complete
    final = R[-1]
    scored = ~np.isnan(final)
    assert scored[1:].all(), "every later task is scored after the last step"
    assert scored[0] or name == "MTL", "only MTL (not continual) leaves its final T1 entry empty"
    assert ((final[scored] >= 0) & (final[scored] <= 1)).all()
    assert np.isnan(R[np.triu_indices(6, k=1)]).all(), "no task is scored before it is learnt"
    for step in record.steps:
        assert step["backbones"] >= 1 and step["parameters"] > 0
    assert (store.method_dir(name) / "R.csv").exists()
    assert not (store.method_dir(name) / "checkpoint.pt").exists()


@pytest.mark.slow
def test_sinmoall_forgets_and_finesmax_does_not(results_root):
    records, _ = run_methods(["SinMoAll", "FineSmax"], results_root,
                             dataset_options={"n_users": 400, "n_items": 50, "seq_len": 10, "seed": 1},
                             train=TrainConfig(epochs=4, batch_size=32, lr=1e-2, patience=2))
    R_all, R_smax = records["SinMoAll"].matrix(), records["FineSmax"].matrix()
    assert R_all[-1, 0] < R_all[0, 0] - 0.1, "fine-tuning everything erodes T1"
    assert R_all[-1, 3] < R_all[3, 3], "T4 drops after training T5 and T6"
    assert backward_transfer(R_all) < -0.05
    assert backward_transfer(R_smax) == 0.0
    for j in range(6):
        np.testing.assert_array_equal(R_smax[j:, j], R_smax[j, j])  # a frozen encoder forgets nothing
    assert records["SinMoAll"].last_step["backbones"] == 1
    assert records["FineSmax"].last_step["backbones"] == 1


@pytest.mark.slow
def test_baselines_share_the_t1_model_and_count_backbones(results_root):
    records, _ = run_methods(["SinMo", "FineAll", "FineSmax", "DNN"], results_root)
    t1 = {name: record.matrix()[0, 0] for name, record in records.items()}
    assert t1["SinMo"] == t1["FineAll"] == t1["FineSmax"]
    assert records["SinMo"].last_step["backbones"] == 6
    assert records["FineAll"].last_step["backbones"] == 6
    assert records["DNN"].last_step["backbones"] == 6
    assert records["FineSmax"].last_step["parameters"] < records["FineAll"].last_step["parameters"]


def test_resume_after_interruption_retrains_nothing_and_matches(results_root, monkeypatch):
    reference, _ = run_methods(["SinMoAll"], results_root / "reference")

    method_class = METHODS.get("SinMoAll")
    original, learnt = method_class.learn, []

    def interrupted_at_third_task(self, tasks, context):
        if len(learnt) == 2:
            raise KeyboardInterrupt
        learnt.append(tasks[0].name)
        return original(self, tasks, context)

    config = tiny_config(methods=["SinMoAll"])
    store = RunStore.create(config.to_dict(), results_root / "resumed")
    monkeypatch.setattr(method_class, "learn", interrupted_at_third_task)
    with pytest.raises(KeyboardInterrupt):
        run(config, store, progress=False)
    assert len(store.load_record("SinMoAll").steps) == 2
    assert (store.method_dir("SinMoAll") / "checkpoint.pt").exists()

    def counting(self, tasks, context):
        learnt.append(tasks[0].name)
        return original(self, tasks, context)

    monkeypatch.setattr(method_class, "learn", counting)
    (record,) = run(config, RunStore.open(store.run_id, results_root / "resumed"), progress=False)
    assert learnt[2:] == record.tasks[2:], "tasks 1..2 were not retrained"
    np.testing.assert_array_equal(record.matrix(), reference["SinMoAll"].matrix())


@pytest.mark.parametrize("name", METHODS.names())
def test_search_space_names_real_options(name):
    """`bench tune` can only set what the method has: Options fields or dotted run settings."""
    import dataclasses

    import optuna

    method = METHODS.get(name)
    trial = optuna.create_study().ask()
    space = method.search_space(trial)
    fields = {f.name for f in dataclasses.fields(method.Options)}
    assert space and all("." in key or key in fields for key in space)
    assert trial.params, "the space suggests values on the trial"


def test_first_task_schedule_applies_to_the_first_task_only():
    from bench.config import FirstTaskSchedule

    train = TrainConfig(batch_size=1024, lr=1e-3, first_task=FirstTaskSchedule(batch_size=32, epochs=5))
    first, later = train.for_task(first=True), train.for_task(first=False)
    assert (first.batch_size, first.epochs, first.lr) == (32, 5, 1e-3)
    assert (later.batch_size, later.epochs) == (1024, train.epochs)


def test_first_task_schedule_is_settable_and_recorded(tmp_path, t1_cache_root):
    from bench.cli import main
    from bench.results.store import RunStore

    assert main(["run", "--methods", "FineSmax", "--epochs", "1", "--quiet", "--no-matrices",
                 "--set", "dataset_options.n_users=120", "--set", "train.first_task.batch_size=32",
                 "--set", "train.first_task.epochs=2", "--results", str(tmp_path), "--run-id", "sched",
                 "--device", "cpu"]) == 0
    store = RunStore.open("sched", tmp_path)
    assert store.config["train"]["first_task"] == {"epochs": 2, "batch_size": 32, "lr": None, "patience": None}
    import torch

    (t1_model,) = t1_cache_root.glob("t1-*.pt")  # the shared T1 cache (bench/engine/t1cache.py)
    assert len(torch.load(t1_model, weights_only=True)["log"]["epochs"]) == 2  # T1: its own 2 epochs
    logs = read_json(store.method_dir("FineSmax") / "epochs.json")
    assert logs and all(len(log["epochs"]) == 1 for log in logs)  # later tasks: train.epochs=1


def test_a_method_with_its_own_train_settings_leaves_the_shared_t1_model_to_the_run(results_root, t1_cache_root):
    """The shared T1 model is trained with the run-wide settings even when a method with its own
    (`method_train`) asks for it first; a method that never asks (DITTO) has none trained."""
    records, store = run_methods(["FineSmax", "FineAll"], results_root / "a",
                                 method_train={"FineSmax": {"lr": 1e-2}})
    assert records["FineSmax"].matrix()[0, 0] == records["FineAll"].matrix()[0, 0]
    (meta,) = [read_json(path) for path in t1_cache_root.glob("t1-*.json")]
    assert meta["meta"]["train"]["lr"] == 3e-3  # tiny_config's train.lr, not FineSmax's 1e-2

    _, store = run_methods(["DITTO"], results_root / "b", method_train={"DITTO": {"lr": 5e-4}})
    asked = store.environment["t1_cache"]
    assert asked and not [name for name in asked if name.startswith("pretrained")], asked
    assert len(list(t1_cache_root.glob("t1-*.pt"))) == 1  # still only the first run's
