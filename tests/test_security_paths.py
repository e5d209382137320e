"""Confinement and concurrency (issue 22, rows 1 and 6): a name a user gives is one safe path
component; publishing writes and deletes only inside published/, by copy then rename; run
creation and publishing are race-free; a finished run keeps no in-task T1 checkpoint and its
epochs.json is complete after a kill and resume."""

from __future__ import annotations

import os
import threading

import pytest

from bench.config import TrainConfig
from bench.errors import BenchError
from bench.experiments import sweeps
from bench.experiments.runner import run
from bench.io import open_lock
from bench.results import leaderboard
from bench.results.names import safe_name
from bench.results.store import MethodRecord, RunStore
from tests.conftest import tiny_config
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_faults import _fit_logs, _interrupt_after_writes
from tests.test_plugins import isolated_registries  # noqa: F401  (a fixture)

TINY = ["--methods", "SinMo", "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20",
        "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]", "--epochs", "1",
        "--device", "cpu", "--quiet"]
BAD_NAMES = ["..", ".", "../../outside", "a/b", ".hidden", "-x", "a b", "x" * 200, "runs/../.."]


def _tree(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _finished_run(root, run_id: str, methods=("SinMo",)) -> RunStore:
    store = RunStore.create(tiny_config(methods=list(methods)).to_dict(), root, run_id)
    for method in methods:
        store.save_record(MethodRecord(method, ["T1"], {"T1": "mrr@5"}, complete=True,
                                       steps=[{"row": 0, "tasks": ["T1"], "scores": {"T1": {"mrr@5": 0.5}}}]))
    return store


# ------------------------------------------------- every name a user gives is one safe component


@pytest.mark.parametrize("name", BAD_NAMES + ["/absolute"])
def test_a_run_id_that_is_not_one_safe_name_is_one_error_and_writes_nothing(name, capsys, tmp_path):
    results, outside = tmp_path / "deep" / "results", tmp_path / "outside"
    name = str(tmp_path / "absolute") if name == "/absolute" else name
    with pytest.raises(BenchError, match="run id"):
        RunStore.create(tiny_config().to_dict(), results, name)
    for flags in ([], ["--seeds", "0,1"]):  # a single run and a sweep
        code, _, err = run_cli(capsys, "run", *TINY, *flags, f"--run-id={name}", "--results", str(results))
        assert_one_line_error(code, err, "--run-id", "not a path")
    assert _tree(tmp_path) == [], "nothing written, inside or outside --results"
    assert not outside.exists()


def test_names_made_from_a_name_are_checked_too():
    assert safe_name("g-TERACON+floor-s0", "run id") == "g-TERACON+floor-s0"
    with pytest.raises(BenchError, match="run id of sweep"):  # a sweep's id plus its suffix is too long
        sweeps.plan(tiny_config(), [0], [[1, 2, 3]], "s" * 127)
    assert not sweeps.is_sweep("../..", "results")


def test_a_plugin_method_whose_name_is_a_path_is_refused_before_the_run(capsys, tmp_path, monkeypatch,
                                                                       isolated_registries):
    from bench.registry import METHODS

    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    METHODS.register("../../Evil")(type("Evil", (), {}))
    code, _, err = run_cli(capsys, "run", *TINY[2:], "--methods", "../../Evil", "--run-id", "r",
                           "--results", str(tmp_path / "deep" / "results"))
    assert_one_line_error(code, err, "method '../../Evil'")
    assert not (tmp_path / "deep").exists() and not (tmp_path / "Evil").exists()


@pytest.mark.parametrize("flags", [["reproduce", "conure-table1", "--run-id", ".."],
                                   ["tune", "--method", "SinMo", "--trials", "1", "--study", "../x", *TINY[2:-3], "--quiet"]])
def test_other_commands_check_their_names_first(flags, capsys, tmp_path):
    code, _, err = run_cli(capsys, *flags, "--results", str(tmp_path / "deep" / "results"))
    assert_one_line_error(code, err, "not a path")
    assert _tree(tmp_path) == []


# ------------------------------------------------- writes and deletes stay inside published/


def test_publish_dot_dot_force_deletes_nothing(results_root, capsys):
    import shutil

    run_a = _finished_run(results_root, "a")
    _finished_run(results_root, "b")
    leaderboard.publish(results_root, "b")
    # a run in the results root itself, as `run --run-id ..` of the old code wrote it
    shutil.copyfile(run_a.directory / "config.json", results_root / "config.json")
    shutil.copytree(run_a.directory / "methods", results_root / "methods")
    before = _tree(results_root)
    code, _, err = run_cli(capsys, "leaderboard", "--publish", "..", "--force", "--results", str(results_root))
    assert_one_line_error(code, err, "no run '..'")
    assert _tree(results_root) == before


def test_publish_dot_from_inside_a_run_publishes_that_run_and_nothing_else(results_root, monkeypatch):
    run_a = _finished_run(results_root, "a")
    _finished_run(results_root, "b")
    other = leaderboard.publish(results_root, "b")
    monkeypatch.chdir(run_a.directory)
    target = leaderboard.publish(results_root.resolve(), ".", force=True)
    published = results_root / leaderboard.PUBLISHED
    assert target.name == "a" and (published / "a" / "methods" / "SinMo" / "result.json").exists()
    assert (other / "config.json").exists(), "another run's published copy is kept"
    assert not (published / "config.json").exists(), "nothing written into published/ itself"


def test_publish_force_is_a_copy_then_rename_that_keeps_the_old_copy_on_failure(results_root, monkeypatch):
    _finished_run(results_root, "a")
    target = leaderboard.publish(results_root, "a")
    (target / "kept-until-replaced").write_text("old")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(leaderboard.shutil, "copyfile", broken)
        with pytest.raises(BenchError, match="cannot write .*published/a: No space left on device"):
            leaderboard.publish(results_root, "a", force=True)
    assert (target / "kept-until-replaced").read_text() == "old", "a failed copy leaves the old one whole"
    assert leaderboard.publish(results_root, "a", force=True) == target
    assert not (target / "kept-until-replaced").exists() and (target / "methods" / "SinMo" / "result.json").exists()
    published = results_root / leaderboard.PUBLISHED
    assert sorted(p.name for p in published.iterdir() if not p.name == ".locks") == ["a"], \
        "no temporary folder left behind"
    assert [group.run_ids["SinMo"] for group in leaderboard.gather(published)] == [["a"]]


# ------------------------------------------------- races: run creation and publishing


def test_two_creators_of_one_run_id_one_wins_and_the_loser_never_deletes_its_folder(results_root, monkeypatch):
    """The other creator arrives at the worst moment: after this one decided the folder was
    new, before it took the run's lock (where the old code removed the winner's folder)."""
    config, errors, original = tiny_config().to_dict(), [], RunStore.lock

    def lock(self):
        if not errors and not hasattr(lock, "entered"):
            lock.entered = True
            try:
                RunStore.create(config, results_root, "same")
                errors.append(None)
            except BenchError as error:
                errors.append(str(error))
        return original(self)

    monkeypatch.setattr(RunStore, "lock", lock)
    try:
        RunStore.create(config, results_root, "same")
        errors.append(None)
    except BenchError as error:
        errors.append(str(error))
    assert sorted(errors, key=str)[0] is None and errors.count(None) == 1, errors
    assert "'same'" in next(e for e in errors if e) and "\n" not in next(e for e in errors if e)
    folder = results_root / "runs" / "same"
    assert (folder / "config.json").exists() and (folder / "environment.json").exists()


@pytest.mark.slow
def test_threads_creating_one_run_id_at_once_leave_exactly_one_run(results_root):
    config = tiny_config().to_dict()
    for attempt in range(5):
        barrier, outcomes = threading.Barrier(4), []

        def create():
            barrier.wait(timeout=30)
            try:
                RunStore.create(config, results_root, f"race{attempt}")
                outcomes.append("won")
            except BenchError as error:
                outcomes.append(str(error))

        threads = [threading.Thread(target=create) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count("won") == 1, outcomes
        assert (RunStore.open(f"race{attempt}", results_root).config == config)


def test_overlapping_publishes_wait_for_each_other_instead_of_failing(results_root, monkeypatch):
    """A second publisher of the same run starts while the first holds the run's lock: it
    waits for the first (the old code said 'in use by another process'), then replaces it."""
    from bench.results import store as store_module

    _finished_run(results_root, "a")
    leaderboard.publish(results_root, "a")
    original, outcomes, second = store_module.probe_writable, [], []

    def publish_again():
        try:
            outcomes.append(leaderboard.publish(results_root, "a", force=True))
        except BaseException as error:  # noqa: BLE001 - the test reports it
            outcomes.append(error)

    def probe(directory):
        original(directory)
        if not second:  # inside the first publisher's hold of the run's lock
            second.append(threading.Thread(target=publish_again))
            second[0].start()
            second[0].join(timeout=2)  # the old code failed at once; the new one waits for us

    monkeypatch.setattr(store_module, "probe_writable", probe)
    first = leaderboard.publish(results_root, "a", force=True)
    second[0].join()
    assert outcomes == [first], outcomes
    assert (first / "methods" / "SinMo" / "result.json").exists()
    assert sorted(p.name for p in first.parent.iterdir()) == [".locks", "a"]


def test_a_publisher_held_up_too_long_is_told_who_holds_the_lock(results_root, monkeypatch):
    _finished_run(results_root, "a")
    lock = results_root / leaderboard.PUBLISHED / ".locks" / "a.lock"
    handle = open_lock(lock)
    try:
        os.write(handle, b"pid 4242\n")
        monkeypatch.setattr(leaderboard, "PUBLISH_WAIT_SECONDS", 0, raising=False)
        with pytest.raises(BenchError, match=r"being published by another process \(pid 4242; lock "):
            leaderboard.publish(results_root, "a")
    finally:
        os.close(handle)
    assert not (results_root / leaderboard.PUBLISHED / "a").exists()


# ------------------------------------------------- a killed and resumed run leaves nothing behind


def test_no_in_task_t1_checkpoint_outlives_a_run_that_took_t1_from_the_cache(results_root, monkeypatch):
    train = TrainConfig(epochs=2, batch_size=32, lr=3e-3, patience=2, checkpoint_every_steps=2)
    config = tiny_config(methods=["SinMoAll"], train=train)
    store = RunStore.create(config.to_dict(), results_root, "killed")
    seen: list = []
    with monkeypatch.context() as patch:
        _interrupt_after_writes(patch, 1, seen)  # killed while training the shared T1 model
        with pytest.raises(KeyboardInterrupt):
            run(config, store, progress=False)
    assert seen[0]["scope"].startswith("t1-") and list(store.cache_dir.glob("t1-*.fit.pt"))
    run(config, RunStore.create(config.to_dict(), results_root, "other"), progress=False)  # T1 now cached
    (record,) = run(config, RunStore.open("killed", results_root), progress=False)
    assert record.complete
    assert read_environment_hit(store), "the resumed run loaded T1 from the cache"
    assert not list(store.directory.rglob("*.fit.pt")) and not list(store.directory.rglob("*.fit.prev.pt"))


def read_environment_hit(store: RunStore) -> bool:
    return any(entry.get("hit") for entry in store.environment.get("t1_cache", {}).values())


def test_epochs_json_is_complete_after_a_kill_right_after_the_last_checkpoint(results_root, monkeypatch):
    config = tiny_config(methods=["SinMo"])
    reference = RunStore.create(config.to_dict(), results_root, "reference")
    (expected,) = run(config, reference, progress=False)
    store, saved, original = RunStore.create(config.to_dict(), results_root, "killed"), [], RunStore.save_checkpoint

    def save_checkpoint(self, name, payload):
        original(self, name, payload)
        saved.append(name)
        if len(saved) == len(expected.steps):  # the last step's checkpoint is on disk: kill -9 now
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "save_checkpoint", save_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            run(config, store, progress=False)
    run(config, RunStore.open("killed", results_root), progress=False)
    assert len(_fit_logs(store, "SinMo")) == len(_fit_logs(reference, "SinMo"))
    assert _fit_logs(store, "SinMo") == _fit_logs(reference, "SinMo")
