"""Memory and speed at TTL's published size on a CPU: streamed evaluation, one T1 step, a smoke run.

    BENCH_FULL=1 python -m pytest tests/benchmarks/test_bench_ttl_scale.py --benchmark-enable -s

Each case runs in a child process, which reports its own peak RSS (getrusage), so the
figures are those of the case alone. Without BENCH_FULL the shapes are small, so the
benchmark run stays short; the targets below hold at full size:

* evaluation of 220,000 users x 646,000 items (d=32): peak RSS < 4 GB
  (BENCH_EVAL_USERS overrides the number of users: peak memory does not grow with it);
* one T1 step at the papers' shape (646K items, L=100, d=256, dilations [1,4]x4, B=32):
  chunked exact softmax < 8 GB; and the sampled softmax (Conure's 20% negatives);
* `bench run --methods FineSmax` on TTL-sized synthetic data with --limit-train-batches and
  --limit-eval-users: peak RSS < 16 GB, and the projected time of one full T1 epoch
  (BENCH_RUN_BATCHES, default 20, caps the batches; BENCH_RUN_EVAL_USERS, default 20,000,
  the evaluated users: every step evaluates T1 again, 20K users x 646K items each time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

FULL = os.environ.get("BENCH_FULL") == "1"
ITEMS = 646_000 if FULL else 20_000
EVAL_USERS = int(os.environ.get("BENCH_EVAL_USERS", 220_000 if FULL else 4_000))
GiB = 2**30

PRELUDE = """
import json, resource, sys, time
import numpy as np, torch
from bench.config import BackboneConfig
from bench.engine.backbone import NextItNet, TiedItemHead
from bench.engine.objectives import LossSettings, evaluation_scores, loss_settings, training_loss
from bench.engine.tasks import Task, TaskKind, TaskSplit
from bench.engine.training import evaluate

def random_task(n_items, n_users, seq_len):
    inputs = np.random.default_rng(0).integers(1, n_items + 1, (n_users, seq_len), dtype=np.int32)
    split = TaskSplit(inputs, inputs[:, -1].astype(np.int64))
    return Task("T1", TaskKind.NEXT_ITEM, n_items, split, split, split)

def report(**figures):
    figures["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2)
    print(json.dumps(figures))
"""

EVALUATION = PRELUDE + """
n_items, n_users = int(sys.argv[1]), int(sys.argv[2])
task = random_task(n_items, n_users, 101)
encoder = NextItNet(n_items, BackboneConfig(embedding_dim=32, dilations=[1, 4])).eval()
head = TiedItemHead(encoder.embedding)
started = time.perf_counter()
metrics = evaluate(task, task.test, lambda x: evaluation_scores(task, encoder(x), head), torch.device("cpu"), 512)
seconds = time.perf_counter() - started
report(users=n_users, items=n_items, seconds=round(seconds, 1), users_per_second=round(n_users / seconds),
       mrr=metrics["mrr@5"])
"""

STEP = PRELUDE + """
n_items, loss = int(sys.argv[1]), sys.argv[2]
task = random_task(n_items, 32, 100)
encoder = NextItNet(n_items, BackboneConfig(embedding_dim=256, dilations=[1, 4] * 4))
head = TiedItemHead(encoder.embedding)
optimizer = torch.optim.Adam(list(encoder.parameters()) + [head.bias], lr=1e-3)
x = torch.from_numpy(task.train.inputs).long()
times = []
for _ in range(2):  # the first step also allocates Adam's state
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with loss_settings(LossSettings(loss=loss)):
        value = training_loss(task, encoder(x), head, x, None)
    value.backward()
    optimizer.step()
    times.append(time.perf_counter() - started)
report(items=n_items, loss=loss, batch=32, seq_len=100, dim=256, seconds_per_step=round(times[-1], 1),
       loss_value=round(float(value), 3))
"""


def run_child(script: str, *args) -> dict:
    result = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def record(benchmark, figures: dict) -> None:
    benchmark.extra_info.update(figures)
    print(figures)


def test_streamed_evaluation_memory(benchmark):
    figures = benchmark.pedantic(run_child, args=(EVALUATION, ITEMS, EVAL_USERS), rounds=1, iterations=1)
    record(benchmark, figures)
    assert figures["peak_rss_gb"] < 4


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_t1_step_at_the_papers_shape(benchmark, loss):
    figures = benchmark.pedantic(run_child, args=(STEP, ITEMS, loss), rounds=1, iterations=1)
    record(benchmark, figures)
    if loss == "full":
        assert figures["peak_rss_gb"] < 8


RUN = """
import resource, subprocess, sys, time, json, re
started = time.perf_counter()
result = subprocess.run([sys.executable, "-m", "bench", "run", *sys.argv[1:]], capture_output=True, text=True)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30
print(result.stderr[-3000:], file=sys.stderr)
print(json.dumps({"returncode": result.returncode, "seconds": round(seconds, 1), "peak_rss_gb": round(peak, 2),
                  "run_dir": (re.findall(r"-> (\\S+)", result.stderr) or [""])[0]}))
"""


def test_smoke_run_at_ttl_size(benchmark, tmp_path):
    users = 1_470_000 if FULL else 20_000
    batches = int(os.environ.get("BENCH_RUN_BATCHES", 20))
    eval_users = int(os.environ.get("BENCH_RUN_EVAL_USERS", 20_000 if FULL else 2_000))
    arguments = ["--methods", "FineSmax", "--device", "cpu", "--quiet", "--epochs", "1",
                 "--results", str(tmp_path), "--run-id", "smoke",
                 "--set", f"dataset_options.n_users={users}", "--set", f"dataset_options.n_items={ITEMS}",
                 "--set", "dataset_options.seq_len=100", "--limit-train-batches", batches,
                 "--limit-eval-users", eval_users]
    figures = benchmark.pedantic(run_child, args=(RUN, *arguments), rounds=1, iterations=1)
    assert figures["returncode"] == 0
    pretrained = json.loads((tmp_path / "runs" / "smoke" / "config.json").read_text())["train"]
    assert pretrained["limit_train_batches"] == batches
    from bench.results.store import RunStore

    record_ = RunStore.open("smoke", tmp_path).load_record("FineSmax")
    t1_seconds = record_.steps[0]["seconds"]  # T1: generation excluded, one capped epoch + validation
    train_users = int(users * 0.8)
    figures.update({"t1_step_seconds": round(t1_seconds, 1), "batches": batches,
                    "projected_full_t1_epoch_hours": round(t1_seconds / batches * (train_users / 128) / 3600, 1)})
    record(benchmark, figures)
    print(f"projected full T1 epoch ({train_users:,} users, batch 128): "
          f"{figures['projected_full_t1_epoch_hours']} h on this CPU (upper bound: includes validation)")
    assert figures["peak_rss_gb"] < 16


EXPORT = """
import json, resource, sys, time
from pathlib import Path
from bench.datasets.synthetic import SyntheticOptions, generate
from bench.datasets.ttl import write_release
started = time.perf_counter()
dataset = generate(SyntheticOptions(n_users=int(sys.argv[2]), n_items=int(sys.argv[3]), seq_len=100))
paths = write_release(dataset, Path(sys.argv[1]) / "ColdRec")
print(json.dumps({"export_seconds": round(time.perf_counter() - started, 1),
                  "export_gb": round(sum(p.stat().st_size for p in paths) / 2**30, 2),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30, 2)}))
"""


def test_ttl_adapter_on_a_release_sized_export(benchmark, tmp_path):
    """The real TTL code path at the release's size: a synthetic export in the released file
    names, parsed by the `ttl` adapter (first load, then the cache), then a capped smoke run."""
    users = 1_470_000 if FULL else 20_000
    export = run_child(EXPORT, tmp_path / "data", users, ITEMS)
    arguments = ["--dataset", "ttl", "--data-dir", str(tmp_path / "data"), "--preset", "quick",
                 "--methods", "FineSmax", "--device", "cpu", "--quiet", "--epochs", "1",
                 "--results", str(tmp_path / "results"), "--run-id", "ttl-smoke",
                 "--set", f"dataset_options.cache_dir={tmp_path / 'cache'}",
                 "--limit-train-batches", int(os.environ.get("BENCH_RUN_BATCHES", 2)),
                 "--limit-eval-users", int(os.environ.get("BENCH_RUN_EVAL_USERS", 1_000))]
    figures = benchmark.pedantic(run_child, args=(RUN, *arguments), rounds=1, iterations=1)
    assert figures["returncode"] == 0
    figures.update({f"export_{key}" if not key.startswith("export") else key: value
                    for key, value in export.items()})
    record(benchmark, figures)
    assert figures["peak_rss_gb"] < 16
