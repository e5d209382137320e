"""benchmarks/parity_ditto.py and benchmarks/ditto_release_data.py: the data writer's layout, the
edits made to a copy of the released scripts, the score parsing and the comparison (the runs
themselves take minutes and are made by hand)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("parity_ditto", ROOT / "benchmarks" / "parity_ditto.py")
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)
from ditto_release_data import ReleaseDataOptions, write_release_data  # noqa: E402

SMALL = dict(users=300, items=40, new_items=16, seq_len=8, seed=3)
MODEL_PARA = "model_para = {'dilated_channels': 256, 'dilations': [1,4,1,4,1,4,1,4,], 'kernel_size': 3}\n"
FAKE = {
    "train_task1.py": MODEL_PARA + "targets = torch.LongTensor(b[:, 1:]).view([-1])\n",
    "train_ditto.py": parity.TORCHMETRICS + "\n" + MODEL_PARA + MODEL_PARA,
    "inference_past_tasks_update.py": MODEL_PARA,
    "ditto.py": "a = e(torch.tensor([0]).to(t.get_device()))\nt = torch.tensor([t_]).to(device)\n",
    "generator_hat_other.py": "a = e(torch.tensor([0]).to(t.get_device()))\nm = self.mask(torch.tensor([t]).to(device),s)\n",
    "utils.py": parity.TORCHMETRICS + "\n    neg_target = np.random.choice(len_items, target.shape[0]*args.n_neg,p=p)\n",
    "data_loader.py": "",
}


def read(path: Path) -> list[tuple[list[str], list[str]]]:
    """(sequence, targets) per line; T1-format lines have no targets."""
    rows = []
    for line in path.read_text().splitlines():
        source, _, targets = line.partition(",,")
        rows.append((source.split(","), targets.split(",") if targets else []))
    return rows


def test_the_writer_makes_the_release_layout_with_new_items_and_later_files(tmp_path):
    paths = write_release_data(tmp_path / "data", ReleaseDataOptions(**SMALL))
    assert [p.name for p in paths] == ["task1.csv", "task2.csv", "task3.csv", "task4.csv",
                                      "task1_inference.csv", "task2_inference.csv", "task3_inference.csv"]
    files = {p.name: read(p) for p in paths}
    assert all(len(rows) == SMALL["users"] for rows in files.values())
    assert all(len(seq) == SMALL["seq_len"] for rows in files.values() for seq, _ in rows)
    t1 = {item for seq, _ in files["task1.csv"] for item in seq}
    assert "0" in t1 and all(not targets for _, targets in files["task1.csv"])  # padding: T1's id 0
    assert [len(t) for _, t in files["task2.csv"]] == [2] * SMALL["users"]  # two targets per user
    # later item tasks bring items T1 never saw, in sequences and among the targets
    known = set(t1)
    for name in ("task2.csv", "task3.csv"):
        items = {i for seq, targets in files[name] for i in seq + targets}
        assert items - known, name
        known |= items
    class_seq = {i for seq, _ in files["task4.csv"] for i in seq}
    known |= class_seq
    assert {label for _, t in files["task4.csv"] for label in t} == {"0", "1", "2", "3"}
    # T1's later data brings never-trained items, but only in the inputs; the other past tasks'
    # later data stays inside the final dictionary (the released inference script needs both)
    later_t1 = files["task1_inference.csv"]
    assert {i for seq, _ in later_t1 for i in seq[:-1]} - known
    assert {seq[-1] for seq, _ in later_t1} <= known
    for name in ("task2_inference.csv", "task3_inference.csv"):
        assert {i for seq, targets in files[name] for i in seq + targets} <= known, name


def test_the_writer_is_reproducible_and_cached(tmp_path):
    first = write_release_data(tmp_path / "a", ReleaseDataOptions(**SMALL))
    second = write_release_data(tmp_path / "b", ReleaseDataOptions(**SMALL))
    assert [p.read_text() for p in first] == [p.read_text() for p in second]
    other = write_release_data(tmp_path / "c", ReleaseDataOptions(**{**SMALL, "seed": 4}))
    assert first[1].read_text() != other[1].read_text()
    (tmp_path / "a" / "task1.csv").write_text("kept\n")  # DONE.json matches: nothing is rewritten
    write_release_data(tmp_path / "a", ReleaseDataOptions(**SMALL))
    assert (tmp_path / "a" / "task1.csv").read_text() == "kept\n"


def test_bad_writer_options_are_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match="error: one targets-per-user count"):
        write_release_data(tmp_path, ReleaseDataOptions(**SMALL, tasks=["item", "class"]))
    with pytest.raises(SystemExit, match="error: tasks are"):
        write_release_data(tmp_path, ReleaseDataOptions(**SMALL, tasks=["rating"], targets=[]))


def fake_release(directory: Path) -> Path:
    directory.mkdir()
    for name, text in FAKE.items():
        (directory / name).write_text(text)
    return directory


def check_edited_copy(source: Path, copy: Path) -> None:
    for name in parity.SCRIPTS:
        text = (copy / name).read_text()
        assert "'dilated_channels': 64" in text and "'dilations': [1, 4]" in text
        assert "'dilated_channels': 256" not in text, name  # every occurrence (train_ditto.py has two)
    assert ".view([-1])" not in (copy / "train_task1.py").read_text()
    for name in ("ditto.py", "generator_hat_other.py"):
        text = (copy / name).read_text()
        assert "get_device" not in text and "to(x.device)" in text
        assert "torch.tensor([t_]).to(device)" not in text and "torch.tensor([t]).to(device)" not in text
    for name in ("train_ditto.py", "utils.py"):
        assert "torchmetrics" not in (copy / name).read_text()
        assert "def pairwise_cosine_similarity(x, y):" in (copy / name).read_text()
    assert "dilated_channels" in (copy / "EDITS.txt").read_text()


def test_the_copy_gets_the_listed_edits_and_the_checkout_is_untouched(tmp_path):
    source = fake_release(tmp_path / "DITTO")
    parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])
    check_edited_copy(source, tmp_path / "copy")
    assert all((source / name).read_text() == text for name, text in FAKE.items())


@pytest.mark.skipif(not os.environ.get("DITTO_CHECKOUT"),
                    reason="set DITTO_CHECKOUT to a checkout of seungyoon-Choi/DITTO_official to check the edits on it")
def test_the_edits_apply_to_the_released_files(tmp_path):
    source = Path(os.environ["DITTO_CHECKOUT"])
    before = {p.name: p.read_text() for p in source.glob("*.py")}
    parity.patch_copy(source, tmp_path / "copy", 64, [1, 4], tuple(parity.CAUSE_EDITS))
    check_edited_copy(source, tmp_path / "copy")
    assert {p.name: p.read_text() for p in source.glob("*.py")} == before


def test_the_cosine_replacement_equals_torchmetrics_arithmetic():
    import torch

    namespace = {}
    exec(parity.COSINE, namespace)
    x, y = torch.randn(3, 5), torch.randn(4, 5)
    expected = torch.nn.functional.cosine_similarity(x[:, None, :], y[None, :, :], dim=-1)
    assert torch.allclose(namespace["pairwise_cosine_similarity"](x, y), expected, atol=1e-6)
    same = namespace["pairwise_cosine_similarity"](x, x)
    assert torch.allclose(torch.diagonal(same), torch.ones(3))  # y given: the diagonal is kept


def test_a_cause_edit_is_applied_only_when_named(tmp_path):
    source = fake_release(tmp_path / "DITTO")
    parity.patch_copy(source, tmp_path / "plain", 64, [1, 4])
    assert ",p=p)" in (tmp_path / "plain" / "utils.py").read_text()
    parity.patch_copy(source, tmp_path / "variant", 64, [1, 4], ("t1-uniform-test",))
    assert ",p=p)" not in (tmp_path / "variant" / "utils.py").read_text()
    assert "np.random.choice(len_items, target.shape[0]*args.n_neg)" in (tmp_path / "variant" / "utils.py").read_text()
    assert "t1-uniform" not in (tmp_path / "plain" / "EDITS.txt").read_text()
    assert "p=p" in (tmp_path / "variant" / "EDITS.txt").read_text()


def test_a_release_without_the_expected_lines_is_refused(tmp_path):
    source = fake_release(tmp_path / "DITTO")
    (source / "utils.py").write_text("import torch\n")
    with pytest.raises(SystemExit, match="utils.py .* has no `from torchmetrics"):
        parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])
    (source / "ditto.py").unlink()
    with pytest.raises(SystemExit, match="not a DITTO_official checkout"):
        parity.patch_copy(source, tmp_path / "copy", 64, [1, 4])


def test_the_released_schedule_names_the_class_tasks_and_the_hard_coded_paths():
    commands = parity.released_commands(Path("/src"), Path("/data"), ["item", "item", "class"], 2, 3, 4)
    assert [Path(c[1]).name for c in commands] == ["train_task1.py"] + ["train_ditto.py"] * 3 + \
        ["inference_past_tasks_update.py"] * 3
    t4 = commands[3]
    assert t4[t4.index("--classification") + 1] == "1" and t4[t4.index("--classification_task") + 1] == "4"
    assert t4[t4.index("--paths") + 1] == "./saved_models/task3_abl6.t7"  # the names train_ditto.py L155 reads
    assert commands[1][commands[1].index("--classification") + 1] == "0"
    ablated = parity.released_commands(Path("/src"), Path("/data"), ["item", "class"], 0, 1, 1, ("--fkt", "0"))
    assert [c[-2:] == ["--fkt", "0"] for c in ablated] == [False, True, True, False, False]  # train_ditto.py only
    final_t1 = commands[4]
    assert final_t1[final_t1.index("--datapath") + 1] == "/data/task1_inference.csv"
    assert final_t1[final_t1.index("--paths") + 1] == "./saved_models/task4_abl6.t7"


def test_scores_are_read_from_the_scripts_logs():
    ranked = "epoch: 0\nAccuracy mrr_5: 0.25\nepoch: 2\nAccuracy mrr_5: 0.5\nAccuracy mrr_20: 0.6\n"
    assert parity.last_score(ranked) == 0.5
    assert parity.last_score("epoch:0    accuracy(hit@1):51.823    best:51.823") == pytest.approx(0.51823)
    with pytest.raises(RuntimeError):
        parity.last_score("nothing")
    record = {"tasks": ["a", "b"], "metrics": {"a": "mrr@5", "b": "accuracy"},
              "steps": [{"row": 0, "scores": {"a": {"mrr@5": 0.3}}},
                        {"row": 1, "scores": {"a": {"mrr@5": 0.25}, "b": {"accuracy": 0.7}}}]}
    assert parity.matrix_rows(record, 2) == {"diagonal": [0.3, 0.7], "final": [0.25, 0.7]}


def test_the_comparison_uses_the_larger_of_002_and_the_combined_std():
    from parity_teracon import compare  # the one criterion both parity benchmarks use

    diff, tolerance, ok = compare((0.5, 0.03), (0.54, 0.04))
    assert diff == pytest.approx(0.04) and tolerance == pytest.approx(0.05) and ok
    assert not compare((0.5, 0.03), (0.44, 0.04))[2]
    assert compare((0.5, 0.0), (0.53, 0.0))[1:] == (0.02, False)
    released = [{"final": [0.5] * 4, "diagonal": [0.6] * 4}, {"final": [0.7] * 4, "diagonal": [0.6] * 4}]
    harness = [{"final": [0.6] * 3 + [0.2], "diagonal": [0.63] * 4}] * 2
    table = parity.report(released, harness, "x", ["item", "item", "class"])
    final, diagonal = table.split("diagonal row")
    assert "T4 accuracy" in final and "T2 MRR@5" in final
    assert "| difference | +0.000 | +0.000 | +0.000 | -0.400 |" in final
    assert "yes (0.141)" in final and "NO (0.141)" in final  # std 0.141 on the released side
    assert "NO (0.020)" in diagonal  # 0.03 apart, no spread: 0.02 applies


def test_the_released_bpr_pairs_negatives_with_other_users_positives_and_the_edit_fixes_it():
    """The cause `bpr-pairs` measures: train_task1.py's lines as released pair negative m with the
    positive of user m mod N; the edited line pairs it with its own user's (as the harness does)."""
    import torch

    files, old, new = parity.CAUSE_EDITS["bpr-pairs"]
    n, users = 99, 3
    own = torch.tensor([1.0, 2.0, 3.0])  # each user's positive score

    def used(line: str) -> torch.Tensor:
        namespace = {"pos_logits": own.clone()}
        exec(line.strip(), namespace)
        return namespace["pos_logits"].squeeze(0)

    per_negative = own.repeat_interleave(n)  # the negatives come row by row (outputs_dup)
    assert files == ("train_task1.py",)
    assert used(old).shape == (users * n,) and not torch.equal(used(old), per_negative)
    assert torch.equal(used(old)[:users], own)  # tiled: p1, p2, p3, p1, ...
    assert torch.equal(used(new), per_negative)


def test_the_ditto_adapter_reads_the_written_data_as_a_time_aware_sequence(tmp_path):
    """The files the benchmark gives both sides parse as DITTO's scenario: vocabularies that grow
    task by task, item tasks on the shared dictionary, later data for every past task, and T1's
    later inputs holding items no task trained (its targets known ones)."""
    import numpy as np

    from bench.datasets.base import load_dataset
    from bench.engine.tasks import TaskKind

    write_release_data(tmp_path / "data", ReleaseDataOptions(**SMALL))
    dataset = load_dataset("ditto", {"class_tasks": [4], "seed": 0}, tmp_path / "data")
    kinds = [task.kind for task in dataset.tasks]
    assert kinds == [TaskKind.NEXT_ITEM, TaskKind.ITEM, TaskKind.ITEM, TaskKind.CLASS]
    known = [task.n_items_known for task in dataset.tasks]
    assert known[0] < known[1] < known[2] <= known[3]  # T2 and T3 bring new items
    assert all(task.shared_targets for task in dataset.tasks[1:3]) and dataset.tasks[3].n_targets == 4
    assert [task.later is not None for task in dataset.tasks] == [True, True, True, False]
    t1_later = dataset.tasks[0].later.inputs
    assert t1_later[:, :-1].max() > known[-1] and t1_later[:, -1].max() <= known[-1]
    for task in dataset.tasks[1:3]:
        assert task.later.inputs.max() <= known[-1] and task.later.targets.max() <= known[-1]
    n = SMALL["users"] * 2  # T2: two targets per user, split 80/5/15 as train_ditto.py
    dev = -int(0.2 * n)
    assert len(dataset.tasks[1].test.targets) == -int(dev * 0.75)  # test = samples[int(dev * 0.75):]
    assert np.all(dataset.tasks[1].train.targets >= 1)
