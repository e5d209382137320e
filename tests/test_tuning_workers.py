"""`tune` on a shared storage: several workers, killed workers, temporary folders (CPU, seconds)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from bench.cli import main
from bench.experiments import tuning
from tests import stopping

TINY = [
    "--epochs", "1", "--quiet", "--startup-trials", "1",
    "--set", "dataset_options.n_users=40", "--set", "dataset_options.n_items=30",
    "--set", "dataset_options.target_items=[8]", "--set", "dataset_options.classes=[3]",
    "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]",
]


def tune_args(root: Path, storage: str, trials: int, heartbeat: int = 60) -> list[str]:
    return ["tune", "--method", "SinMoAll", "--study", "shared", "--storage", storage, "--trials", str(trials),
            "--heartbeat", str(heartbeat), *TINY, "--results", str(root)]


def start_worker(root: Path, storage: str, trials: int, heartbeat: int = 60,
                 stop_mid_trial: bool = False) -> subprocess.Popen:
    """A `bench tune` worker process; with `stop_mid_trial` it stops itself (tests/stopping.py)
    each time a trial has made its run folder, so a test kills it mid-trial for certain."""
    env = stopping.environment(TMPDIR=str(root / "tmp"))
    argv = tune_args(root, storage, trials, heartbeat)
    command = (stopping.command("bench.results.store:RunStore.create", "bench", *argv) if stop_mid_trial
               else [sys.executable, "-m", "bench", *argv])
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_mid_trial(worker: subprocess.Popen, root: Path) -> None:
    """Block until a `stop_mid_trial` worker has stopped itself in its first trial."""
    stopping.wait_stopped(worker)
    assert list((root / "tmp").glob(f"bench-trial-{worker.pid}-*"))  # its trial folder: mid-trial


def states(storage: str) -> Counter:
    return Counter(t.state.name for t in tuning.open_study(storage, "shared").trials)


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # trial folders of in-process runs
    return tmp_path


@pytest.mark.slow
def test_two_workers_together_finish_exactly_the_requested_trials(root):
    storage = f"sqlite:///{root / 'shared.db'}"
    workers = [start_worker(root, storage, trials=4) for _ in range(2)]
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        assert "study shared" in out
    counts = states(storage)
    assert counts["COMPLETE"] + counts["PRUNED"] == 4
    assert counts["RUNNING"] == 0 and counts["WAITING"] == 0
    assert not list((root / "tmp").glob("bench-trial-*"))


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_retried(root):
    storage = f"sqlite:///{root / 'shared.db'}"
    worker = start_worker(root, storage, trials=3, heartbeat=1, stop_mid_trial=True)
    wait_mid_trial(worker, root)
    stopping.kill(worker)
    killed = tuning.open_study(storage, "shared").trials
    assert [t.state.name for t in killed][-1] == "RUNNING"  # what kill -9 leaves behind

    assert main(tune_args(root, storage, trials=3, heartbeat=1)) == 0
    study = tuning.open_study(storage, "shared")
    counts = Counter(t.state.name for t in study.trials)
    assert counts["RUNNING"] == 0 and counts["COMPLETE"] + counts["PRUNED"] == 3
    lost = study.trials[len(killed) - 1]
    assert lost.state.name == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retries) == 1 and retries[0].state.name in ("COMPLETE", "PRUNED")
    assert retries[0].params == lost.params  # retried with the same parameters
    assert not list((root / "tmp").glob("bench-trial-*"))  # the killed worker's folder is gone


def test_silent_worker_on_another_machine_is_failed_by_the_heartbeat(root):
    """A RUNNING trial whose heartbeat stops (a worker elsewhere died) is failed and retried."""
    storage = f"sqlite:///{root / 'shared.db'}"
    study = tuning.open_study(storage, "shared", create=True, heartbeat=1)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr("worker", "elsewhere:1")
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # past the grace period of 2 heartbeats
    assert main(tune_args(root, storage, trials=1, heartbeat=1)) == 0
    study = tuning.open_study(storage, "shared")
    assert [t.state.name for t in study.trials][0] == "FAIL"
    assert Counter(t.state.name for t in study.trials)["RUNNING"] == 0
    assert any(t.system_attrs.get("failed_trial") == 0 for t in study.trials)


def test_journal_storage_fails_trials_of_dead_local_workers(root):
    """The journal has no heartbeat: a RUNNING trial of a dead process on this host is failed and retried."""
    storage = str(root / "shared.log")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = tuning.open_study(storage, "shared", create=True)
    trial = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
    trial.set_user_attr("worker", tuning.worker_id(trial.number, dead.pid))
    assert main(tune_args(root, storage, trials=2)) == 0
    study = tuning.open_study(f"journal:{storage}", "shared")
    counts = Counter(t.state.name for t in study.trials)
    assert study.trials[0].state.name == "FAIL" and counts["RUNNING"] == 0
    assert counts["COMPLETE"] + counts["PRUNED"] == 2
    assert any(t.system_attrs.get("failed_trial") == 0 for t in study.trials)


def test_published_study_is_never_written(root, capsys):
    published = root / "tuning" / "synthetic-SinMoAll.db"
    assert main(tune_args(root, str(published), trials=1)) == 2
    assert "published reference study" in capsys.readouterr().err
    assert not published.exists()
    # a fresh clone holds the published study; the README's plain `tune` runs new trials beside it
    study = tuning.open_study(published, "synthetic-SinMoAll", create=True)
    study.enqueue_trial({"train.lr": 1e-3})
    before = published.read_bytes()
    argv = [arg for arg in tune_args(root, "x", trials=1) if arg not in ("--study", "shared", "--storage", "x")]
    assert main(argv) == 0
    assert published.read_bytes() == before
    assert len(tuning.open_study(root / "studies" / "synthetic-SinMoAll.db", "synthetic-SinMoAll").trials) == 1


def test_storage_spellings():
    assert tuning.storage_url("a/b.db", Path("r"), "n") == "sqlite:///a/b.db"
    assert tuning.storage_url("a/b.log", Path("r"), "n") == "journal:a/b.log"
    assert tuning.storage_url(None, Path("r"), "n") == "sqlite:///r/studies/n.db"
    assert tuning.storage_url("postgresql://u:pw@host/db", Path("r"), "n") == "postgresql://u:pw@host/db"
    assert tuning.redact("postgresql://u:pw@host/db") == "postgresql://u:***@host/db"
    with pytest.raises(Exception, match="expected a database URL"):
        tuning.storage_url("study.txt", Path("r"), "n")


def test_use_tuned_reads_your_studies_or_the_published_one_untouched(tmp_path):
    from bench.cli import build_parser
    from bench.commands.run import config_from_args
    from bench.errors import BenchError

    results = Path(__file__).resolve().parents[1] / "results"
    published = results / "tuning" / "synthetic-TERACON.db"
    before = published.read_bytes()
    args = build_parser().parse_args(["run", "--methods", "TERACON", "--use-tuned", "published",
                                      "--results", str(results)])
    data = config_from_args(args)
    assert set(data["method_train"]["TERACON"]) >= {"lr", "batch_size"}
    assert published.read_bytes() == before
    args = build_parser().parse_args(["run", "--methods", "TERACON", "--use-tuned", "--results", str(tmp_path)])
    with pytest.raises(BenchError, match="use-tuned published"):
        config_from_args(args)  # your own studies: none yet


def test_a_trial_started_at_the_same_instant_as_the_last_one_is_dropped(root):
    """Two workers may both see one free slot; the trial with the higher number gives way."""
    study = tuning.open_study(root / "s.db", "shared", create=True)
    study.ask()  # the other worker's trial, still running
    late = study.ask()
    settings = tuning.TuneSettings(method="SinMoAll", base={}, trials=1, root=root)
    with pytest.raises(tuning.SurplusTrial):
        tuning.make_objective(settings)(late)
    assert late.user_attrs["surplus"] and not list((root / "tmp").glob("bench-trial-*"))
