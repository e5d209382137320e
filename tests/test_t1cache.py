"""The T1 cache shared by runs and processes (bench/engine/t1cache.py): same results, named damage."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.config import BackboneConfig, FirstTaskSchedule
from bench.engine import t1cache
from bench.engine.context import MethodContext
from bench.experiments.runner import prepare, run
from bench.results.store import RunStore
from tests.conftest import tiny_config

METHODS = ["FineSmax", "TERACON", "Conure"]  # the shared T1, TERACON's masked T1, Conure's block


def _run(root, run_id, **overrides):
    config = tiny_config(methods=METHODS, **overrides)
    config.train.epochs = 1
    store = RunStore.create(config.to_dict(), root, run_id)
    return {r.method: r for r in run(config, store, progress=False)}, store


def _scores(records) -> dict:
    """Every score of every step and extra row: all that must not change (not the seconds)."""
    return {name: ([step["scores"] for step in record.steps], record.variants) for name, record in records.items()}


@pytest.mark.slow
def test_cache_hit_and_cache_off_give_bit_identical_results(tmp_path, t1_cache_root, monkeypatch, capfd):
    trained, first = _run(tmp_path, "trained")
    loaded, second = _run(tmp_path, "loaded")
    monkeypatch.setenv("BENCH_T1_CACHE", "off")
    alone, third = _run(tmp_path, "alone")
    assert _scores(loaded) == _scores(trained) == _scores(alone)
    assert json.dumps(_scores(loaded)) == json.dumps(_scores(alone))  # exact floats, not close ones
    err = capfd.readouterr().err
    # T1 of the run's backbone, Conure's pre-LN T1 and TERACON's masked T1: trained once, then loaded
    assert err.count("t1-cache: training") == 3 and err.count("t1-cache: loaded") == 3
    hits = {name: entry["hit"] for name, entry in second.environment["t1_cache"].items()}
    assert len(hits) == 3 and all(hits.values())
    assert not any(entry["hit"] for entry in first.environment["t1_cache"].values())
    keys = {e["key"] for e in first.environment["t1_cache"].values()}
    assert keys == {e["key"] for e in second.environment["t1_cache"].values()}
    assert sorted(p.stem for p in t1_cache_root.glob("*.pt")) == sorted(keys)
    off = third.environment["t1_cache"]
    assert all(e["path"] is None and not e["hit"] for e in off.values()) and {e["key"] for e in off.values()} == keys
    assert list(third.cache_dir.glob("pretrained-*.pt"))  # cache off: the run keeps its own T1 for --resume


def test_loading_from_the_cache_leaves_the_global_rng_as_training_does(results_root):
    config = tiny_config()
    config.train.epochs = 1
    _, tasks, _ = prepare(config)

    def rng_after_pretrained() -> torch.Tensor:
        context = MethodContext(n_items=40, backbone=config.backbone, train=config.train, device=torch.device("cpu"),
                                first_task=tasks[0], t1_cache=t1cache.default_root())
        torch.manual_seed(5)
        torch.rand(3)
        context.pretrained()
        return torch.get_rng_state()

    trained, loaded = rng_after_pretrained(), rng_after_pretrained()
    assert torch.equal(trained, loaded)


@pytest.mark.slow
def test_a_damaged_entry_is_named_and_trained_again(tmp_path, t1_cache_root, capfd):
    trained, _ = _run(tmp_path, "first")
    entry = sorted(t1_cache_root.glob("t1-*.pt"))[0]
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated, as by a full disk
    again, store = _run(tmp_path, "second")
    err = capfd.readouterr().err
    assert f"damaged entry {entry}" in err and "Traceback" not in err
    assert _scores(again) == _scores(trained)
    assert [e["hit"] for k, e in store.environment["t1_cache"].items() if e["key"] == entry.stem] == [False]
    assert t1cache.T1Cache(t1_cache_root).load(entry.stem, torch.device("cpu")) is not None  # rebuilt


def test_the_key_follows_what_shapes_the_t1_model_and_nothing_else():
    config = tiny_config()
    _, tasks, _ = prepare(config)
    cpu = torch.device("cpu")

    def key(task=tasks[0], backbone=config.backbone, train=config.train, seed=0, extra=None):
        return t1cache.entry_key("t1", task, 40, backbone, train, seed, cpu, extra)[0]

    base = key()
    assert key() == base
    changed = [key(seed=1), key(backbone=dataclasses.replace(config.backbone, embedding_dim=8)),
               key(train=dataclasses.replace(config.train, batch_size=7)), key(extra={"smax": 1})]
    other = dataclasses.replace(tasks[0], train=tasks[0].train.subset(np.arange(len(tasks[0].train) - 1)))
    changed.append(key(task=other))
    assert base not in changed and len(set(changed)) == len(changed)
    # T1 trains with the first-task schedule, so that schedule is part of the key
    first = dataclasses.replace(config.train, first_task=FirstTaskSchedule(epochs=config.train.epochs + 1))
    assert key(train=first.for_task(True)) not in (base, *changed)


def test_no_t1_cache_flag_trains_without_the_cache(tmp_path, t1_cache_root, capfd):
    args = ["run", "--methods", "FineSmax", "--epochs", "1", "--quiet", "--device", "cpu",
            "--set", "dataset_options.n_users=120", "--results", str(tmp_path)]
    assert main([*args, "--run-id", "on"]) == 0
    assert main([*args, "--run-id", "off", "--no-t1-cache"]) == 0
    assert "t1-cache: loaded" not in capfd.readouterr().err
    (entry,) = RunStore.open("off", tmp_path).environment["t1_cache"].values()
    assert entry["hit"] is False and entry["path"] is None
    assert len(list(t1_cache_root.glob("t1-*.pt"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["TERACON+floor"])
def test_teracon_variants_that_agree_on_t1_share_its_model(variant, tmp_path, capfd):
    config = tiny_config(methods=["TERACON", variant])
    config.train.epochs = 1
    from bench.config import build_run_config

    config = build_run_config(config.to_dict())
    run(config, RunStore.create(config.to_dict(), tmp_path, "v"), progress=False)
    err = capfd.readouterr().err
    assert err.count("t1-cache: training teracon-") == 1 and err.count("t1-cache: loaded teracon-") == 1


@pytest.mark.slow
def test_an_unusable_cache_folder_costs_time_not_the_run(tmp_path, monkeypatch, capfd):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("BENCH_T1_CACHE", str(blocker / "t1"))
    records, store = _run(tmp_path, "unusable")
    assert all(record.complete for record in records.values())
    err = capfd.readouterr().err
    assert "t1-cache: warning: T1 cache unusable" in err and "Traceback" not in err
    assert all(e["path"] is None and not e["hit"] for e in store.environment["t1_cache"].values())


@pytest.mark.slow
def test_a_damaged_copy_in_the_run_folder_is_named_and_trained_again(tmp_path, monkeypatch, capfd):
    """With the T1 cache off, a resumed run reads its own T1 copy: truncated, it is retrained."""
    monkeypatch.setenv("BENCH_T1_CACHE", "off")
    trained, store = _run(tmp_path, "own")
    copy = sorted(store.cache_dir.glob("pretrained-*.pt"))[0]
    copy.write_bytes(copy.read_bytes()[:100])
    for name in METHODS:  # as if interrupted before any method finished
        (store.method_dir(name) / "result.json").unlink()
    config = tiny_config(methods=METHODS)
    config.train.epochs = 1
    again = {r.method: r for r in run(config, store, progress=False)}
    err = capfd.readouterr().err
    assert f"damaged entry {copy}" in err and "Traceback" not in err
    assert _scores(again) == _scores(trained)
