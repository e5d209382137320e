"""No stored file the harness reads can run code (issue 22, rows 2 and 4).

Every file written with torch.save is read with weights_only=True: a pickle payload planted
in a run's checkpoint, an in-task checkpoint, a run's cached T1 model or a T1-cache entry is
"damaged" (one warning, then rebuilt; or, for a step checkpoint, refused with one error line)
and never executed. Step checkpoints hold the method's state_dict and plain data, and every
method resumes from them to the very R matrix of an uninterrupted run. The parsed-data cache
is keyed by the whole content of its source files.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

from bench.config import TrainConfig
from bench.errors import BenchError
from bench.experiments.runner import run
from bench.io import file_hash, read_json
from bench.registry import METHODS
from bench.results.store import RunStore
from tests.conftest import tiny_config

MARKER = "planted-payload-ran"


class Payload:
    """Unpickling it (torch.load with weights_only=False, pickle.load) creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def plant(path, marker) -> None:
    """A torch.save'd dict shaped like what the harness stores, with the payload inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 2, "model": {"payload": Payload(marker)}, "scope": Payload(marker),
                "done": [], "position": None, "log": {}}, path)


def tiny(methods, **train):
    settings = dict(epochs=1, batch_size=64, lr=3e-3, patience=1)
    settings.update(train)
    return tiny_config(methods=methods, train=TrainConfig(**settings))


class Stop(Exception):
    """Raised by the step callback: the process dies after a step's checkpoint is written."""


def stop_after(steps: int):
    def on_step(name, record):
        if len(record.steps) == steps:
            raise Stop

    return on_step


def _epoch_logs(store: RunStore, method: str) -> list[dict]:
    """epochs.json without wall-clock seconds (the one thing a resume may change)."""
    logs = read_json(store.method_dir(method) / "epochs.json")
    return [{k: ([{f: v for f, v in e.items() if not f.endswith("seconds")} for e in value] if k == "epochs"
                 else value) for k, value in log.items() if k != "seconds"} for log in logs]


# ------------------------------------------------- every method resumes from tensors and plain data

RESUMED = [*METHODS.names(), "Conure+postln+bias+tasknorms", "Conure+harnessinit", "Conure+embprune",
           "Conure+harnessinit+embprune", "HAT+binary+lngate", "TERACON+sharedt1"]


@pytest.mark.parametrize("name", RESUMED)
def test_every_method_resumes_from_a_weights_only_checkpoint_to_the_same_matrix(name, results_root):
    config = tiny([name])
    (expected,) = run(config, RunStore.create(config.to_dict(), results_root / "reference"), progress=False)

    store = RunStore.create(config.to_dict(), results_root / "resumed")
    steps = 1 if METHODS.base_name(name) == "MTL" else 2  # MTL has two steps: T1, then the rest
    with pytest.raises(Stop):
        run(config, store, progress=False, on_step=stop_after(steps))
    path = store.method_dir(name) / "checkpoint.pt"
    saved = torch.load(path, weights_only=True)  # tensors and plain data: this load cannot run code
    assert set(saved) == {"format", "state", "extra", "record", "rng"}
    assert saved["extra"]["learned"] == expected.tasks[:len(saved["extra"]["learned"])]

    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "resumed"), progress=False)
    np.testing.assert_array_equal(resumed.matrix(), expected.matrix())
    assert resumed.variants == expected.variants
    assert [s["parameters"] for s in resumed.steps] == [s["parameters"] for s in expected.steps]
    reference = RunStore.open(expected_run(results_root / "reference"), results_root / "reference")
    assert _epoch_logs(store, name) == _epoch_logs(reference, name)


def expected_run(root) -> str:
    (run_dir,) = (root / "runs").iterdir()
    return run_dir.name


# ------------------------------------------------- a payload planted in each kind of stored file

def interrupted_run(results_root, method="SinMoAll", steps=1, **train):
    """A run of `method` stopped right after its `steps`-th step checkpoint (the process died)."""
    config = tiny([method], **train)
    store = RunStore.create(config.to_dict(), results_root)
    with pytest.raises(Stop):
        run(config, store, progress=False, on_step=stop_after(steps))
    return config, store


def reference_matrix(config, root) -> np.ndarray:
    (record,) = run(config, RunStore.create(config.to_dict(), root), progress=False)
    return record.matrix()


def assert_one_error_after_the_start_line(code, err, run_id, *fragments):
    """A checkpoint is read once the run has started: its `run <id> -> ...` line, then one error."""
    from tests.test_cli import assert_one_line_error

    *announced, last = err.strip().splitlines()
    assert_one_line_error(code, last, *fragments)
    assert all(line.startswith(f"run {run_id} -> ") for line in announced), err


def test_a_payload_in_both_step_checkpoints_is_refused_with_one_error_line(results_root, tmp_path, capsys):
    from tests.test_bad_input import cli

    _, store = interrupted_run(results_root)
    marker = tmp_path / MARKER
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        plant(store.method_dir("SinMoAll") / name, marker)
    capsys.readouterr()
    code, _, err = cli(capsys, "run", "--resume", store.run_id, "--results", results_root)
    assert not marker.exists(), "the planted payload ran"
    assert_one_error_after_the_start_line(code, err, store.run_id,
                                          f"{store.method_dir('SinMoAll') / 'checkpoint.pt'}: unreadable checkpoint",
                                          "holds Python objects", "--run-id")


def test_a_payload_in_the_latest_step_checkpoint_falls_back_to_the_previous_one(results_root, tmp_path, capsys):
    config, store = interrupted_run(results_root / "run", steps=2)
    marker = tmp_path / MARKER
    latest = store.method_dir("SinMoAll") / "checkpoint.pt"
    plant(latest, marker)
    capsys.readouterr()
    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "run"), progress=False)
    err = capsys.readouterr().err
    assert not marker.exists(), "the planted payload ran"
    assert f"warning: {latest} is unreadable (it holds Python objects" in err
    np.testing.assert_array_equal(resumed.matrix(), reference_matrix(config, results_root / "reference"))


def test_a_checkpoint_in_the_old_pickled_format_is_refused_saying_how_to_start_again(results_root, capsys):
    """Before issue 22 a step checkpoint pickled the whole method object: never loaded now."""
    from bench.engine.context import MethodContext
    from tests.test_bad_input import cli

    config, store = interrupted_run(results_root)
    saved = torch.load(store.method_dir("SinMoAll") / "checkpoint.pt", weights_only=True)
    context = MethodContext(n_items=40, backbone=config.backbone, train=config.train, device=torch.device("cpu"))
    method = METHODS.get("SinMoAll").build(context)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        torch.save({"method": method, "record": saved["record"], "rng": saved["rng"]},
                   store.method_dir("SinMoAll") / name)
    capsys.readouterr()
    code, _, err = cli(capsys, "run", "--resume", store.run_id, "--results", results_root)
    assert_one_error_after_the_start_line(code, err, store.run_id, "unreadable checkpoint", "holds Python objects",
                                          f"delete {store.method_dir('SinMoAll') / 'checkpoint.pt'}",
                                          "without --resume")


@pytest.mark.parametrize("case", ["no restore", "no format"])
def test_a_checkpoint_that_does_not_fit_the_rebuilt_method_is_one_error_saying_how_to_start_again(
        case, results_root, monkeypatch):
    """A plugin whose structure grows per task but has no `restore`, or a plain-data file of
    another shape: refused, never loaded half-way."""
    config, store = interrupted_run(results_root)
    path = store.method_dir("SinMoAll") / "checkpoint.pt"
    if case == "no restore":
        monkeypatch.setattr(METHODS.get("SinMoAll"), "restore", lambda self, learnt, context: None)
        fragment = "the checkpoint does not fit SinMoAll as built now"
    else:
        saved = torch.load(path, weights_only=True)
        torch.save({"record": saved["record"], "rng": saved["rng"]}, path)
        fragment = "a checkpoint of another format"
    with pytest.raises(BenchError) as error:
        run(config, RunStore.open(store.run_id, results_root), progress=False)
    assert str(error.value).startswith(f"{path}: {fragment}") and "--run-id" in str(error.value)


def test_a_payload_in_the_in_task_checkpoints_restarts_the_step_and_never_runs(results_root, tmp_path, capsys,
                                                                                monkeypatch):
    config, store = interrupted_run(results_root / "run")
    marker = tmp_path / MARKER
    fit = store.fit_checkpoint_path("SinMoAll")
    for path in (fit, fit.with_name("fit.prev.pt")):
        plant(path, marker)
    capsys.readouterr()
    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "run"), progress=False)
    err = capsys.readouterr().err
    assert not marker.exists(), "the planted payload ran"
    assert f"warning: {fit} is unreadable (it holds Python objects" in err and "this step starts again" in err
    np.testing.assert_array_equal(resumed.matrix(), reference_matrix(config, results_root / "reference"))


def test_a_payload_in_any_journal_file_is_ignored_with_a_warning(tmp_path, capsys):
    """The T1 models' own in-task checkpoints (cache/<kind>-<key>.fit.pt) are Journals too."""
    from bench.engine.checkpoints import Journal

    marker, path = tmp_path / MARKER, tmp_path / "cache" / "t1-0123456789abcdef.fit.pt"
    plant(path, marker)
    journal = Journal(path, "t1-0123456789abcdef (settings)")
    assert not marker.exists(), "the planted payload ran"
    assert journal.done == [] and journal.position is None
    assert f"warning: {path} is unreadable (it holds Python objects" in capsys.readouterr().err


def test_a_payload_in_a_runs_cached_t1_model_is_trained_again(results_root, tmp_path, monkeypatch, capfd):
    """With the T1 cache off, a run keeps its T1 model in cache/pretrained-*.pt for --resume."""
    monkeypatch.setenv("BENCH_T1_CACHE", "off")
    config, store = interrupted_run(results_root / "run", method="FineAll")  # each task copies the T1 model
    (pretrained,) = store.cache_dir.glob("pretrained*.pt")
    marker = tmp_path / MARKER
    plant(pretrained, marker)
    capfd.readouterr()
    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "run"), progress=False)
    err = capfd.readouterr().err
    assert not marker.exists(), "the planted payload ran"
    assert f"warning: damaged entry {pretrained} (it holds Python objects" in err
    assert torch.load(pretrained, weights_only=True)["model"], "trained again and stored as tensors"
    np.testing.assert_array_equal(resumed.matrix(), reference_matrix(config, results_root / "reference"))


def test_a_payload_in_a_shared_t1_cache_entry_with_a_matching_checksum_is_trained_again(
        results_root, tmp_path, t1_cache_root, capfd):
    """Who can write an entry's .pt can write its .json: the checksum is no defence, the loader is."""
    config = tiny(["SinMoAll"])
    expected = reference_matrix(config, results_root / "first")
    (entry,) = t1_cache_root.glob("t1-*.pt")
    marker = tmp_path / MARKER
    plant(entry, marker)
    index = entry.with_suffix(".json")
    index.write_text(json.dumps({**read_json(index), "sha256": file_hash(entry)}))
    capfd.readouterr()
    again = reference_matrix(config, results_root / "second")
    err = capfd.readouterr().err
    assert not marker.exists(), "the planted payload ran"
    assert f"warning: damaged entry {entry} (it holds Python objects" in err and "training it again" in err
    np.testing.assert_array_equal(again, expected)
    assert torch.load(entry, weights_only=True)["model"], "the entry was trained again and stored as tensors"


def test_a_pickled_array_in_the_parsed_data_cache_is_damaged_and_rebuilt(tmp_path, capsys):
    """The parsed-data cache (datasets/cache.py) is .npz + .json, read with allow_pickle=False."""
    from tests.test_faults import _entry

    from bench.datasets.cache import load_or_build

    calls: list = []
    cache, build = _entry(tmp_path, calls)
    load_or_build(cache, build, "ttl")
    marker = tmp_path / MARKER
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    with open(cache.arrays_path, "wb") as handle:
        np.savez(handle, sequences=payload, rows_1=np.arange(2))
    capsys.readouterr()
    _, _, state = load_or_build(cache, build, "ttl")
    assert not marker.exists(), "the planted payload ran"
    assert state == "miss" and f"warning: damaged cache entry {cache.arrays_path}" in capsys.readouterr().err


# ------------------------------------------------- the parsed-data cache is keyed by the whole content

def _large_file(path, size=3 << 20):
    path.write_bytes(np.random.default_rng(0).bytes(size))
    return path


def test_an_edit_in_the_middle_of_a_large_file_keeping_size_and_mtime_gives_a_new_key(tmp_path):
    from bench.datasets.cache import cache_key

    source, root = _large_file(tmp_path / "ratings.dat"), tmp_path / "cache"
    before = cache_key("ttl", [source], {"kinds": "auto"}, root)
    stat = source.stat()
    with open(source, "r+b") as handle:  # one byte in the middle, far from either end's MiB
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert cache_key("ttl", [source], {"kinds": "auto"}, root) != before


def test_a_files_digest_is_remembered_only_while_it_is_the_same_file_unchanged(tmp_path, monkeypatch):
    from bench.datasets import cache

    hashed: list = []
    original = cache.file_hash
    monkeypatch.setattr(cache, "file_hash", lambda path, algorithm: hashed.append(path) or original(path, algorithm))
    source, root = _large_file(tmp_path / "ratings.dat"), tmp_path / "cache"

    future = time.time_ns() + 60 * 10**9  # changed "just now" (a timestamp tick may hide the next change)
    os.utime(source, ns=(future, future))
    first = cache.content_digest(source, root)
    assert cache.content_digest(source, root) == first and len(hashed) == 2, "a racy digest is not remembered"

    monkeypatch.setattr(cache, "_RACY_NS", -10**12)  # as if the file had settled long ago
    hashed.clear()
    assert cache.content_digest(source, root) == first and cache.content_digest(source, root) == first
    assert len(hashed) == 1, "hashed once, then remembered"
    assert list((root / "digests").glob("*.json"))

    _large_file(source, size=(3 << 20) + 1)  # another file now: its identity differs
    assert cache.content_digest(source, root) != first and len(hashed) == 2
    (memo,) = (root / "digests").glob("*.json")
    memo.write_text("{not json")
    assert cache.content_digest(source, root) == original(source, "sha256") and len(hashed) == 3
