"""Data-parallel runs under torchrun on CPU (gloo): two processes, one writer, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.cli import main
from bench.results.store import RunStore

TINY = [
    "--epochs", "2", "--quiet", "--no-matrices", "--device", "cpu",
    "--set", "dataset_options.n_users=48", "--set", "dataset_options.n_items=30",
    "--set", "dataset_options.target_items=[8]", "--set", "dataset_options.classes=[3]",
    "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]", "--set", "train.batch_size=8",
]
METHODS = "HAT,FineSmax"
pytestmark = pytest.mark.skipif(not dist.is_available() or not Path("/proc/self/task").exists(),
                                reason="needs torch.distributed (gloo) and Linux /proc")  # HAT's gradient surgery runs after the all-reduce; FineSmax is plain


def torchrun(*argv: str, results: Path, stop_after: str | None = None, when_exists: Path | None = None
             ) -> subprocess.Popen:
    """Two ranks of `bench`; with `stop_after`, each rank runs under tests/stopping.py and stops
    itself after a return of that function once `when_exists` exists (only rank 0 writes, so
    only it stops; rank 1 then waits at its next collective): the run is frozen at a known
    point, however loaded the machine is."""
    from tests import stopping

    condition = [] if when_exists is None else ["--when-exists", str(when_exists)]
    target = (["-m", "bench"] if stop_after is None
              else [str(stopping.HERE), "--after", stop_after, *condition, "--", "bench"])
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             *target, *argv, *TINY, "--results", str(results)],
                            env=stopping.environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_tree(pid: int) -> None:
    """kill -9 a process and its children (torchrun starts its workers in sessions of their own)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):  # every thread's children, not only the main thread's
        try:
            children += (task / "children").read_text().split()
        except OSError:
            pass
    os.kill(pid, signal.SIGKILL)
    for child in children:
        kill_tree(int(child))


@pytest.mark.slow
def test_two_process_run_is_written_once_resumes_and_matches_a_single_process_shape(tmp_path, t1_cache_root):
    # interrupt a two-process run once HAT has checkpointed its first step: rank 0 stops itself
    # right after writing it, so polling for the file cannot race the run to its end
    checkpoint = tmp_path / "runs" / "dist" / "methods" / "HAT" / "checkpoint.pt"
    first = torchrun("run", "--methods", METHODS, "--run-id", "dist", results=tmp_path,
                     stop_after="bench.results.store:RunStore.save_checkpoint", when_exists=checkpoint)
    deadline = time.monotonic() + 300  # for a hung child, not a timing assumption
    while not checkpoint.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    kill_tree(first.pid)
    first.communicate()
    done = [json.loads(path.read_text())["complete"] for path in (tmp_path / "runs" / "dist").rglob("result.json")]
    assert done.count(True) < 2  # interrupted: HAT mid-way, or FineSmax not finished

    resumed = torchrun("run", "--resume", "dist", results=tmp_path)
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err
    assert out.count("| HAT") == 1 and out.count("| FineSmax") == 1  # rank 0 prints, once

    torch.set_num_threads(1)
    assert main(["run", "--methods", METHODS, "--run-id", "single", *TINY, "--results", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["dist", "single"]  # no rank-1 run folder
    distributed, single = RunStore.open("dist", tmp_path), RunStore.open("single", tmp_path)
    assert distributed.environment["world_size"] == 2 and single.environment["world_size"] == 1
    for method in METHODS.split(","):
        record = distributed.load_record(method)
        assert record.complete and not (distributed.method_dir(method) / "checkpoint.pt").exists()
        R, R1 = record.matrix(), single.load_record(method).matrix()
        assert R.shape == R1.shape and (np.isnan(R) == np.isnan(R1)).all()
        values = R[~np.isnan(R)]
        assert np.isfinite(values).all() and ((0 <= values) & (values <= 1)).all()
        assert values.max() > 0
    # T1 of the shared pretrained model: trained once by both ranks together, so one T1 cache
    # entry per world size (sharding changes the model)
    assert len(list(t1_cache_root.glob("t1-*.pt"))) == 2
    assert [entry["hit"] for entry in single.environment["t1_cache"].values()] == [False]


def _fit_on_rank(rank: int, world: int, rendezvous: str, out: str) -> None:
    """Two gloo ranks with batch B each must train exactly as one process with batch 2B."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    if world > 1:  # a rendezvous file, not a fixed port another process may hold
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    from bench.config import BackboneConfig, TrainConfig
    from bench.datasets.base import load_dataset
    from bench.engine.backbone import NextItNet, make_head
    from bench.engine.context import MethodContext
    from bench.engine.objectives import evaluation_scores

    dataset = load_dataset("synthetic", {"n_users": 48, "n_items": 30, "target_items": [8], "classes": [3]}, None)
    task = dataset.tasks[1]
    torch.manual_seed(rank)  # different initial weights per rank: fit starts from rank 0's
    context = MethodContext(n_items=dataset.n_items, backbone=BackboneConfig(embedding_dim=8, dilations=[1]),
                            train=TrainConfig(epochs=2, batch_size=16 // world, lr=0.01), device=torch.device("cpu"),
                            first_task=dataset.tasks[0])
    encoder = NextItNet(dataset.n_items, context.backbone)
    head = make_head(task, encoder)
    torch.manual_seed(0)
    log = context.fit_model(task, encoder, head)
    metrics = context.evaluate(task, lambda x: evaluation_scores(task, encoder(x), head), "test")
    result = {"state": torch.nn.ModuleList([encoder, head]).state_dict(), "log": log.epochs, "metrics": metrics}
    if world > 1:  # whole runs of methods with gradient surgery keep the ranks in lockstep
        result["lockstep"] = _run_methods(["Conure", "TERACON"], Path(out).parent)
        dist.destroy_process_group()
    if rank == 0:
        torch.save(result, out)


def _run_methods(methods: list[str], root: Path) -> bool:
    from bench.config import build_run_config
    from bench.experiments import runner
    from bench.methods.base import ContinualMethod
    from bench.results.store import RunStore

    built = {}
    build = ContinualMethod.build.__func__
    ContinualMethod.build = classmethod(lambda cls, context, options=None: built.setdefault(
        cls.__name__, build(cls, context, options)))
    config = build_run_config({
        "methods": methods, "device": "cpu", "train": {"epochs": 2, "batch_size": 8},
        "dataset_options": {"n_users": 40, "n_items": 30, "target_items": [8], "classes": [3]},
        "backbone": {"embedding_dim": 8, "dilations": [1]}})
    runner.run(config, RunStore.create(config.to_dict(), root, "lockstep"), progress=False)
    mine = {name: [t.clone() for t in method.state_dict().values()] for name, method in built.items()}
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    return sorted(mine) == methods and all(
        all(torch.equal(a, b) for a, b in zip(other[name], mine[name])) for other in every for name in mine)


@pytest.mark.slow
def test_averaged_gradients_train_like_one_process_with_the_global_batch_and_ranks_stay_in_lockstep(
        tmp_path, monkeypatch):
    rendezvous = str(tmp_path / "rendezvous")
    mp.spawn(_fit_on_rank, args=(2, rendezvous, str(tmp_path / "two.pt")), nprocs=2)
    monkeypatch.setenv("RANK", "0")  # the in-process rank below sets both: undone after the test
    monkeypatch.setenv("WORLD_SIZE", "1")
    _fit_on_rank(0, 1, rendezvous, str(tmp_path / "one.pt"))
    two, one = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    for key, value in one["state"].items():
        torch.testing.assert_close(two["state"][key], value, rtol=1e-4, atol=1e-5)
    for a, b in zip(two["log"], one["log"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["valid"] == pytest.approx(b["valid"], rel=1e-4)
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-6)  # sharded rows, summed metrics
    assert two["lockstep"]  # Conure and TERACON end with identical weights and masks on both ranks


def test_shards_cover_every_batch_and_give_every_rank_as_many(monkeypatch):
    from bench.engine import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        shards.append(distributed.shard(list(range(7))))
    assert shards == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]  # padded by wrapping round, as DistributedSampler
    assert sorted(set(sum(shards, []))) == list(range(7))
