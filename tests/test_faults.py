"""Faults a multi-hour GPU run must survive (issue 17), one test (or a few) per row of the
issue's table: divergence, kills inside a task, damaged files, unfinished runs published,
up-front checks, resume of the stored settings, SIGTERM."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.config import TrainConfig
from bench.engine import checkpoints
from bench.experiments.runner import run
from bench.io import read_json
from bench.results.store import RunStore
from tests.conftest import tiny_config


def _fit_logs(store: RunStore, method: str) -> list[dict]:
    """epochs.json without the wall-clock seconds (the one thing a resume may change)."""
    return [{k: ([_untimed(e) for e in v] if k == "epochs" else v) for k, v in log.items() if k != "seconds"}
            for log in read_json(store.method_dir(method) / "epochs.json")]


def _untimed(epoch: dict) -> dict:
    return {k: v for k, v in epoch.items() if not k.endswith("seconds")}


def _interrupt_after_writes(monkeypatch, n: int, seen: list):
    """Raise KeyboardInterrupt (as Ctrl-C or SIGTERM does) right after the n-th in-task
    checkpoint is written, remembering where inside its fit it was."""
    original = checkpoints.Journal.write

    def write(self):
        original(self)
        if self.position is not None:  # inside a fit (not the record of a finished one)
            seen.append(dict(self.position["loop"], call=self.position["call"], scope=self.scope))
            if len(seen) == n:
                raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints.Journal, "write", write)


def _count_optimiser_steps(monkeypatch) -> list[int]:
    count, original = [0], torch.optim.Adam.step

    def step(self, *args, **kwargs):
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return count


# ------------------------------------------------- row 2: a kill in the middle of a task


@pytest.mark.parametrize("method, writes", [("SinMo", 2), ("SinMo", 9), ("TERACON", 9), ("Conure", 32),
                                            ("MTL", 8)])
def test_kill_inside_a_task_resumes_mid_epoch_bit_identical(method, writes, results_root, monkeypatch):
    """The in-task checkpoint: the resumed run's R and epoch logs equal an uninterrupted one's
    exactly (CPU), and it continued in the middle of an epoch instead of the task's start."""
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, patience=2, checkpoint_every_steps=2)
    config = tiny_config(methods=[method], train=train)
    steps = _count_optimiser_steps(monkeypatch)
    reference = RunStore.create(config.to_dict(), results_root / "reference")
    (expected,) = run(config, reference, progress=False)
    total, steps[0] = steps[0], 0

    # a T1 cache of its own: the killed run trains (and is killed in) its T1 models too
    monkeypatch.setenv("BENCH_T1_CACHE", str(results_root / "killed-t1-cache"))
    store = RunStore.create(config.to_dict(), results_root / "killed")
    seen: list = []
    with monkeypatch.context() as patch:
        _interrupt_after_writes(patch, writes, seen)
        with pytest.raises(KeyboardInterrupt):
            run(config, store, progress=False)
    assert seen[-1]["index"] > 0, "stopped in the middle of an epoch"
    if method == "Conure":
        assert seen[-1]["call"] == 1, "Conure's retrain: the step's first fit had finished"
    assert list(store.directory.rglob("*.fit.pt")) or (store.method_dir(method) / "fit.pt").exists()

    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "killed"), progress=False)
    assert steps[0] == total, "no optimiser step done twice: the kill came right after a checkpoint"
    np.testing.assert_array_equal(resumed.matrix(), expected.matrix())
    assert _fit_logs(store, method) == _fit_logs(reference, method)
    assert not list(store.directory.rglob("fit*.pt")) and not list(store.directory.rglob("*.fit*.pt"))


# ------------------------------------------------- row 1: divergence is an error, never a score

def _class_task():
    from bench.engine.tasks import Task, TaskKind, TaskSplit

    rng = np.random.default_rng(0)
    split = TaskSplit(rng.integers(1, 10, (100, 5)), rng.integers(0, 3, 100))
    return Task("T4", TaskKind.CLASS, 3, split, split, split)


def _fit_with_nan_at(bad_steps: set[int], scores_nan: bool = False, **train):
    """fit on a tiny class task whose loss is NaN at the given (1-based, per epoch) steps."""
    from bench.engine.training import fit

    task, model, step = _class_task(), torch.nn.Embedding(10, 3), [0]

    def loss_fn(x, y):
        step[0] += 1
        loss = torch.nn.functional.cross_entropy(model(x[:, -1]), y)
        return loss * torch.nan if (step[0] - 1) % 10 + 1 in bad_steps else loss

    def score_fn(x):
        scores = model(x[:, -1])
        return scores * torch.nan if scores_nan else scores

    config = TrainConfig(epochs=2, batch_size=10, patience=5, **train)
    return fit(task, model.parameters(), loss_fn, score_fn, model, config, torch.device("cpu")), model


def test_a_non_finite_loss_stops_the_task_naming_epoch_and_step():
    from bench.errors import DivergenceError

    with pytest.raises(DivergenceError, match=r"task T4: the training loss is not finite at epoch 1, step 3;"):
        _fit_with_nan_at({3, 7})


def test_nonfinite_skip_leaves_the_steps_out_and_counts_them():
    log, model = _fit_with_nan_at({3, 7}, nonfinite="skip")
    assert [epoch["skipped"] for epoch in log.epochs] == [2, 2] and log.skipped_steps == 4
    assert torch.isfinite(model.weight).all()
    assert all(np.isfinite(epoch["loss"]) for epoch in log.epochs)


def test_a_non_finite_validation_score_is_never_selected():
    from bench.errors import DivergenceError

    with pytest.raises(DivergenceError, match="validation score is not finite at epoch 1"):
        _fit_with_nan_at(set(), scores_nan=True)
    with pytest.raises(DivergenceError, match="no epoch has a finite validation score"):
        _fit_with_nan_at(set(), scores_nan=True, nonfinite="skip")


def test_nan_scores_are_nan_metrics_not_infinite_ones():
    from bench.engine.metrics import accuracy, ranking_metrics

    scores, targets = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    assert all(np.isfinite(v) for v in ranking_metrics(scores, targets).values())
    scores[1] = torch.nan
    assert all(np.isnan(v) for v in ranking_metrics(scores, targets).values())  # was MRR/NDCG = inf
    assert np.isnan(accuracy(scores, targets)["accuracy"])


@pytest.mark.parametrize("method", ["SinMo", "TERACON"])
def test_a_diverging_run_is_one_error_naming_method_task_epoch_and_step(method, capsys, tmp_path):
    from tests.test_bad_input import TINY, cli
    from tests.test_cli import assert_one_line_error

    code, _, err = cli(capsys, "run", "--methods", method, *TINY, "--set", "train.lr=1e30",
                       "--run-id", "diverged", "--results", tmp_path)
    started, *rest = err.splitlines(keepends=True)  # "run diverged -> ...", then the error
    assert started.startswith("run diverged")
    assert_one_line_error(code, "".join(rest), f"{method}, task T1", "not finite at epoch 1")
    store = RunStore.open("diverged", tmp_path)
    assert store.load_record(method) is None, "nothing stored as a result"


def test_a_diverging_tune_trial_fails_instead_of_winning(tmp_path, capsys):
    from optuna.trial import TrialState

    from bench.experiments import tuning

    study = tuning.tune(tuning.TuneSettings(
        method="SinMo", trials=2, root=tmp_path, fixed={"train.lr": 1e30}, quiet=True,
        base={"dataset_options": {"n_users": 100, "n_items": 20}, "device": "cpu",
              "backbone": {"embedding_dim": 8, "dilations": [1]}, "train": {"epochs": 1}}))
    states = [trial.state for trial in study.trials]
    assert states == [TrialState.FAIL, TrialState.FAIL], "counted against --trials, never retried"
    assert all("not finite" in trial.user_attrs["diverged"] for trial in study.trials)
    assert tuning.best_params(study) is None


# ------------------------------------------------- row 2 (a real kill -9) and row 14 (SIGTERM)

def _spawn_stopping_after_first_fit_checkpoint(results, run_id):
    """`bench run` in a child that stops itself right after it first writes its in-task checkpoint
    (methods/SinMoAll/fit.pt: one training step into the second task), so the signal lands
    exactly there and not wherever a polling loop on a loaded machine catches up with it."""
    import subprocess

    from tests import stopping

    fit = results / "runs" / run_id / "methods" / "SinMoAll" / "fit.pt"
    process = subprocess.Popen(
        stopping.command("bench.engine.checkpoints:Journal.write", "bench", "run", *KILLED, "--run-id", run_id,
                         "--results", results, when_exists=fit),
        cwd=stopping.REPO, env=stopping.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stopping.wait_stopped(process)
    assert fit.exists()
    return process


KILLED = ["--methods", "SinMoAll", "--set", "dataset_options.n_users=200", "--set", "dataset_options.n_items=30",
          "--set", "backbone.embedding_dim=16", "--set", "backbone.dilations=[1,2]", "--epochs", "2",
          "--set", "train.checkpoint_every_steps=1", "--device", "cpu", "--quiet"]


@pytest.mark.slow
def test_sigkill_after_an_in_task_checkpoint_then_resume_is_bit_identical(capsys, tmp_path):
    from tests import stopping
    from tests.test_bad_input import cli

    results = tmp_path / "results"
    assert cli(capsys, "run", *KILLED, "--run-id", "reference", "--results", results)[0] == 0
    process = _spawn_stopping_after_first_fit_checkpoint(results, "k")
    stopping.kill(process)
    store = RunStore.open("k", results)
    assert len(store.load_record("SinMoAll").steps) == 1, "killed inside the second task"

    code, _, err = cli(capsys, "run", "--resume", "k", "--quiet", "--results", results)
    assert code == 0, err
    finished, reference = store.load_record("SinMoAll"), RunStore.open("reference", results).load_record("SinMoAll")
    np.testing.assert_array_equal(finished.matrix(), reference.matrix())
    assert (store.method_dir("SinMoAll") / "R.csv").read_text() == \
        (RunStore.open("reference", results).method_dir("SinMoAll") / "R.csv").read_text()
    assert not list(store.directory.rglob("*.tmp")) and not list(store.directory.rglob("fit*.pt"))


@pytest.mark.slow
def test_sigterm_prints_the_resume_hint_and_leaves_no_temporary_file(tmp_path):
    import signal

    results = tmp_path / "results"
    process = _spawn_stopping_after_first_fit_checkpoint(results, "t")
    process.send_signal(signal.SIGTERM)  # delivered when it runs again
    process.send_signal(signal.SIGCONT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    assert "interrupted; resume with: python -m bench run --resume t" in err.decode()
    assert not list((results / "runs" / "t").rglob("*.tmp"))


def test_orphan_temporary_files_of_a_killed_writer_are_removed_on_resume(results_root):
    store = RunStore.create(tiny_config().to_dict(), results_root)
    orphan = store.directory / "methods" / "SinMo" / ".R.csv.abc123.tmp"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("half")
    with store.locked():
        assert not orphan.exists()


# ------------------------------------------------- row 3: a damaged checkpoint falls back to the one before

def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damaged", ["checkpoint.pt", "fit.pt"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(damaged, results_root, monkeypatch, capsys):
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, patience=2, checkpoint_every_steps=2)
    config = tiny_config(methods=["SinMo"], train=train)
    (expected,) = run(config, RunStore.create(config.to_dict(), results_root / "reference"), progress=False)

    store = RunStore.create(config.to_dict(), results_root / "damaged")
    with monkeypatch.context() as patch:
        _interrupt_after_writes(patch, 21, [])  # inside the third task: two steps finished
        with pytest.raises(KeyboardInterrupt):
            run(config, store, progress=False)
    path = store.method_dir("SinMo") / damaged
    assert path.with_name(path.stem + ".prev.pt").exists()
    _truncate(path)
    capsys.readouterr()
    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "damaged"), progress=False)
    assert f"warning: {path} is unreadable" in capsys.readouterr().err
    np.testing.assert_array_equal(resumed.matrix(), expected.matrix())


def test_only_damaged_checkpoints_are_one_error_naming_the_file(results_root):
    from bench.errors import BenchError

    store = RunStore.create(tiny_config().to_dict(), results_root)
    path = store.method_dir("SinMo") / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(BenchError, match=f"{path}: unreadable checkpoint"):
        store.load_checkpoint("SinMo", torch.device("cpu"))


# ------------------------------------------------- row 6: the disk fills inside torch.save

def test_a_write_error_inside_torch_save_is_one_error_naming_the_file(capsys, tmp_path, monkeypatch):
    from tests.test_bad_input import TINY, cli
    from tests.test_cli import assert_one_line_error

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing "
                           "file data/0: file write failed")

    monkeypatch.setattr(torch, "save", full_disk)
    code, _, err = cli(capsys, "run", "--methods", "SinMo", *TINY, "--run-id", "full", "--results", tmp_path)
    started, *rest = err.splitlines(keepends=True)
    assert_one_line_error(code, "".join(rest), "cannot write", str(tmp_path / "runs" / "full"),
                          "file write failed")
    assert not list(tmp_path.rglob("*.tmp"))


# ------------------------------------------------- rows 5 and 12: the parsed-data cache

from tests.test_bad_input import read_only  # noqa: E402,F401  (fixture)


def _entry(tmp_path, calls):
    from bench.datasets.cache import ArrayCache

    def build():
        calls.append(1)
        return {"sequences": np.arange(6).reshape(2, 3), "rows_1": np.arange(2)}, {"n_targets": [3]}

    return ArrayCache(tmp_path / "cache", "ttl-demo"), build


def _truncated_npz(cache):
    _truncate(cache.arrays_path)


def _foreign_json(cache):
    cache.meta_path.write_text('{"n_targets": [1, 2]}\n')


def _foreign_npz(cache):
    with open(cache.arrays_path, "wb") as handle:
        np.savez(handle, other=np.zeros(3))


@pytest.mark.parametrize("damage", [_truncated_npz, _foreign_json, _foreign_npz])
def test_a_damaged_cache_entry_is_named_and_rebuilt(damage, tmp_path, capsys):
    from bench.datasets.cache import load_or_build

    calls: list = []
    cache, build = _entry(tmp_path, calls)
    load_or_build(cache, build, "ttl")
    damage(cache)
    capsys.readouterr()
    arrays, meta, state = load_or_build(cache, build, "ttl")
    err = capsys.readouterr().err
    assert state == "miss" and len(calls) == 2 and meta == {"n_targets": [3]}
    assert f"warning: damaged cache entry {cache.arrays_path}" in err and "Traceback" not in err
    assert load_or_build(cache, build, "ttl")[2] == "hit", "the rebuilt entry is stored again"


def test_a_read_only_cache_folder_is_said_once_and_never_called_cached(tmp_path, capsys, read_only):
    from bench.datasets.cache import load_or_build

    calls: list = []
    cache, build = _entry(tmp_path, calls)
    cache.directory.mkdir(parents=True)
    read_only(cache.directory)
    for _ in range(2):
        assert load_or_build(cache, build, "ttl")[2] == "miss"
    err = capsys.readouterr().err
    assert err.count(f"cache folder {cache.directory} takes no writes") == 1
    assert "cached the parsed arrays" not in err


# ------------------------------------------------- row 7: only finished runs are published

def test_publish_refuses_a_run_with_an_unfinished_method_or_a_held_lock(results_root):
    from bench.errors import BenchError
    from bench.results import leaderboard
    from bench.results.store import MethodRecord

    store = RunStore.create(tiny_config(methods=["SinMo", "FineAll", "FineSmax"]).to_dict(), results_root, "busy")

    def finish(method):
        record = MethodRecord(method, ["T1"], {"T1": "mrr@5"}, complete=True,
                              steps=[{"row": 0, "tasks": ["T1"], "scores": {"T1": {"mrr@5": 0.5}}}])
        store.save_record(record)

    finish("SinMo")
    finish("FineAll")
    with pytest.raises(BenchError, match="run 'busy' is not finished: no complete result for FineSmax"):
        leaderboard.publish(results_root, "busy")
    finish("FineSmax")
    holder = RunStore.open("busy", results_root).lock()  # a process still working in it
    try:
        with pytest.raises(BenchError, match="run 'busy' is in use by another process"):
            leaderboard.publish(results_root, "busy")
    finally:
        holder.unlock()
    published = leaderboard.publish(results_root, "busy")
    assert sorted(p.name for p in (published / "methods").iterdir()) == ["FineAll", "FineSmax", "SinMo"]
    assert not (results_root / leaderboard.PUBLISHED / "busy" / ".lock").exists()


# ------------------------------------------------- rows 9, 10, 11: checked before any work

@pytest.mark.parametrize("device, available, fragment", [
    ("mps", {}, "device 'mps' requested but MPS is not available"),
    ("cuda:7", {"cuda": 1}, "device 'cuda:7': this machine has 1 CUDA device(s), cuda:0"),
    ("cuda:2", {"cuda": 2}, "this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
])
def test_an_absent_device_is_one_error_before_the_run_exists(device, available, fragment, capsys, tmp_path,
                                                             monkeypatch):
    from tests.test_bad_input import cli
    from tests.test_cli import assert_one_line_error

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if "cuda" in available:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: available["cuda"])
    code, _, err = cli(capsys, "run", "--methods", "SinMo", "--device", device, "--epochs", "1",
                       "--results", tmp_path / "results")
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "results").exists()


def test_a_class_task_line_with_several_labels_is_one_error_naming_file_and_line(capsys, tmp_path):
    from bench.datasets.ttl import TTL_FILES
    from tests.test_bad_input import TINY_MODEL, cli
    from tests.test_cli import assert_one_line_error
    from tests.test_datasets import ttl_release

    root = ttl_release(tmp_path / "data")
    path = root / "ColdRec" / TTL_FILES[3]  # age: a class task
    lines = path.read_text().splitlines()
    lines[4] = lines[4].split(",,")[0] + ",,0,,3,,4"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = cli(capsys, "run", *TINY_MODEL, "--dataset", "ttl", "--data-dir", root,
                       "--results", tmp_path / "results")
    assert_one_line_error(code, err, f"{path}:5: 3 labels after ',,'; a line of a class task holds exactly one")


@pytest.mark.parametrize("flag", ["--order", "--orders"])
def test_an_order_with_fewer_tasks_is_an_error_for_order_and_orders_alike(flag, capsys, tmp_path):
    from tests.test_bad_input import TINY, cli
    from tests.test_cli import assert_one_line_error

    code, _, err = cli(capsys, "run", "--methods", "SinMo", *TINY, flag, "1,2", "--results", tmp_path)
    assert_one_line_error(code, err, "order 1,2: expected all 6 tasks (missing 3,4,5,6)")
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------- row 13: --resume restores the stored settings

@pytest.mark.parametrize("change, fragment", [
    (lambda config: config.pop("train"), "missing: train"),
    (lambda config: config["train"].update(epochs=5), "edited: train"),
    (lambda config: (config.pop("backbone"), config["dataset_options"].update(n_users=90)),
     "missing: backbone; edited: dataset_options"),
])
def test_resume_refuses_a_config_json_missing_or_edited_since_the_run_started(change, fragment, capsys, tmp_path):
    import json

    from tests.test_bad_input import TINY, cli
    from tests.test_cli import assert_one_line_error

    results = tmp_path / "results"
    assert cli(capsys, "run", "--methods", "SinMo", *TINY, "--run-id", "r", "--results", results)[0] == 0
    path = results / "runs" / "r" / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))
    code, _, err = cli(capsys, "run", "--resume", "r", "--results", results)
    assert_one_line_error(code, err, f"{path}: not as the run stored it ({fragment})")


def test_resume_with_override_keeps_config_json_resumable(capsys, tmp_path):
    from tests.test_bad_input import TINY, cli

    results = tmp_path / "results"
    assert cli(capsys, "run", "--methods", "SinMo", *TINY, "--run-id", "r", "--results", results)[0] == 0
    code, _, err = cli(capsys, "run", "--resume", "r", "--override", "--epochs", "2", "--results", results)
    assert code == 0, err
    code, _, err = cli(capsys, "run", "--resume", "r", "--results", results)
    assert code == 0, err
    assert read_json(results / "runs" / "r" / "config.json")["train"]["epochs"] == 2


# ------------------------------------------------- row 8: a memory estimate up front

def test_a_run_too_large_for_the_memory_is_one_error_before_any_work(capsys, tmp_path):
    from tests.test_cli import assert_one_line_error
    from tests.test_bad_input import cli

    code, _, err = cli(capsys, "run", "--set", "dataset_options.n_users=100000000", "--device", "cpu",
                       "--results", tmp_path)
    assert_one_line_error(code, err, "this run needs about", "GiB of memory (data ~", "--no-memory-check")
    assert not (tmp_path / "runs").exists()


def test_no_memory_check_starts_anyway(capsys, tmp_path, monkeypatch):
    from bench.experiments import memory
    from tests.test_bad_input import TINY, cli
    from tests.test_cli import assert_one_line_error

    monkeypatch.setattr(memory, "available_ram", lambda: 1024)
    code, _, err = cli(capsys, "run", "--methods", "SinMo", *TINY, "--results", tmp_path)
    assert_one_line_error(code, err, "but 0.0 GiB is available")
    code, _, err = cli(capsys, "run", "--methods", "SinMo", *TINY, "--no-memory-check", "--results", tmp_path)
    assert code == 0, err


def test_the_synthetic_estimate_covers_what_the_generator_allocates():
    import tracemalloc

    from bench.datasets.synthetic import Synthetic, SyntheticOptions, generate

    tracemalloc.start()
    generate(SyntheticOptions(n_users=20000, seq_len=30))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    estimate, n_items = Synthetic.estimated_bytes({"n_users": 20000, "seq_len": 30}, None)
    assert peak < estimate < 3 * peak and n_items == SyntheticOptions().n_items


def test_the_new_train_settings_keep_published_runs_in_their_groups():
    """Runs published before in-task checkpoints existed average with new ones; a run that
    skipped non-finite steps does not."""
    from bench.results.leaderboard import setup_key

    old = tiny_config().to_dict()
    for key in ("checkpoint_every_minutes", "checkpoint_every_steps", "nonfinite"):
        old["train"].pop(key)
    new = tiny_config(train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2,
                                        checkpoint_every_steps=50)).to_dict()
    assert setup_key(old) == setup_key(new)
    skipping = tiny_config(train=TrainConfig(epochs=2, batch_size=64, lr=3e-3, patience=2, nonfinite="skip"))
    assert setup_key(skipping.to_dict()) != setup_key(new)


def test_a_config_files_order_may_still_select_a_subset():
    from bench.errors import BenchError
    from bench.experiments.runner import resolve_order

    assert resolve_order([1, 4, 5, 6], 6) == [1, 4, 5, 6]  # e.g. the class tasks only (test_datasets)
    with pytest.raises(BenchError, match="expected all 6 tasks"):
        resolve_order([1, 4, 5, 6], 6, complete=True)


def test_an_in_task_checkpoint_of_other_settings_is_not_continued(tmp_path):
    """Resumed with --override (another lr), a step starts again rather than continuing the
    optimiser state of the old settings."""
    old = checkpoints.scope("SinMo step 2", tiny_config().to_dict())
    new = checkpoints.scope("SinMo step 2", tiny_config(train=TrainConfig(lr=1e-4)).to_dict())
    assert old != new
    journal = checkpoints.Journal(tmp_path / "fit.pt", old)
    journal.position = {"call": 0}
    journal.write()
    assert checkpoints.Journal(tmp_path / "fit.pt", old).position == {"call": 0}
    assert checkpoints.Journal(tmp_path / "fit.pt", new).position is None
