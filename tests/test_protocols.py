"""Evaluation protocols (bench/engine/protocols.py): full and sampled-candidate ranking, cut-offs."""

import json
import math

import numpy as np
import pytest
import torch

from bench.config import EvalConfig
from bench.engine.metrics import AccuracySums
from bench.engine.protocols import BLOCK, NegativeSampler, Protocol, describe
from bench.engine.tasks import Task, TaskKind, TaskSplit
from bench.engine.training import evaluate
from bench.results.leaderboard import Group, label, setup_key
from tests.test_cli import assert_one_line_error, run_cli


def item_task(n_targets=25, train_targets=None, n_rows=10, name="T2") -> Task:
    targets = np.asarray(train_targets if train_targets is not None else np.arange(n_rows) % n_targets)
    split = TaskSplit(np.ones((len(targets), 4), dtype=np.int64), targets)
    return Task(name, TaskKind.ITEM, n_targets, split, split, split)


def test_full_ranking_at_5_and_20_by_hand():
    scores = torch.arange(25, 0, -1, dtype=torch.float32).repeat(3, 1)  # column c ranks c + 1
    targets = torch.tensor([2, 6, 24])  # ranks 3, 7, 25
    sums = Protocol(EvalConfig(cutoffs=[5, 20])).sums(item_task())
    sums.add(scores, targets)
    got = sums.metrics()
    expected = {"mrr@5": (1 / 3) / 3, "hr@5": 1 / 3, "ndcg@5": (1 / math.log2(4)) / 3,
                "mrr@20": (1 / 3 + 1 / 7) / 3, "hr@20": 2 / 3, "ndcg@20": (1 / math.log2(4) + 1 / math.log2(8)) / 3}
    assert list(got) == list(expected) and got == pytest.approx(expected, abs=1e-12)


def test_sampled_ranking_by_hand(monkeypatch):
    scores = torch.arange(25, dtype=torch.float32).repeat(3, 1)  # column c scores c
    targets = torch.tensor([10, 0, 7])
    negatives = torch.tensor([[11, 3, 12, 5], [1, 2, 3, 4], [7, 1, 2, 3]])  # ranks 3, 5, 2 (a tie counts against)
    sums = Protocol(EvalConfig(protocol="sampled", negatives=4, cutoffs=[5, 20])).sums(item_task())
    monkeypatch.setattr(sums.sampler, "rows", lambda rows: negatives[rows])
    sums.add(scores, targets, torch.arange(3))
    got = sums.metrics()
    mrr, ndcg = (1 / 3 + 1 / 5 + 1 / 2) / 3, (1 / math.log2(4) + 1 / math.log2(6) + 1 / math.log2(3)) / 3
    assert got == pytest.approx({"mrr@5": mrr, "hr@5": 1.0, "ndcg@5": ndcg,
                                 "mrr@20": mrr, "hr@20": 1.0, "ndcg@20": ndcg}, abs=1e-12)
    # with 4 negatives a target ranks at most 5th: the sampled MRR@5 is never below the full one
    full = Protocol(EvalConfig(cutoffs=[5, 20])).sums(item_task())
    full.add(scores, targets)
    assert full.metrics()["mrr@5"] < got["mrr@5"]


def test_negatives_are_a_function_of_seed_task_and_row():
    task = item_task(n_targets=50)
    rows = torch.arange(3 * BLOCK + 17)
    whole = NegativeSampler(task, 99, "uniform", seed=3).rows(rows)
    assert whole.shape == (len(rows), 99) and int(whole.min()) >= 0 and int(whole.max()) < 50
    chunked = torch.cat([NegativeSampler(task, 99, "uniform", 3).rows(rows[i:i + 37]) for i in range(0, len(rows), 37)])
    assert torch.equal(whole, chunked)
    for rank in range(3):  # a DDP rank's rows (rank, rank + 3, ...) get the same negatives as on one process
        assert torch.equal(NegativeSampler(task, 99, "uniform", 3).rows(rows[rank::3]), whole[rank::3])
    assert not torch.equal(NegativeSampler(task, 99, "uniform", 4).rows(rows), whole)  # the seed matters
    assert not torch.equal(NegativeSampler(item_task(n_targets=50, name="T3"), 99, "uniform", 3).rows(rows), whole)
    next_item = Task("T1", TaskKind.NEXT_ITEM, 50, task.train, task.valid, task.test)
    drawn = NegativeSampler(next_item, 99, "uniform", 3).rows(rows)
    assert int(drawn.min()) == 1 and int(drawn.max()) == 50  # the padding id 0 is no candidate


def scored_task():
    """An item task with a random test split, a fixed score function and a sampled protocol."""
    generator = torch.Generator().manual_seed(0)
    n_rows, n_targets = 300, 40
    task = item_task(n_targets, torch.randint(0, n_targets, (n_rows,), generator=generator).numpy())
    task.test = TaskSplit(torch.randint(1, 30, (n_rows, 4), generator=generator).numpy(),
                          torch.randint(0, n_targets, (n_rows,), generator=generator).numpy())
    table = torch.randn(30, n_targets, generator=generator)

    def score(x):
        return table[x].sum(dim=1)

    protocol = Protocol(EvalConfig(protocol="sampled", sampling="popularity", cutoffs=[5, 20]), seed=1)
    return task, score, protocol, evaluate(task, task.test, score, torch.device("cpu"), 1000, protocol=protocol)


def test_sampled_metrics_do_not_depend_on_batch_size_or_limit():
    task, score, protocol, whole = scored_task()
    for batch_size in (1, 7, 64):
        assert evaluate(task, task.test, score, torch.device("cpu"), batch_size, protocol=protocol) \
            == pytest.approx(whole, rel=1e-12, abs=1e-15)
    capped = evaluate(task, task.test, score, torch.device("cpu"), 16, limit=50, protocol=protocol)
    assert capped == evaluate(task, task.test.subset(np.arange(50)), score, torch.device("cpu"), 16,
                              protocol=protocol)
    full = evaluate(task, task.test, score, torch.device("cpu"), 64, protocol=Protocol(EvalConfig(cutoffs=[5, 20])))
    assert set(full) == set(whole) and full != whole


def test_sampled_metrics_summed_over_ranks_equal_one_process(monkeypatch):
    """Three DDP ranks' shards (rows r, r + 3, ...), each ranked against its rows' negatives,
    add up to the single-process metrics (what distributed.reduce_sums does)."""
    from bench.engine import distributed
    from bench.engine.training import accumulate

    task, score, protocol, whole = scored_task()
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    total, count, sums = 0, 0, None
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        sums = accumulate(task, task.test, score, torch.device("cpu"), 32, protocol=protocol)
        part, n = sums.result()
        total, count = total + part, count + n
    assert count == len(task.test) and sums.metrics(total, count) == pytest.approx(whole, rel=1e-12, abs=1e-15)


def test_popularity_sampling_follows_training_frequencies():
    counts = [500, 300, 150, 50, 0]
    task = item_task(5, np.repeat(np.arange(5), counts))
    drawn = NegativeSampler(task, 20, "popularity", seed=0).rows(torch.arange(10_000)).numpy()
    shares = np.bincount(drawn.ravel(), minlength=5) / drawn.size  # 200,000 draws
    assert shares == pytest.approx(np.array(counts) / 1000, abs=0.005)
    assert shares[4] == 0  # never seen in training: never drawn
    uniform = NegativeSampler(task, 20, "uniform", seed=0).rows(torch.arange(10_000)).numpy()
    assert np.bincount(uniform.ravel(), minlength=5) / uniform.size == pytest.approx(np.full(5, 0.2), abs=0.005)


def test_classification_keeps_accuracy():
    task = item_task()
    task.kind = TaskKind.CLASS
    assert isinstance(Protocol(EvalConfig(protocol="sampled")).sums(task), AccuracySums)


def test_protocol_in_config_result_and_leaderboard(capsys, tmp_path):
    common = ["--methods", "dnn", "--epochs", "1", "--device", "cpu", "--quiet", "--results", str(tmp_path),
              "--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20"]
    code, out, err = run_cli(capsys, "run", *common, "--run-id", "sampled", "--set", "eval.protocol=sampled",
                             "--set", "eval.cutoffs=[5, 20]", "--set", "eval.sampling=popularity")
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "sampled" / "config.json").read_text())
    assert config["eval"] == {"protocol": "sampled", "negatives": 99, "sampling": "popularity",
                              "cutoffs": [5, 20], "seed": None}
    result = json.loads((tmp_path / "runs" / "sampled" / "methods" / "DNN" / "result.json").read_text())
    assert result["evaluation"] == {"protocol": "sampled", "cutoffs": [5, 20], "negatives": 99,
                                    "sampling": "popularity", "seed": 0}
    scores = result["steps"][-1]["scores"]
    item_scores = [s for s in scores.values() if "mrr@5" in s]
    assert item_scores and all(set(s) == {"mrr@5", "hr@5", "ndcg@5", "mrr@20", "hr@20", "ndcg@20"}
                               and 0 <= s["mrr@5"] <= s["mrr@20"] <= s["hr@20"] <= 1 for s in item_scores)
    assert all(set(s) == {"accuracy"} for s in scores.values() if "mrr@5" not in s)
    assert "Item tasks scored by sampled ranking: 1 positive + 99 popularity negatives, cut-offs @5/@20." in out
    code, table, _ = run_cli(capsys, "table", "sampled", "--results", str(tmp_path))
    assert code == 0 and "sampled ranking" in table
    code, out, err = run_cli(capsys, "run", *common, "--run-id", "seeds", "--seeds", "0,1",
                             "--set", "eval.protocol=sampled")
    sweep_heading = next(line for line in out.splitlines() if line.startswith("Sweep seeds:"))
    assert code == 0 and "sampled ranking: 1 positive + 99 uniform negatives" in sweep_heading, err
    code, out, _ = run_cli(capsys, "run", *common, "--run-id", "full")
    assert code == 0 and "sampled ranking" not in out and "hr@20" not in \
        (tmp_path / "runs" / "full" / "methods" / "DNN" / "result.json").read_text()
    # the protocol changes only how R is scored: training and model selection are the same
    logs = [[(log["task"], log["best_epoch"], [(e["loss"], e["valid"], e["valid_loss"]) for e in log["epochs"]])
             for log in json.loads((tmp_path / "runs" / run / "methods" / "DNN" / "epochs.json").read_text())]
            for run in ("sampled", "full")]
    assert logs[0] == logs[1] and len(logs[0]) > 1
    # the leaderboard keeps the protocols apart and says which one made a table;
    # a default `eval` keeps the setup key of runs stored before it existed
    default = {k: v for k, v in config.items() if k != "eval"}
    assert setup_key({**default, "eval": EvalConfig().__dict__}) == setup_key(default) != setup_key(config)
    assert describe(None) is None and "99 popularity negatives" in describe(config["eval"])
    group = Group("synthetic", [1, 2], "x", preset="quick", protocol=describe(config["eval"]))
    assert "sampled ranking: 1 positive + 99 popularity negatives" in label(group)


@pytest.mark.parametrize("setting, fragment", [
    ("eval.protocol=sample", "eval.protocol"),
    ("eval.sampling=popular", "eval.sampling"),
    ("eval.negatives=0", "eval.negatives"),
    ("eval.cutoffs=[20]", "includes 5"),
    ("eval.cutoffs=[5, 5]", "distinct"),
])
def test_bad_protocol_settings_are_one_line_errors(capsys, tmp_path, setting, fragment):
    code, _, err = run_cli(capsys, "run", "--methods", "dnn", "--device", "cpu", "--quiet",
                           "--results", str(tmp_path), "--set", setting)
    assert_one_line_error(code, err, fragment)


def test_sampled_groups_get_their_own_results_page():
    from bench.results.site import slugs

    full = Group("synthetic", [1, 2], "aaaa", preset="quick")
    sampled = Group("synthetic", [1, 2], "bbbb", preset="quick", protocol=describe({"protocol": "sampled"}))
    wider = Group("synthetic", [1, 2], "cccc", preset="quick", protocol=describe({"cutoffs": [5, 20]}))
    assert (full.sampled, sampled.sampled, wider.sampled) == (False, True, False)
    assert slugs([full, sampled]) == ["synthetic-quick", "synthetic-quick-sampled"]
    assert label(wider) == "method defaults, preset quick; full ranking, cut-offs @5/@20"
