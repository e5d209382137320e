"""Real-format dataset adapters: TTL release files, GroupLens/RecBole MovieLens, caching, CLI."""

from __future__ import annotations

import importlib.util
import io
import os
import time
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import DataFormatError
from bench.registry import DATASETS, METHODS
from bench.engine.tasks import TaskKind
from bench.datasets import grouplens
from bench.datasets.base import load_dataset
from bench.datasets.ttl import TTL_FILES


# ---------------------------------------------------------------- TTL fixtures

WIDTH = 8


def ttl_release(root: Path, n_users: int = 60, seed: int = 0) -> Path:
    """Six files in the released ColdRec layout: raw (large) ids, ',,' before the targets."""
    rng = np.random.default_rng(seed)
    folder = root / "ColdRec"
    folder.mkdir(parents=True)
    lengths = rng.integers(3, WIDTH + 1, n_users)
    sequences = rng.integers(10_000, 10_400, size=(n_users, WIDTH))
    sequences[np.arange(WIDTH)[None, :] < (WIDTH - lengths)[:, None]] = 0
    lines = [",".join(map(str, row)) for row in sequences]
    (folder / TTL_FILES[0]).write_text("\n".join(lines) + "\n")
    plans = [(TTL_FILES[1], 500_000, 40, 0.9), (TTL_FILES[2], 600_000, 30, 0.7),
             (TTL_FILES[3], 1, 8, 1.0), (TTL_FILES[4], 1, 2, 1.0), (TTL_FILES[5], 1, 6, 0.7)]
    for name, base, size, share in plans:
        rows = [i for i in range(n_users) if rng.random() < share]
        body = []
        for i in rows:
            count = 1 if base == 1 else int(rng.integers(1, 3))
            targets = rng.choice(size, count, replace=False) + base
            body.append(lines[i] + ",," + ",".join(map(str, targets)))
        (folder / name).write_text("\n".join(body) + "\n")
    return root


def test_ttl_reads_released_layout(tmp_path):
    root = ttl_release(tmp_path)
    dataset = load_dataset("ttl", {}, root)
    kinds = [task.kind for task in dataset.tasks]
    assert kinds == [TaskKind.NEXT_ITEM] + [TaskKind.ITEM] * 2 + [TaskKind.CLASS] * 3
    assert [task.n_targets for task in dataset.tasks[3:]] == [8, 2, 6]
    raw = np.loadtxt(root / "ColdRec" / TTL_FILES[0], delimiter=",", dtype=np.int64)
    assert dataset.n_items == len(np.unique(raw[raw > 0]))
    t1 = dataset.tasks[0]
    every_t1 = np.concatenate([t1.train.inputs, t1.valid.inputs, t1.test.inputs])
    assert sorted(map(tuple, every_t1)) == sorted(map(tuple, np.where(  # the index is increasing in raw id
        raw > 0, np.searchsorted(np.unique(raw[raw > 0]), raw) + 1, 0)))
    np.testing.assert_array_equal(t1.train.targets, t1.train.inputs[:, -1])
    t1_rows = set(map(tuple, every_t1))
    for task in dataset.tasks[1:]:  # every later instance's input is a T1 user sequence
        assert set(map(tuple, task.train.inputs)) <= t1_rows
    click_lines = (root / "ColdRec" / TTL_FILES[1]).read_text().split()
    assert sum(len(task.split(s)) for task in dataset.tasks[1:2] for s in ("train", "valid", "test")) == \
        sum(len(line.split(",,")[1].split(",")) for line in click_lines)


def test_ttl_reference_split_is_80_5_15(tmp_path):
    dataset = load_dataset("ttl", {}, ttl_release(tmp_path, n_users=200))
    t1 = dataset.tasks[0]
    assert (len(t1.train), len(t1.valid), len(t1.test)) == (160, 10, 30)


def test_ttl_user_split_keeps_a_user_in_one_split_across_tasks(tmp_path):
    dataset = load_dataset("ttl", {"split": "user", "seed": 3}, ttl_release(tmp_path, n_users=200))
    split_of = {}
    for task in dataset.tasks:
        for name in ("train", "valid", "test"):
            for row in map(tuple, task.split(name).inputs):
                assert split_of.setdefault(row, name) == name


def test_ttl_writes_reference_index(tmp_path):
    root = ttl_release(tmp_path)
    load_dataset("ttl", {"cache_dir": str(tmp_path / "c")}, root)
    (index_file,) = (tmp_path / "c").glob("*-index.csv")
    index = eval(index_file.read_text())  # the reference code's own reader does this
    assert index["0"] == 0 and sorted(index.values()) == list(range(len(index)))
    keys = sorted((k for k in index if k != "0"), key=int)
    assert [index[k] for k in keys] == list(range(1, len(keys) + 1))


def _foreign(line: str) -> str:
    """A sequence of known items that is no T1 user's: only the line's last item, padded."""
    last = line.split(",,")[0].split(",")[-1]
    return ",".join(["0"] * (WIDTH - 1) + [last])


def _corrupt(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


TTL_BAD = {
    "wrong delimiter": (0, lambda line: line.replace(",", ";"), "wrong delimiter"),
    "ragged line": (0, lambda line: line + ",5", "ragged line"),
    "non-integer id": (0, lambda line: line.replace(",", ",x", 1), "non-integer id"),
    "negative id": (0, lambda line: line.rsplit(",", 1)[0] + ",-5", "negative id"),
    "padded at the end": (0, lambda line: line.rsplit(",", 1)[0] + ",0", "sequence ends in 0"),
    "no target": (1, lambda line: line.split(",,")[0], "missing ',,'"),
    "unknown user": (3, lambda line: _foreign(line) + ",,1", "not a user sequence"),
    "unknown item": (2, lambda line: ",".join(["0"] * (WIDTH - 1) + ["999"]) + ",,600001", "does not occur"),
}


@pytest.mark.parametrize("case", sorted(TTL_BAD))
def test_ttl_bad_input_names_file_and_line(tmp_path, case, capsys):
    file_index, change, expected = TTL_BAD[case]
    root = ttl_release(tmp_path)
    path = root / "ColdRec" / TTL_FILES[file_index]
    lines = path.read_text().splitlines()
    _corrupt(path, 5, change(lines[4]))
    with pytest.raises(DataFormatError) as caught:
        load_dataset("ttl", {}, root)
    message = str(caught.value)
    assert f"{path}:5:" in message and expected in message and "\n" not in message
    assert main(["data", "info", "ttl", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("[")]  # "[ 0.1s] ttl: reading ..." progress
    assert errors == [err.rstrip().splitlines()[-1]] and f"{path}:5:" in errors[0] and "Traceback" not in err


def test_ttl_missing_file(tmp_path, capsys):
    root = ttl_release(tmp_path)
    (root / "ColdRec" / TTL_FILES[4]).unlink()
    with pytest.raises(DataFormatError, match=TTL_FILES[4]):
        load_dataset("ttl", {}, root)
    assert main(["data", "info", "ttl", "--data-dir", str(root)]) == 2
    assert TTL_FILES[4] in capsys.readouterr().err


def test_ttl_unaligned_users_kept_when_allowed(tmp_path):
    root = ttl_release(tmp_path)
    path = root / "ColdRec" / TTL_FILES[3]
    _corrupt(path, 2, _foreign(path.read_text().splitlines()[1]) + ",,1")
    dataset = load_dataset("ttl", {"require_t1_users": False}, root)
    inputs = np.concatenate([dataset.tasks[3].split(s).inputs for s in ("train", "valid", "test")])
    assert (inputs[:, -2] == 0).sum() >= 1


def test_ttl_cache_hit_and_invalidation(tmp_path):
    root = ttl_release(tmp_path)
    first = load_dataset("ttl", {}, root)
    second = load_dataset("ttl", {}, root)
    assert (first.info["cache"], second.info["cache"]) == ("miss", "hit")
    for a, b in zip(first.tasks, second.tasks):
        np.testing.assert_array_equal(a.test.inputs, b.test.inputs)
        np.testing.assert_array_equal(a.test.targets, b.test.targets)
    path = root / "ColdRec" / TTL_FILES[5]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")  # the file changes: the entry must not be used
    third = load_dataset("ttl", {}, root)
    assert third.info["cache"] == "miss"
    assert sum(len(third.tasks[5].split(s)) for s in ("train", "valid", "test")) == len(lines) - 1
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, same bytes: the key is the content
    assert load_dataset("ttl", {}, root).info["cache"] == "hit"


# ---------------------------------------------------------- MovieLens fixtures

OCCUPATIONS = ["artist", "doctor", "educator", "engineer", "other", "writer"]


def ratings_table(n_users: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        count = int(rng.integers(20, 60))
        items = rng.choice(np.arange(1, 300), count, replace=False)
        stamps = 900_000_000 + rng.permutation(count) * 1000 + user
        for item, stamp in zip(items, stamps):
            rows.append((user, int(item), int(rng.integers(1, 6)), int(stamp)))
    ratings = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    ages = rng.integers(12, 70, n_users)
    users = pd.DataFrame({"user": np.arange(1, n_users + 1), "age": ages,
                          "gender": rng.choice(["M", "F"], n_users),
                          "occupation": rng.choice(OCCUPATIONS, n_users)})
    return ratings, users


def ml1m_code(age: int) -> int:
    return [1, 18, 25, 35, 45, 50, 56][int(np.searchsorted([18, 25, 35, 45, 50, 56], age, side="right"))]


def write_release(kind: str, folder: Path, ratings: pd.DataFrame, users: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    records = ratings.itertuples(index=False)
    if kind == "ml-25m":
        lines = ["userId,movieId,rating,timestamp"] + [f"{u},{i},{r:.1f},{t}" for u, i, r, t in records]
        (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    elif kind == "ml-1m":
        (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in records))
        occupation_code = {name: code for code, name in enumerate(OCCUPATIONS)}
        (folder / "users.dat").write_text("".join(
            f"{u}::{g}::{ml1m_code(a)}::{occupation_code[o]}::55455\n" for u, a, g, o in users.itertuples(index=False)))
    elif kind == "ml-100k":
        (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in records))
        (folder / "u.user").write_text("".join(
            f"{u}|{a}|{g}|{o}|55455\n" for u, a, g, o in users.itertuples(index=False)))
    elif kind == "recbole":
        (folder / "toy.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
            f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in records))
        (folder / "toy.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                         + "".join(f"{u}\t{a}\t{g}\t{o}\t55455\n"
                                                   for u, a, g, o in users.itertuples(index=False)))
    return folder


FORMATS = ["ml-25m", "ml-1m", "ml-100k", "recbole"]


@pytest.mark.parametrize("kind", FORMATS)
def test_movielens_formats_agree(tmp_path, kind):
    ratings, users = ratings_table()
    reference = load_dataset("movielens", {}, write_release("ml-100k", tmp_path / "ref", ratings, users))
    dataset = load_dataset("movielens", {}, write_release(kind, tmp_path / kind, ratings, users))
    expected = 3 if kind == "ml-25m" else 6  # ML-25M has no user profiles
    assert len(dataset.tasks) == expected
    for ours, theirs in zip(dataset.tasks, reference.tasks):
        assert (ours.name, ours.n_targets) == (theirs.name, theirs.n_targets)
        np.testing.assert_array_equal(ours.test.inputs, theirs.test.inputs)
        np.testing.assert_array_equal(ours.test.targets, theirs.test.targets)


def test_movielens_detects_unzipped_subfolder(tmp_path):
    ratings, users = ratings_table()
    write_release("ml-1m", tmp_path / "ml-1m", ratings, users)
    assert "ml-1m" in load_dataset("movielens", {}, tmp_path).info["source"]


def test_movielens_task_derivation(tmp_path):
    """One user, ratings written out of time order: windows follow time, not file order."""
    items = np.arange(101, 121)  # in time order
    ratings = np.array([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 2, 2, 5, 5, 5, 5, 4])
    frame = pd.DataFrame({"user": 1, "item": items, "rating": ratings, "timestamp": 1000 + np.arange(20)})
    other = frame.assign(user=2, item=frame["item"] + 100)
    shuffled = pd.concat([frame, other]).sample(frac=1.0, random_state=0)
    users = pd.DataFrame({"user": [1, 2], "age": [30, 40], "gender": ["M", "F"], "occupation": ["other", "other"]})
    folder = write_release("ml-100k", tmp_path / "one", shuffled, users)
    options = {"max_len": 10, "min_len": 2, "min_future": 5, "targets_per_user": 2, "like_threshold": 5,
               "valid_fraction": 0.0, "test_fraction": 0.5}
    dataset = load_dataset("movielens", options, folder)
    t1, t2, t3 = dataset.tasks[:3]
    sequences = np.concatenate([t1.train.inputs, t1.test.inputs])
    first = sequences[np.argsort(sequences[:, -1])[0]]
    assert first.tolist() == list(range(1, 11))  # items 101..110 are the first ten
    t2_targets = np.concatenate([t2.train.targets, t2.test.targets])
    assert t2.n_targets == 4 and sorted(t2_targets.tolist()) == [0, 1, 2, 3]  # 111,112 and 211,212
    assert t3.n_targets == 4  # first two 5-star items after the T2 span: 113, 116 (and 213, 216)
    assert [task.n_targets for task in dataset.tasks[3:]] == [2, 2, 1]


MOVIELENS_BAD = {
    "ml-1m": ("ratings.dat", 3, "7,8,4,978300760", "expected 4 fields separated by '::'"),
    "ml-100k": ("u.data", 4, "7\tx\t4\t978300760", "item 'x' is not an integer"),
    "ml-25m": ("ratings.csv", 6, "7,8,4", "expected 4 fields"),
    "recbole": ("toy.inter", 2, "7\t8\tfive\t978300760", "rating 'five' is not a number"),
}


@pytest.mark.parametrize("kind", sorted(MOVIELENS_BAD))
def test_movielens_bad_input_names_file_and_line(tmp_path, kind, capsys):
    name, line, text, expected = MOVIELENS_BAD[kind]
    ratings, users = ratings_table()
    folder = write_release(kind, tmp_path / kind, ratings, users)
    _corrupt(folder / name, line, text)
    with pytest.raises(DataFormatError) as caught:
        load_dataset("movielens", {}, folder)
    assert f"{folder / name}:{line}:" in str(caught.value) and expected in str(caught.value)
    assert main(["data", "info", "movielens", "--data-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("[")]  # "[ 0.1s] movielens: reading ..."
    assert errors == [err.rstrip().splitlines()[-1]] and "Traceback" not in err and f":{line}:" in errors[0]


def test_movielens_bad_profile_and_header(tmp_path):
    ratings, users = ratings_table()
    folder = write_release("ml-100k", tmp_path / "p", ratings, users)
    _corrupt(folder / "u.user", 2, "2|thirty|M|other|55455")
    with pytest.raises(DataFormatError, match=r"u\.user:2: age 'thirty'"):
        load_dataset("movielens", {}, folder)
    folder = write_release("recbole", tmp_path / "r", ratings, users)
    _corrupt(folder / "toy.inter", 1, "user_id\titem_id\trating\ttimestamp")
    with pytest.raises(DataFormatError, match=r"toy\.inter:1: header field"):
        load_dataset("movielens", {}, folder)


def test_movielens_empty_directory_says_what_to_do(tmp_path, capsys):
    assert main(["data", "info", "movielens", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ratings.csv" in err and "data fetch" in err and err.count("\n") == 1


def test_movielens_cache_hit_and_invalidation(tmp_path):
    ratings, users = ratings_table()
    folder = write_release("ml-25m", tmp_path / "m", ratings, users)
    assert load_dataset("movielens", {}, folder).info["cache"] == "miss"
    assert load_dataset("movielens", {}, folder).info["cache"] == "hit"
    assert load_dataset("movielens", {"seed": 5}, folder).info["cache"] == "hit"  # splits are not cached
    assert load_dataset("movielens", {"max_len": 20}, folder).info["cache"] == "miss"
    with open(folder / "ratings.csv", "a") as handle:
        handle.write("1,299,5.0,999999999\n")
    assert load_dataset("movielens", {}, folder).info["cache"] == "miss"
    assert load_dataset("movielens", {"cache": False}, folder).info["cache"] == "off"


# ------------------------------------------------------------------ fetch

def _zip_of(folder_name: str, files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, text in files.items():
            bundle.writestr(f"{folder_name}/{name}", text)
    return buffer.getvalue()


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_fetch_verifies_md5_and_unpacks(tmp_path, monkeypatch):
    import hashlib

    payload = _zip_of("ml-100k", {"u.data": "1\t2\t3\t4\n", "u.user": "1|24|M|other|1\n"})
    release = grouplens.Release("ml-100k.zip", hashlib.md5(payload).hexdigest())
    monkeypatch.setitem(grouplens.RELEASES, "movielens-100k", release)
    requested = []
    monkeypatch.setattr(grouplens.urllib.request, "urlopen",
                        lambda url, timeout: requested.append(url) or _Response(payload))
    assert main(["data", "fetch", "movielens-100k"]) == 0
    folder = Path(os.environ["BENCH_DATA"]) / "ml-100k"
    assert (folder / "u.data").read_text() == "1\t2\t3\t4\n"
    assert requested == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert not list(folder.parent.glob("*.zip*"))  # archive and partial download removed


def test_fetch_rejects_wrong_md5(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(grouplens.urllib.request, "urlopen", lambda url, timeout: _Response(b"not the zip"))
    assert main(["data", "fetch", "movielens-1m"]) == 2
    err = capsys.readouterr().err
    assert "c4d9eecfca2ab87c1945afe126590906" in err and err.count("\n") == 1


def test_fetch_offline_says_where_to_put_files(monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(grouplens.urllib.request, "urlopen", offline)
    assert main(["data", "fetch", "movielens-25m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(Path(os.environ["BENCH_DATA"]) / "ml-25m") in err
    assert "Traceback" not in err


def test_published_checksums_are_recorded():
    assert grouplens.RELEASES["movielens-25m"].md5 == "6b51fb2759a8657d3bfcbfc42b592ada"
    assert grouplens.RELEASES["movielens-100k"].md5 == "0e33842e24a9c977be4e0107933c0723"


# ------------------------------------------------- the real ML-100K (RecBole's copy)

def recbole_ml100k() -> Path:
    """RecBole's wheel ships ML-100K as atomic files; found without importing recbole."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole==1.2.1)")
    folder = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        pytest.skip(f"{folder} has no ml-100k.inter")
    return folder


def test_real_ml100k_info(capsys):
    folder = recbole_ml100k()
    assert main(["data", "info", "movielens", "--data-dir", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "T6-occupation" in out and "943" in out
    dataset = load_dataset("movielens", {}, folder)
    stats = {row["task"]: row for row in dataset.statistics()}
    assert stats["T1"]["instances"] == 943  # every ML-100K user has at least 20 ratings
    assert (stats["T4"]["|Y|"], stats["T5"]["|Y|"], stats["T6"]["|Y|"]) == (7, 2, 21)
    assert dataset.seq_len == 30


@pytest.mark.slow
def test_real_ml100k_end_to_end(tmp_path):
    from bench.config import build_run_config
    from bench.experiments.runner import run
    from bench.results.store import RunStore

    folder = recbole_ml100k()
    config = build_run_config({
        "dataset": "movielens", "data_dir": str(folder), "methods": ["SinMo", "FineSmax"],
        "device": "cpu", "backbone": {"embedding_dim": 16, "dilations": [1]},
        "train": {"epochs": 1, "batch_size": 512, "eval_batch_size": 2048},
    })
    store = RunStore.create(config.to_dict(), tmp_path / "results", "e2e")
    records = run(config, store, progress=False)
    assert [record.method for record in records] == ["SinMo", "FineSmax"]
    for record in records:
        R = record.matrix()
        assert R.shape == (6, 6) and record.complete
        lower = R[np.tril_indices(6)]
        assert np.isfinite(lower).all(), record.method
        assert ((lower >= 0) & (lower <= 1)).all()


def test_item_index_dense_and_sparse_agree():
    from bench.datasets.item_index import DENSE_LIMIT, ItemIndex

    raw = np.array([[0, 7, 3], [3, 9, 0]])
    for offset in (0, DENSE_LIMIT):  # small ids use the lookup table, huge ones sorting
        shifted = np.where(raw > 0, raw + offset, 0)
        index = ItemIndex(shifted)
        mapped, unknown = index.map(np.array([[0, 3 + offset, 9 + offset, 5 + offset, 2 * DENSE_LIMIT]]))
        assert index.ids.tolist() == [3 + offset, 7 + offset, 9 + offset]
        assert mapped[0, :3].tolist() == [0, 1, 3] and unknown.tolist() == [[False, False, False, True, True]]


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_method_defaults_name_real_methods_and_options(dataset):
    from bench.config import from_dict

    for method, options in DATASETS.get(dataset).method_defaults.items():
        cls = METHODS.get(method)
        assert cls.registered_name == method
        from_dict(cls.Options, options)  # raises on an option the method does not have


@pytest.mark.slow
def test_ml100k_selection_strands_no_class_head(tmp_path):
    """Issue 11: on ML-100K's small validation split (47 users) a flat validation metric used to
    stop training at epoch 1 and leave a head below chance. With ties broken by validation loss
    and min_epochs, no class head of FineSmax/FineAll ends below 1/|Y|, and no head stops while
    its validation loss is still falling."""
    import json

    from bench.config import build_run_config
    from bench.engine.tasks import TaskKind
    from bench.experiments.runner import prepare, run
    from bench.results.store import RunStore

    folder = recbole_ml100k()
    config = build_run_config({
        "dataset": "movielens", "data_dir": str(folder), "methods": ["FineSmax", "FineAll"],
        "device": "cpu", "order": [1, 4, 5, 6], "backbone": {"embedding_dim": 16, "dilations": [1, 4]},
        "train": {"epochs": 6, "batch_size": 128, "lr": 1e-3, "patience": 2, "min_epochs": 2,
                  "eval_batch_size": 2048, "first_task": {"epochs": 2}},
    })
    _, tasks, _ = prepare(config)
    store = RunStore.create(config.to_dict(), tmp_path, "selection")
    records = run(config, store, progress=False)
    tolerance = 0.01  # relative fall of the validation loss in the last epoch
    for record in records:
        final = record.matrix()[-1]
        for position, task in enumerate(tasks):
            if task.kind is TaskKind.CLASS:
                assert final[position] >= 1 / task.n_targets, (record.method, task.name, final[position])
        logs = json.loads((store.method_dir(record.method) / "epochs.json").read_text())
        assert {log["task"] for log in logs} >= {t.name for t in tasks if t.kind is TaskKind.CLASS}
        for log in logs:
            losses = [epoch["valid_loss"] for epoch in log["epochs"]]
            assert len(losses) >= min(2, config.train.epochs)  # min_epochs
            if len(losses) < config.train.epochs:  # stopped early
                assert losses[-1] >= losses[-2] * (1 - tolerance), (record.method, log["task"], losses)
def test_synthetic_generator_at_a_moderate_size():
    """Shapes, id ranges and split layout of a larger generation (TTL size is a benchmark)."""
    from bench.datasets.synthetic import SyntheticOptions, generate

    options = SyntheticOptions(n_users=20000, n_items=5000, seq_len=50, seed=1)
    data = generate(options)
    again = generate(SyntheticOptions(n_users=20000, n_items=5000, seq_len=50, seed=1))
    sizes = {"test": 2000, "valid": 2000, "train": 16000}
    for task, same in zip(data.tasks, again.tasks):
        rounds = options.targets_per_user if task.kind.value == "item" else 1
        for name, size in sizes.items():
            split = task.split(name)
            assert split.inputs.shape == (size * rounds, 50) and len(split.targets) == size * rounds
            assert split.inputs.dtype == np.int32 and 0 <= split.inputs.min() and split.inputs.max() <= 5000
            assert 0 <= split.targets.min() and split.targets.max() < task.output_size
            assert np.array_equal(split.inputs, same.split(name).inputs)
            assert np.array_equal(split.targets, same.split(name).targets)
    first = data.tasks[0].train
    assert (first.inputs[:, 25:] > 0).all()  # at least half of every sequence is real items
    assert (first.inputs[:, 0] == 0).mean() > 0.5  # most sequences are left padded
    assert np.array_equal(first.targets, first.inputs[:, -1])
    # the same users in the same order in every one-row-per-user task, twice over in T2/T3
    assert np.array_equal(data.tasks[3].train.inputs, first.inputs)
    assert np.array_equal(data.tasks[1].train.inputs, np.concatenate([first.inputs] * 2))
    test_users = {row.tobytes() for row in data.tasks[0].test.inputs}
    assert not test_users & {row.tobytes() for row in first.inputs[:2000]}


def test_ttl_accepts_both_spellings_and_names_the_missing_file(tmp_path, capsys):
    root = ttl_release(tmp_path)
    folder = root / "ColdRec"
    for name in TTL_FILES[1:3]:
        (folder / name).rename(folder / name.replace("nosuerID", "nouserID"))
    reference = load_dataset("ttl", {"cache": False}, root)
    assert [len(task.train) for task in reference.tasks[1:3]] > [0, 0]
    (folder / TTL_FILES[2].replace("nosuerID", "nouserID")).unlink()
    with pytest.raises(DataFormatError) as error:
        load_dataset("ttl", {"cache": False}, root)
    message = str(error.value)
    assert str(folder / TTL_FILES[2]) in message and "nouserID" in message
    (folder / TTL_FILES[5]).unlink()  # the first missing file is named, in the folder that has the rest
    capsys.readouterr()  # the loads above announced their files
    assert main(["data", "info", "ttl", "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(folder / TTL_FILES[2]) in err


def test_ttl_reads_an_export_in_the_released_names(tmp_path):
    from bench.datasets.synthetic import SyntheticOptions, generate
    from bench.datasets.ttl import write_release

    data = generate(SyntheticOptions(n_users=300, n_items=50, seq_len=10))
    write_release(data, tmp_path / "ColdRec")
    loaded = load_dataset("ttl", {"cache": False}, tmp_path)
    sequences = np.concatenate([data.tasks[0].split(s).inputs for s in ("train", "valid", "test")])
    assert loaded.n_items == len(np.unique(sequences[sequences > 0]))
    for original, task in zip(data.tasks, loaded.tasks):
        assert task.kind == original.kind
        total = sum(len(original.split(s)) for s in ("train", "valid", "test"))
        assert sum(len(task.split(s)) for s in ("train", "valid", "test")) == total


@pytest.mark.parametrize("split", ["reference", "user"])
def test_statistics_from_tables_equal_those_of_the_built_dataset(tmp_path, split):
    from bench.datasets.ttl import TTL, TTLOptions

    root = ttl_release(tmp_path)
    path = root / "ColdRec" / TTL_FILES[3]
    _corrupt(path, 2, _foreign(path.read_text().splitlines()[1]) + ",,1")  # a user only T4 has
    tables = TTL.tables(TTLOptions(split=split, require_t1_users=False), root)
    expected = tables.build().statistics()
    assert tables.statistics() == expected
    assert expected[0]["|X|"] > 0 and expected[3]["instances"] > 0
