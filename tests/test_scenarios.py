"""The time-aware scenario (docs/scenarios.md): harness growth, the runner's growth and later
data, the `ditto` adapter and its writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.config import BackboneConfig
from bench.engine.backbone import TiedItemHead, build_encoder
from bench.engine.growth import GrowthError, at_vocabulary, grow_module
from bench.engine.tasks import Dataset, Task, TaskKind, TaskSplit
from bench.errors import BenchError
from bench.experiments.runner import run
from bench.registry import METHODS
from bench.results.store import RunStore
from tests.conftest import tiny_config


def write_folder(directory: Path, n_users: int = 120, length: int = 8, seed: int = 0,
                 later_shift: int = 0) -> Path:
    """A tiny folder in DITTO's layout: T1 over raw ids 1..30, T2 (item targets) and T3 (3
    classes) bringing ids up to 38, inference files for T1 and T2 bringing ids up to 45."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def sequences(highest: int, low: int = 1):
        rows = []
        for _ in range(n_users):
            size = int(rng.integers(3, length + 1))
            rows.append([0] * (length - size) + rng.integers(low, highest + 1, size=size).tolist())
        return rows

    def write(name, rows, targets=None):
        with open(directory / name, "w") as handle:
            for index, row in enumerate(rows):
                line = ",".join(map(str, row))
                handle.write(line + ("" if targets is None else ",," + ",".join(map(str, targets[index]))) + "\n")

    write("task1.csv", sequences(30))
    write("task2.csv", sequences(36), [rng.integers(1, 40, size=int(rng.integers(1, 3))).tolist() for _ in range(n_users)])
    t3 = sequences(38)
    write("task3.csv", t3, [[row[-1] % 3] for row in t3])
    write("task1_inference.csv", sequences(45, low=1 + later_shift))
    write("task2_inference.csv", sequences(45), [[int(rng.integers(1, 48))] for _ in range(n_users)])
    return directory


def ditto_config(folder: Path, methods: list[str], **options):
    config = tiny_config(methods=methods, dataset="ditto", data_dir=str(folder),
                         dataset_options={"class_tasks": [3], **options})
    config.train.epochs = 1
    return config


def run_one(config, root: Path):
    (record,) = run(config, RunStore.create(config.to_dict(), root), progress=False)
    return record


# --- harness growth ------------------------------------------------------------------------------
def small_model():
    encoder = build_encoder(10, BackboneConfig(embedding_dim=8, dilations=[1]))
    tied = TiedItemHead(encoder.embedding)
    with torch.no_grad():
        tied.bias.uniform_(-1, 1)
    linear = nn.Linear(8, 11)  # outputs over item ids 0..10
    classes = nn.Linear(8, 4)  # a class head: never grown
    return encoder, tied, linear, classes


def test_growth_copies_old_rows_and_draws_new_ones_as_ditto_does():
    encoder, tied, linear, classes = small_model()
    model = nn.ModuleList([encoder, tied, linear, classes])
    before = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    embedding_weight, embedding_module = encoder.embedding.weight, encoder.embedding

    grow_module(model, 10, 30)

    table = encoder.embedding.weight
    assert table.shape == (31, 8) and encoder.embedding.num_embeddings == 31
    assert torch.equal(table[:11], before["0.embedding.weight"])  # old rows copied
    bound = (1 / 31) ** 0.5  # ditto.py L216-218: U(+-sqrt(1/rows)) over the new row count
    assert table[11:].abs().max() <= bound and table[11:].abs().max() > bound / 4
    # the tied head still reads the same table (module and Parameter identity kept)
    assert tied.embedding is encoder.embedding is embedding_module and table is embedding_weight
    assert tied(torch.zeros(2, 8)).shape == (2, 31)
    assert torch.equal(tied.bias[:11], before["1.bias"]) and torch.equal(tied.bias[11:], torch.zeros(20))
    # an item-output Linear: old rows copied, new rows as a fresh Linear(8, ...) draws them
    assert linear.out_features == 31 and linear.weight.shape == (31, 8) and linear.bias.shape == (31,)
    assert torch.equal(linear.weight[:11], before["2.weight"]) and torch.equal(linear.bias[:11], before["2.bias"])
    assert linear.weight[11:].abs().max() <= 8 ** -0.5 and linear.bias[11:].abs().max() <= 8 ** -0.5
    assert torch.equal(classes.weight, before["3.weight"]) and classes.out_features == 4


def test_growth_keeps_frozen_tables_frozen_and_never_shrinks():
    encoder, tied, _, _ = small_model()
    encoder.embedding.weight.requires_grad_(False)
    grow_module(nn.ModuleList([encoder, tied]), 10, 12)
    assert not encoder.embedding.weight.requires_grad and tied.bias.requires_grad
    grow_module(nn.ModuleList([encoder, tied]), 12, 5)  # a smaller vocabulary changes nothing
    assert encoder.embedding.weight.shape == (13, 8)


def test_per_item_state_is_one_error_naming_the_tensor_before_any_change():
    encoder, tied, _, _ = small_model()
    model = nn.ModuleList([encoder, tied])
    model.register_buffer("seen", torch.zeros(11, 8))  # per-item state growth cannot cover
    with pytest.raises(GrowthError, match=r"'seen' holds per-item state"):
        grow_module(model, 10, 20, owner="method X")
    assert encoder.embedding.weight.shape == (11, 8)  # nothing was grown


def test_item_vocabulary_tasks_take_the_vocabulary_now():
    split = TaskSplit(np.ones((3, 4), dtype=np.int64), np.ones(3))
    item = Task("T2", TaskKind.ITEM, 20, split, split, split, n_items_known=20, shared_targets=True)
    own = Task("T3", TaskKind.ITEM, 20, split, split, split, n_items_known=20)
    assert at_vocabulary(item, 35).n_targets == 35 and at_vocabulary(item, 35).output_size == 36
    assert at_vocabulary(own, 35) is own  # its own target vocabulary does not grow


# --- the ditto adapter ------------------------------------------------------------------------
def test_adapter_numbers_items_by_arrival_and_splits_as_released(tmp_path):
    from bench.datasets.base import load_dataset

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "task1.csv").write_text("".join(f"0,{i % 5 + 3},{i % 7 + 3}\n" for i in range(40)))  # raw 3..9
    (folder / "task2.csv").write_text("".join(f"0,3,{20 + i % 2},,{30 + i % 3},4\n" for i in range(20)))
    (folder / "task2_inference.csv").write_text("".join(f"0,3,{50 + i % 2},,3\n" for i in range(20)))
    dataset = load_dataset("ditto", {}, folder)
    t1, t2 = dataset.tasks
    raw = dataset.info["raw_ids"]
    assert raw[:8] == ["0", "3", "4", "5", "6", "7", "8", "9"]  # T1: sorted as integers
    assert raw[8:] == ["20", "21", "30", "31", "32", "50", "51"]  # sources before targets, then later files
    assert (t1.n_items_known, t2.n_items_known, dataset.n_items) == (7, 12, 14)
    assert t2.shared_targets and t2.item_vocabulary and t2.n_targets == 12
    # one instance per target: 40 -> 32/2/6, 20 lines x 2 targets = 40 -> 32/2/6
    assert [len(t1.train), len(t1.valid), len(t1.test)] == [32, 2, 6]
    assert [len(t2.train), len(t2.valid), len(t2.test)] == [32, 2, 6]
    assert len(t2.later) == 3 and set(t2.later.inputs[:, -1].tolist()) <= {13, 14}
    order = np.random.RandomState(0).permutation(40)  # train_ditto.py: permute, then split
    t1_rows = np.array([[0, i % 5 + 1, i % 7 + 1] for i in range(40)])[order]
    assert np.array_equal(t1.train.inputs, t1_rows[:32]) and np.array_equal(t1.test.inputs, t1_rows[34:])
    assert t1.later is None
    assert load_dataset("ditto", {"later": False}, folder).tasks[1].later is None


@pytest.mark.parametrize("files, options, message", [
    ({"task2.csv": "0,1,,1\n"}, {}, r"task1\.csv: file not found"),
    ({"task1.csv": "0,1,2\n" * 20, "task3.csv": "0,1,,1\n" * 20}, {}, r"task2\.csv: file not found, but task3\.csv"),
    ({"task1.csv": "0,1,2\n" * 20, "task2.csv": "0,1,,1\n" * 5 + "0,1,2\n"}, {}, r"task2\.csv:6: expected 'sequence,,targets'"),
    ({"task1.csv": "0,1,2\n" * 20, "task2.csv": "0,1,,old\n" * 20}, {"class_tasks": [2]}, r"task2\.csv:1: class label 'old' is not an integer"),
    ({"task1.csv": "0,1,2\n" * 20, "task2.csv": "0,1,,x\n" * 20}, {}, r"target item id 'x' is not an integer"),
    ({"task1.csv": "0,a,2\n" * 20}, {}, r"task1\.csv:1: item id 'a' is not an integer"),
    ({"task1.csv": "0,1,2\n" * 20 + "1,2\n"}, {}, r"task1\.csv:21: 2 item ids, but the file's first line has 3"),
    ({"task1.csv": "0,1,2\n" * 5}, {}, r"5 instances are too few"),
    ({"task1.csv": "0,1,2\n" * 20, "task3_inference.csv": "0,1,2\n"}, {}, r"an inference file for task 3"),
    ({"task1.csv": "0,1,2\n" * 20}, {"class_tasks": [2]}, r"class_tasks: task 2 is not one of the later tasks"),
])
def test_adapter_errors_are_one_line(tmp_path, files, options, message):
    from bench.datasets.base import load_dataset

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(BenchError, match=message) as caught:
        load_dataset("ditto", options, tmp_path)
    assert "\n" not in str(caught.value)


def test_write_release_round_trips(tmp_path):
    from bench.datasets.base import load_dataset
    from bench.datasets.ditto import write_release

    original = load_dataset("ditto", {"class_tasks": [3]}, write_folder(tmp_path / "a"))
    write_release(original, tmp_path / "b")
    again = load_dataset("ditto", {"class_tasks": [3]}, tmp_path / "b")
    raw = np.array([int(r) for r in again.info["raw_ids"]])  # item id read back -> id written
    assert [t.n_items_known for t in again.tasks] == [t.n_items_known for t in original.tasks]
    held = set()  # the ids the original's splits hold (its n_items also counts its inference
    for task in original.tasks:  # files' unread train/valid parts)
        for split in [task.train, task.valid, task.test] + ([task.later] if task.later is not None else []):
            held |= set(split.inputs.ravel().tolist()) | (set(split.targets.tolist()) if task.item_vocabulary else set())
    assert set(raw.tolist()) == held
    for before, after in zip(original.tasks, again.tasks):
        assert (after.kind, after.n_targets, after.shared_targets) == (before.kind, before.n_targets, before.shared_targets)

        def instances(task, splits, mapping=None):
            rows = []
            for split in splits:
                inputs = split.inputs if mapping is None else mapping[split.inputs]
                targets = split.targets if mapping is None or not task.item_vocabulary else mapping[split.targets]
                rows += [tuple(x) + (int(y),) for x, y in zip(inputs.tolist(), targets.tolist())]
            return sorted(rows)

        assert instances(after, [after.train, after.valid, after.test], raw) == \
            instances(before, [before.train, before.valid, before.test])
        if before.later is not None:  # the inference file's test part is the later split, in order
            assert np.array_equal(raw[after.later.inputs], before.later.inputs)
            assert np.array_equal(raw[after.later.targets] if after.item_vocabulary else after.later.targets,
                                  before.later.targets)
        else:
            assert after.later is None


# --- the runner ------------------------------------------------------------------------------------
def test_runner_grows_before_each_step_and_before_later_data(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "data")
    calls = []
    method_class = METHODS.get("SinMoAll")
    original_grow, original_learn = method_class.grow_items, method_class.learn

    def grow(self, n_items, context):
        calls.append(("grow", n_items, context.n_items))
        return original_grow(self, n_items, context)

    def learn(self, tasks, context):
        calls.append(("learn", [t.name for t in tasks], context.n_items, self.n_items))
        return original_learn(self, tasks, context)

    monkeypatch.setattr(method_class, "grow_items", grow)
    monkeypatch.setattr(method_class, "learn", learn)
    record = run_one(ditto_config(folder, ["SinMoAll"]), tmp_path / "results")
    # first the preflight check (bench/experiments/runner.py check_growth, at a small vocabulary);
    # then: T1 knows 30 items, T2 39 (grown before its step), T1's later data 45 (before scoring it)
    assert calls == [("grow", 1013, 1013), ("learn", ["T1-next_item"], 30, 30), ("grow", 39, 39), ("learn", ["T2-item"], 39, 39),
                     ("grow", 45, 45), ("learn", ["T3-class"], 45, 45)]
    assert [step["later"] for step in record.steps] == [[], ["T1-next_item"], ["T1-next_item", "T2-item"]]
    assert [step["n_items"] for step in record.steps] == [30, 45, 45]
    assert record.scenario == {"name": "time-aware", "later": ["T1-next_item", "T2-item"]}
    from bench.results.tables import render_run

    printed = render_run([record])
    assert "performance matrix R[i][j] (task j after training task i; past tasks scored on later data)" in printed
    assert "Time-aware scenario: past tasks scored on later data" in printed and "T1-next_item, T2-item" in printed


def test_rows_after_a_tasks_own_step_score_its_later_data(tmp_path):
    same = write_folder(tmp_path / "a")
    shifted = write_folder(tmp_path / "b", later_shift=20)  # T1's later data holds other items
    without = run_one(ditto_config(same, ["FineSmax"], later=False), tmp_path / "r0").matrix()
    plain = run_one(ditto_config(same, ["FineSmax"]), tmp_path / "r1").matrix()
    other = run_one(ditto_config(shifted, ["FineSmax"]), tmp_path / "r2").matrix()
    assert without[0, 0] == plain[0, 0] == other[0, 0]  # T1's own row: its test split
    # later rows: the later data (FineSmax never changes T1's model after T1, so only the data
    # and the candidates differ: T2 brought 9 items, the later data 6 more)
    assert without[1, 0] == without[2, 0]
    # a task's test split is ranked among the items of its own time, whatever the row has grown
    # to (DITTO's released test ranks over the task's own dictionary): FineSmax's T1 never changes
    assert without[0, 0] == without[1, 0]
    assert plain[1, 0] != without[1, 0] and other[1, 0] != plain[1, 0]
    assert plain[1, 0] == plain[2, 0] and other[1, 0] == other[2, 0]


@pytest.mark.parametrize("method", ["FineAll", "SinMoAll", "PeterRec", "HAT", "Conure", "TERACON"])
def test_resumed_time_aware_run_is_identical(tmp_path, monkeypatch, method):
    """Interrupted before its third step (after growing for T2 and for the later data), the
    resumed run is rebuilt at the checkpoint's vocabulary and gives the same R."""
    folder = write_folder(tmp_path / "data")
    config = ditto_config(folder, [method])
    reference = run_one(config, tmp_path / "reference")

    method_class = METHODS.get(method)
    original, learnt = method_class.learn, []

    def interrupted(self, tasks, context):
        if len(learnt) == 2:
            raise KeyboardInterrupt
        learnt.append(tasks[0].name)
        return original(self, tasks, context)

    store = RunStore.create(config.to_dict(), tmp_path / "resumed")
    monkeypatch.setattr(method_class, "learn", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(config, store, progress=False)
    monkeypatch.setattr(method_class, "learn", original)
    (record,) = run(config, RunStore.open(store.run_id, tmp_path / "resumed"), progress=False)
    assert np.array_equal(record.matrix(), reference.matrix(), equal_nan=True)
    assert [s["scores"] for s in record.steps] == [s["scores"] for s in reference.steps]


def test_a_method_with_per_item_state_is_refused_before_training(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "data")
    trained = []
    monkeypatch.setattr(METHODS.get("Conure"), "learn", lambda *args: trained.append(1))
    with pytest.raises(BenchError, match=r"^method Conure\+embprune cannot grow its item table .*"
                                         r"'encoder\.embedding\.table', 'encoder\.embedding\.owner' hold"):
        run_one(ditto_config(folder, ["Conure+embprune"]), tmp_path / "results")
    assert trained == []


# --- the synthetic generator ----------------------------------------------------------------------
TIME_AWARE = {"new_items": 0.1, "shared_item_targets": True}


def test_synthetic_time_aware_option_is_reproducible_and_leaves_the_base_data():
    from bench.datasets.base import load_dataset
    from tests.conftest import TINY_DATA

    base = load_dataset("synthetic", TINY_DATA)
    first = load_dataset("synthetic", {**TINY_DATA, **TIME_AWARE})
    second = load_dataset("synthetic", {**TINY_DATA, **TIME_AWARE})
    assert all(t.n_items_known is None and t.later is None and not t.shared_targets for t in base.tasks)
    assert base.n_items == 40 and first.n_items == 40 + 6 * 4  # 5 later tasks and the later stage, 4 items each
    assert [t.n_items_known for t in first.tasks] == [40, 44, 48, 52, 56, 60]
    for timed, again, plain in zip(first.tasks, second.tasks, base.tasks):
        for name in ("train", "valid", "test"):
            assert np.array_equal(timed.split(name).inputs, again.split(name).inputs)
            assert np.array_equal(timed.split(name).targets, again.split(name).targets)
            assert timed.split(name).inputs.max() <= timed.n_items_known  # no item before it arrived
        assert timed.shared_targets == (timed.kind is TaskKind.ITEM)
        if timed.kind is TaskKind.CLASS:  # the same users and labels, seen through newer items
            assert np.array_equal(timed.test.targets, plain.test.targets)
    t1, t2 = first.tasks[0], first.tasks[1]
    assert np.array_equal(t1.train.inputs, base.tasks[0].train.inputs)  # T1 is the first stage
    assert t2.train.inputs.max() > 40 and t2.n_targets == 44 and t2.train.targets.min() >= 1
    assert first.tasks[-1].later is None
    for task in first.tasks[:-1]:  # later data: the test users at the later stage, with its newest items
        assert len(task.later) == len(task.test) and task.later.inputs.max() > 56
        assert (task.later.inputs > 60).any()


@pytest.mark.slow  # every method end to end
def test_every_method_runs_the_time_aware_scenario_or_refuses_it(tmp_path):
    """--methods all on a tiny time-aware synthetic dataset: every row runs, its R rows after a
    task's step on later data; Conure+embprune refuses (test above)."""
    from tests.conftest import TINY_DATA

    config = tiny_config(methods=["all"], dataset_options={**TINY_DATA, **TIME_AWARE})
    config.train.epochs = 1
    records = run(config, RunStore.create(config.to_dict(), tmp_path / "results"), progress=False)
    assert sorted(record.method for record in records) == sorted(METHODS.names())  # DITTO too
    for record in records:
        assert record.complete and record.scenario["name"] == "time-aware"
        R = record.matrix()
        assert np.isfinite(R[-1][1:]).all()
        if record.method != "MTL":  # MTL scores the joint tasks after their own (joint) step only
            assert record.steps[-1]["later"] == record.tasks[:-1] and np.isfinite(R[-1]).all()
        # grown to the later data's 64 items (MTL: the last task's 60, it scores no later data)
        assert record.steps[-1]["n_items"] == (60 if record.method == "MTL" else 64)


def test_leaderboard_keeps_time_aware_runs_apart_and_says_so(tmp_path):
    import json

    from bench.results import leaderboard

    def publish(run_id, dataset_options, scenario, method="SinMo", variants=None):
        folder = tmp_path / leaderboard.PUBLISHED / run_id
        (folder / "methods" / method).mkdir(parents=True)
        config = {"dataset": "synthetic", "dataset_options": dataset_options, "seed": 0, "preset": "quick",
                  "order": None, "eval_split": "test", "method_options": {}}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "environment.json").write_text(json.dumps({"commit": "abc"}))
        steps = [{"row": row, "tasks": [f"T{row + 1}"], "seconds": 1.0, "parameters": 10, "backbones": 1,
                  "scores": {f"T{j + 1}": {"mrr@5": 0.5} for j in range(row + 1)},
                  **({"later": [f"T{j + 1}" for j in range(row)]} if scenario else {})} for row in range(2)]
        record = {"method": method, "tasks": ["T1", "T2"], "metrics": {"T1": "mrr@5", "T2": "mrr@5"},
                  "steps": steps, "complete": True, "scenario": scenario, "variants": variants or {}}
        (folder / "methods" / method / "result.json").write_text(json.dumps(record))

    publish("standard", {}, {})
    publish("timed", {"new_items": 0.1}, {"name": "time-aware", "later": ["T1"]})
    # a grid's single-method run of the same setup: its Conure- row is named in the one caption
    publish("timed-conure", {"new_items": 0.1}, {"name": "time-aware", "later": ["T1"]}, "Conure",
            {"Conure-": {"T1": {"mrr@5": 0.6}, "T2": {"mrr@5": 0.5}}})
    text = leaderboard.generate(tmp_path)
    tables = text.split("### ")[1:]
    assert len(tables) == 2  # two setups: the time-aware run's dataset options differ
    assert sum("Time-aware scenario: past tasks scored on later data" in table for table in tables) == 1
    assert sum(table.split("\n")[0].count("; time-aware scenario") for table in tables) == 1  # in the heading
    assert sum("Conure- scores each task right after its own step" in table for table in tables) == 1
    from bench.results import site

    groups = leaderboard.gather(tmp_path / leaderboard.PUBLISHED)
    assert sorted(site.slugs(groups)) == ["synthetic-quick", "synthetic-quick-time-aware"]  # pages apart, named
    assert "[synthetic quick time-aware](docs/results/synthetic-quick-time-aware.md)" in site.snapshot(
        groups, site.slugs(groups))
    pages = {slug: site.group_page(group, slug, tmp_path / leaderboard.PUBLISHED)
             for group, slug in zip(groups, site.slugs(groups))}
    assert "Dataset options: `new_items=0.1`." in pages["synthetic-quick-time-aware"]
    assert "Dataset options" not in pages["synthetic-quick"]


def test_time_aware_synthetic_data_writes_in_the_ditto_layout(tmp_path):
    from bench.datasets.base import load_dataset
    from bench.datasets.ditto import write_release
    from tests.conftest import TINY_DATA

    options = {**TINY_DATA, "classes": [3], **TIME_AWARE}
    synthetic = load_dataset("synthetic", options)
    write_release(synthetic, tmp_path / "release", seed=1)
    read = load_dataset("ditto", {"class_tasks": [4], "seed": 1}, tmp_path / "release")
    raw = np.array([int(r) for r in read.info["raw_ids"]])
    assert [t.kind for t in read.tasks] == [t.kind for t in synthetic.tasks]
    for before, after in zip(synthetic.tasks, read.tasks):
        if before.later is not None:  # exactly the generator's later split
            assert np.array_equal(raw[after.later.inputs], before.later.inputs)
    with pytest.raises(BenchError, match="targets are not shared item ids"):
        write_release(load_dataset("synthetic", {**options, "shared_item_targets": False}), tmp_path / "other")
    stats = synthetic.statistics()  # bench data info: vocabulary growth per task
    assert [row["known items"] for row in stats] == [40, 44, 48, 52] and stats[-1]["later"] == 0


def test_a_split_beyond_its_tasks_vocabulary_is_one_error(monkeypatch):
    from bench.experiments import runner
    from tests.conftest import TINY_DATA

    dataset = runner.load_dataset("synthetic", {**TINY_DATA, **TIME_AWARE})
    dataset.tasks[1].n_items_known = 41  # T2's sequences hold ids up to 44
    monkeypatch.setattr(runner, "load_dataset", lambda *args: dataset)
    with pytest.raises(BenchError, match=r"task T2-items's train split holds item id 44, beyond the 41 items "
                                         r"the task knows"):
        runner.prepare(tiny_config(methods=["SinMo"]))


def test_the_caption_says_extra_rows_are_never_on_later_data():
    """Conure- scores each task right after its own step (its test split), so in the time-aware
    scenario its row is not the later data its method's row shows: the caption says so."""
    from bench.results.store import MethodRecord
    from bench.results.tables import scenario_caption

    plain = MethodRecord("SinMo", ["T1", "T2"], {"T1": "mrr@5", "T2": "mrr@5"})
    plain.scenario = {"name": "time-aware", "later": ["T1"]}
    assert "Conure-" not in scenario_caption([plain])
    conure = MethodRecord("Conure", ["T1", "T2"], {"T1": "mrr@5", "T2": "mrr@5"})
    conure.scenario, conure.variants = dict(plain.scenario), {"Conure-": {"T1": {"mrr@5": 0.6}}}
    caption = scenario_caption([plain, conure])
    assert caption.startswith("Time-aware scenario: past tasks scored on later data (rows after a task's own step, for T1)")
    assert caption.endswith("Conure- scores each task right after its own step, on its test split "
                            "(as the diagonal), not on later data.")
