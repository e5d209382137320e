"""Bad input and faults, as a new user meets them (issue 10): every case is one `error:` line
and exit 2 before any work or run directory, or it works where working is the right answer.

Tables: REJECTED (plain command lines), TTL_FILES_BAD / TTL_FILES_READ (data files),
RESUME_REJECTED (a stored, interrupted run); then the fault cases (read-only results,
Ctrl-C hint, lock, kill -9) and a seeded fuzz test of the TTL loader.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import random
import shlex
import signal
import subprocess
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

from bench.config import apply_override, build_run_config, from_dict, parse_scalar
from bench.datasets.base import load_dataset
from bench.datasets.ttl import TTL_FILES
from bench.errors import BenchError
from bench.registry import METHODS
from bench.results.store import RunStore
from tests.test_cli import assert_one_line_error as assert_one_error, run_cli
from tests.test_datasets import ttl_release

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = ["--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]",
              "--epochs", "1", "--device", "cpu", "--quiet"]
TINY = ["--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20", *TINY_MODEL]


def cli(capsys, *argv):
    return run_cli(capsys, *map(str, argv))


# ---------------------------------------------------------------- command lines

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")

REJECTED = {
    # the table
    "lr is a word": (["--set", "train.lr=fast"], "config.train.lr: expected a number, got 'fast'"),
    "epochs is a word": (["--set", "train.epochs=abc"], "config.train.epochs: expected an integer"),
    "epochs is a fraction": (["--set", "train.epochs=1.5"], "config.train.epochs: expected an integer, got 1.5"),
    "n_users is a word": (["--set", "dataset_options.n_users=ten"], "config.dataset_options.n_users: expected an integer"),
    "negative embedding": (["--set", "backbone.embedding_dim=-4"], "config.backbone.embedding_dim: expected a value >= 1"),
    "--epochs 0": (["--epochs", "0"], "config.train.epochs: expected a value >= 1, got 0"),
    "--epochs -1": (["--epochs", "-1"], "config.train.epochs: expected a value >= 1, got -1"),
    "option typo, method selected": (["--methods", "SinMo,Conure", "--set", "method_options.Conure.prune_ratoi=0.5"],
                                     "config.method_options.Conure: unknown setting(s) prune_ratoi"),
    "option typo, method not selected": (["--methods", "SinMo", "--set", "method_options.Conure.prune_ratoi=0.5"],
                                         "unknown setting(s) prune_ratoi"),
    "option out of range": (["--methods", "SinMo", "--set", "method_options.Conure.prune_ratio=1.5"],
                            "config.method_options.Conure.prune_ratio: expected a value <= 1"),
    "enum option": (["--set", "method_options.PeterRec.insertion=sideways"], "expected one of 'serial', 'parallel'"),
    "method train typo": (["--set", "method_train.HAT.lr=-1"], "config.method_train.HAT.lr: expected a value > 0"),
    "eval split": (["--set", "eval_split=train"], "config.eval_split: expected one of 'test', 'valid'"),
    "first-task lr": (["--set", "train.first_task.lr=0"], "config.train.first_task.lr: expected a value > 0"),
    "list of ints": (["--set", "backbone.dilations=[1,x]"], "config.backbone.dilations[1]: expected an integer"),
    "probability": (["--set", "dataset_options.stay_probability=2"], "stay_probability: expected a value <= 1"),
    "cuda without CUDA": pytest.param(["--device", "cuda"], "CUDA is not available", marks=NO_CUDA),
    "data dir missing": (["--dataset", "ttl", "--data-dir", "{tmp}/nowhere"], "no such directory"),
    "data dir for synthetic": (["--data-dir", "{tmp}"], "dataset 'synthetic' reads no files"),
    "resume with --seeds": (["--resume", "x", "--seeds", "0,1"], "--seeds cannot apply"),
    # what already held
    "unknown method": (["--methods", "SinMo,Nope"], "unknown method 'Nope'"),
    "unknown dataset": (["--dataset", "imaginary"], "unknown dataset 'imaginary'"),
    "repeated task in order": (["--order", "1,2,2,3,4,5"], "distinct task numbers"),
    "order not numbers": (["--order", "1,2,x"], "--order expects"),
    "order out of range": (["--order", "1,2,3,4,5,9"], "between 1 and 6"),
    "config typo": (["--set", "train.epochz=3"], "config.train: unknown setting(s) epochz"),
    "unknown method in options": (["--set", "method_options.Conur.prune_ratio=0.5"], "unknown method 'Conur'"),
    "no such run": (["--resume", "no-such-run"], "no run 'no-such-run'"),
    "config file is a list": (["--config", "{tmp}/list.json"], "list.json: malformed config: expected a table"),
    "config file is binary": (["--config", "{tmp}/binary.json"], "binary.json: malformed config: not UTF-8"),
}


@pytest.mark.parametrize("argv, fragment", REJECTED.values(), ids=REJECTED.keys())
def test_rejected_before_any_work(capsys, tmp_path, argv, fragment):
    results = tmp_path / "results"
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "binary.json").write_bytes(b"\x1f\x8b\x08\xff\xfe")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    settings = TINY_MODEL if "--dataset" in argv else TINY
    code, _, err = cli(capsys, "run", *settings, *argv, "--results", results)
    assert_one_error(code, err, fragment)
    assert not results.exists(), "nothing is made for a rejected configuration"


def test_tune_checks_its_settings_before_making_a_study(capsys, tmp_path):
    results = tmp_path / "results"
    code, _, err = cli(capsys, "tune", "--method", "SinMo", "--trials", "1", "--set", "train.lr=fast",
                       "--results", results)
    assert_one_error(code, err, "config.train.lr: expected a number")
    assert not results.exists()


SCALARS = {".001": 0.001, "1e-4": 1e-4, "1E5": 1e5, "-4": -4, "3": 3, "true": True, "False": False,
           "null": None, "[1,4]": [1, 4], "[a, b]": ["a", "b"], "[]": [], "fast": "fast", "'12'": "12",
           "nan": "nan", "cuda:0": "cuda:0"}


@pytest.mark.parametrize("raw", SCALARS)
def test_set_values_parse_like_yaml(raw):
    value = parse_scalar(raw)
    assert value == SCALARS[raw] and type(value) is type(SCALARS[raw])


def test_a_normal_float_spelling_is_a_float():
    data: dict = {}
    apply_override(data, "train.lr=.001")
    apply_override(data, "train.weight_decay=0")  # an int where a float is due is that float
    config = build_run_config(data)
    assert config.train.lr == 0.001 and config.train.weight_decay == 0.0
    assert isinstance(config.train.weight_decay, float)


def test_every_options_dataclass_is_checked_from_its_annotations():
    """Every method's and dataset's defaults pass their own checks (so the checks can run)."""
    from bench.registry import DATASETS

    for registry in (METHODS, DATASETS):
        for name in registry.names():
            from_dict(registry.get(name).Options, {}, name)


@dataclass
class _Later:
    """Fields of the kinds other settings use, checked from their annotations alone."""

    precision: Literal["fp32", "bf16"] = "fp32"
    limit: int | float | None = field(default=None, metadata={"gt": 0})
    weights: dict[str, float] = field(default_factory=dict, metadata={"min": 0})
    preset: str | None = None


LATER = {
    "enum": ({"precision": "fp16"}, "x.precision: expected one of 'fp32', 'bf16', got 'fp16'"),
    "union range": ({"limit": 0}, "x.limit: expected a value > 0, got 0"),
    "union type": ({"limit": "many"}, "x.limit: expected an integer or a number or null, got 'many'"),
    "dict values": ({"weights": {"a": -1}}, "x.weights.a: expected a value >= 0"),
    "optional text": ({"preset": 3}, "x.preset: expected text, got 3"),
}


@pytest.mark.parametrize("data, message", LATER.values(), ids=LATER.keys())
def test_fields_added_later_are_checked_from_their_annotations(data, message):
    with pytest.raises(BenchError) as caught:
        from_dict(_Later, data, "x")
    assert str(caught.value).startswith(message)


def test_fields_added_later_keep_their_values():
    later = from_dict(_Later, {"precision": "bf16", "limit": 2, "weights": {"a": 1}, "preset": None}, "x")
    assert later == _Later("bf16", 2, {"a": 1.0}, None) and type(later.limit) is int


# ---------------------------------------------------------------- data files

def _ttl(tmp_path: Path) -> tuple[Path, Path]:
    root = ttl_release(tmp_path / "data")
    return root, root / "ColdRec" / TTL_FILES[0]


def _replace_line(data: bytes, number: int, change) -> bytes:
    lines = data.split(b"\n")
    lines[number - 1] = change(lines[number - 1])
    return b"\n".join(lines)


def _zipped(path: Path, data: bytes) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(path.name, data)
    return path.read_bytes()


TTL_FILES_BAD = {
    "ragged": (lambda p, d: _replace_line(d, 5, lambda line: line + b",5"), ":5: ragged line"),
    "non-integer": (lambda p, d: _replace_line(d, 5, lambda line: line.replace(b",", b",x", 1)), ":5: non-integer id"),
    "negative": (lambda p, d: _replace_line(d, 5, lambda line: line.rsplit(b",", 1)[0] + b",-5"), ":5: negative id"),
    "empty": (lambda p, d: b"", "no data lines"),
    "huge id": (lambda p, d: _replace_line(d, 5, lambda line: line.rsplit(b",", 1)[0] + b"," + b"9" * 30),
                ":5: id larger than"),
    # the error-locating path strips the BOM as the fast path does: line 5 is blamed, not line 1
    "BOM and ragged": (lambda p, d: b"\xef\xbb\xbf" + _replace_line(d, 5, lambda line: line + b",5"), ":5: ragged line"),
    "CRLF and ragged": (lambda p, d: _replace_line(d, 5, lambda line: line + b",5").replace(b"\n", b"\r\n"),
                        ":5: ragged line"),
    "gzip and ragged": (lambda p, d: gzip.compress(_replace_line(d, 5, lambda line: line + b",5")), ":5: ragged line"),
    "zip named .csv": (lambda p, d: _zipped(p, d), "is a zip archive, not text"),
    "truncated gzip": (lambda p, d: gzip.compress(d * 50)[:-300], "damaged compressed data"),
}


@pytest.mark.parametrize("change, fragment", TTL_FILES_BAD.values(), ids=TTL_FILES_BAD.keys())
def test_bad_ttl_file_is_one_error_naming_file_and_line(capsys, tmp_path, change, fragment):
    root, path = _ttl(tmp_path)
    path.write_bytes(change(path, path.read_bytes()))
    results = tmp_path / "results"
    code, _, err = cli(capsys, "run", *TINY_MODEL, "--dataset", "ttl", "--data-dir", root, "--results", results)
    assert_one_error(code, err, f"{path}", fragment)
    assert not results.exists()


TTL_FILES_READ = {
    "BOM": lambda d: b"\xef\xbb\xbf" + d,
    "CRLF": lambda d: d.replace(b"\n", b"\r\n"),
    "BOM and CRLF": lambda d: b"\xef\xbb\xbf" + d.replace(b"\n", b"\r\n"),
    "gzip named .csv": gzip.compress,
    "gzip of BOM and CRLF": lambda d: gzip.compress(b"\xef\xbb\xbf" + d.replace(b"\n", b"\r\n")),
}


@pytest.mark.parametrize("change", TTL_FILES_READ.values(), ids=TTL_FILES_READ.keys())
def test_unusual_but_valid_ttl_files_read_the_same(tmp_path, change):
    root, path = _ttl(tmp_path)
    plain = load_dataset("ttl", {"cache": False}, root)
    for name in TTL_FILES:
        target = root / "ColdRec" / name
        target.write_bytes(change(target.read_bytes()))
    changed = load_dataset("ttl", {"cache": False}, root)
    for a, b in zip(plain.tasks, changed.tasks):
        np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
        np.testing.assert_array_equal(a.test.targets, b.test.targets)


# ---------------------------------------------------------------- a stored, interrupted run

@pytest.fixture
def interrupted(tmp_path, capsys, monkeypatch):
    """A SinMoAll run stopped by Ctrl-C after two of six tasks, under a non-default --results."""
    results = tmp_path / "my results"
    method = METHODS.get("SinMoAll")
    original, calls = method.learn, []

    def stopped_at_third_task(self, tasks, context):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, tasks, context)

    with monkeypatch.context() as patch:
        patch.setattr(method, "learn", stopped_at_third_task)
        code, _, err = cli(capsys, "run", "--methods", "SinMoAll", *TINY, "--run-id", "cut", "--results", results)
    assert code == 130
    return results, err


def _steps(results: Path) -> int:
    return len(RunStore.open("cut", results).load_record("SinMoAll").steps)


RESUME_REJECTED = {
    "other methods and epochs": (["--methods", "DNN", "--epochs", "2"],
                                 ["settings differ from the stored run", "methods (stored ['SinMoAll'], given ['DNN'])",
                                  "train.epochs (stored 1, given 2)", "--override"]),
    "other setting": (["--set", "train.lr=0.5"], ["train.lr (stored 0.001, given 0.5)"]),
    "bad setting": (["--set", "train.lr=fast"], ["config.train.lr: expected a number"]),
    "a new run id": (["--run-id", "other"], ["--run-id cannot apply"]),
}


@pytest.mark.parametrize("argv, fragments", RESUME_REJECTED.values(), ids=RESUME_REJECTED.keys())
def test_resume_with_other_settings_is_an_error(capsys, interrupted, argv, fragments):
    results, _ = interrupted
    code, _, err = cli(capsys, "run", "--resume", "cut", *argv, "--results", results)
    assert_one_error(code, err, *fragments)
    assert _steps(results) == 2, "nothing trained"


def test_resume_with_override_records_the_change(capsys, interrupted):
    results, _ = interrupted
    code, _, err = cli(capsys, "run", "--resume", "cut", "--epochs", "2", "--override", "--quiet",
                       "--results", results)
    assert code == 0, err
    directory = results / "runs" / "cut"
    assert json.loads((directory / "config.json").read_text())["train"]["epochs"] == 2
    (entry,) = json.loads((directory / "changes.json").read_text())
    assert entry["changes"] == {"train.epochs": {"stored": 1, "given": 2}}


def test_same_settings_on_resume_are_fine_and_the_hint_runs_verbatim(capsys, interrupted):
    results, err = interrupted
    hint = err.strip().splitlines()[-1]
    assert hint.startswith("interrupted; resume with: python -m bench run --resume cut --results ")
    argv = shlex.split(hint.split("resume with: ", 1)[1])
    assert argv[:3] == ["python", "-m", "bench"] and Path(argv[-1]) == results
    code, out, err = cli(capsys, *argv[3:], "--methods", "SinMoAll", "--epochs", "1")
    assert code == 0, err
    assert "| SinMoAll " in out and RunStore.open("cut", results).load_record("SinMoAll").complete


def test_duplicate_run_id_is_refused(capsys, interrupted):
    results, _ = interrupted
    code, _, err = cli(capsys, "run", "--methods", "SinMoAll", *TINY, "--run-id", "cut", "--results", results)
    assert_one_error(code, err, "run 'cut' exists already")


def test_table_of_an_interrupted_run_shows_its_rows_without_warnings(capsys, interrupted):
    results, _ = interrupted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code, out, err = cli(capsys, "table", "cut", "--results", results)
    assert code == 0 and "Warning" not in err
    row = next(line for line in out.splitlines() if line.startswith("| SinMoAll (partial"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert all(cell != "–" for cell in cells[1:3]), row  # T1 and T2 were scored
    assert all(cell == "–" for cell in cells[3:7]), row  # T3..T6 were not
    assert cells[7] != "–", "Avg over the tasks learnt so far"


@pytest.mark.parametrize("name, fragment", [("config.json", "unreadable run config"),
                                            ("methods/SinMoAll/checkpoint.pt", "unreadable checkpoint")])
def test_a_damaged_run_file_is_one_error(capsys, interrupted, name, fragment):
    results, _ = interrupted
    path = results / "runs" / "cut" / name
    for damaged in (path, path.with_name(path.stem + ".prev" + path.suffix)):  # the previous checkpoint too
        if damaged.exists():  # (only a damaged latest one falls back to it: tests/test_faults.py)
            damaged.write_bytes(damaged.read_bytes()[:40])
    code, _, err = cli(capsys, "run", "--resume", "cut", "--quiet", "--results", results)
    *announced, last = err.strip().splitlines()  # a checkpoint is read once the run has started
    assert_one_error(code, last, str(path), fragment)
    assert all(line.startswith("run cut -> ") for line in announced)


def test_a_run_in_use_is_refused(capsys, interrupted):
    results, _ = interrupted
    holder = RunStore.open("cut", results).lock()
    try:
        code, _, err = cli(capsys, "run", "--resume", "cut", "--results", results)
        assert_one_error(code, err, "run 'cut' is in use by another process")
    finally:
        holder.unlock()
    assert _steps(results) == 2


# ---------------------------------------------------------------- read-only results

@pytest.fixture
def read_only(monkeypatch):
    """Make a folder refuse writes: chmod where that binds, else (as root) the system calls."""

    def apply(folder: Path) -> None:
        folder = Path(folder)
        if os.geteuid() != 0:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o555)
            return
        inside = lambda path: Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve())  # noqa: E731
        real_open, real_mkdir = os.open, os.mkdir

        def refusing_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return real_open(path, flags, *args, **kwargs)

        def refusing_mkdir(path, *args, **kwargs):
            if inside(path):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
        monkeypatch.setattr(os, "mkdir", refusing_mkdir)

    yield apply
    monkeypatch.undo()


def test_read_only_results_folder_is_one_error_before_training(capsys, tmp_path, read_only):
    results = tmp_path / "results"
    results.mkdir()
    read_only(results)
    code, _, err = cli(capsys, "run", "--methods", "SinMo", *TINY, "--results", results)
    assert_one_error(code, err, "cannot write", str(results))
    assert not (results / "runs").exists()


def test_read_only_run_folder_on_resume_is_one_error_before_training(capsys, interrupted, read_only):
    results, _ = interrupted
    read_only(results)
    code, _, err = cli(capsys, "run", "--resume", "cut", "--results", results)
    assert_one_error(code, err, "cannot write", str(results / "runs" / "cut"))
    assert _steps(results) == 2


def test_a_full_disk_mid_run_loses_nothing_finished(capsys, interrupted, monkeypatch):
    """The disk fills while the third step is saved: one error naming the file, the two
    finished steps stay, and a later resume carries on from them."""
    import tempfile

    results, _ = interrupted
    real_mkstemp = tempfile.mkstemp

    def full(*args, prefix="", **kwargs):
        if prefix.startswith(".checkpoint.pt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, prefix=prefix, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkstemp", full)
        code, _, err = cli(capsys, "run", "--resume", "cut", "--quiet", "--results", results)
    *announced, last = err.strip().splitlines()
    checkpoint = results / "runs" / "cut" / "methods" / "SinMoAll" / "checkpoint.pt"
    assert_one_error(code, last, f"cannot write {checkpoint}: No space left on device")
    assert _steps(results) == 2
    code, _, err = cli(capsys, "run", "--resume", "cut", "--quiet", "--results", results)
    assert code == 0, err
    assert RunStore.open("cut", results).load_record("SinMoAll").complete


# ---------------------------------------------------------------- kill -9, twice

def _spawn(results: Path, *argv: str) -> subprocess.Popen:
    """`bench run` in a child that stops itself each time it has stored a step (tests/stopping.py):
    every signal below lands at a known step, whatever the machine's load."""
    from tests import stopping

    return subprocess.Popen(stopping.command("bench.results.store:RunStore.save_record", "bench", "run", *argv,
                                             "--results", results),
                            cwd=REPO, env=stopping.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stopped_at_step(process: subprocess.Popen, results: Path, steps: int) -> None:
    """Wait until the child stops after storing a step, and check it is step `steps`."""
    from tests import stopping

    stopping.wait_stopped(process)
    stored = json.loads((results / "runs" / "k" / "methods" / "SinMoAll" / "result.json").read_text())["steps"]
    assert len(stored) == steps


SLOW_TINY = ["--methods", "SinMoAll", "--set", "dataset_options.n_users=200", "--set", "dataset_options.n_items=30",
             "--set", "backbone.embedding_dim=16", "--set", "backbone.dilations=[1,2]", "--epochs", "2",
             "--set", "train.patience=3", "--device", "cpu", "--quiet"]


@pytest.mark.slow
def test_kill_9_twice_then_resume_is_bit_identical_and_the_lock_dies_with_the_process(capsys, tmp_path):
    from tests import stopping

    results = tmp_path / "results"
    code, _, err = cli(capsys, "run", *SLOW_TINY, "--run-id", "reference", "--results", results)
    assert code == 0, err

    process = _spawn(results, *SLOW_TINY, "--run-id", "k")
    _stopped_at_step(process, results, 1)
    stopping.kill(process)
    process = _spawn(results, "--resume", "k", "--quiet")
    _stopped_at_step(process, results, 2)  # the resumed process, stopped mid-run: it holds the lock
    code, _, err = cli(capsys, "run", "--resume", "k", "--results", results)  # a second, concurrent resume
    assert_one_error(code, err, "run 'k' is in use by another process")
    process.send_signal(signal.SIGCONT)
    _stopped_at_step(process, results, 3)
    stopping.kill(process)

    code, _, err = cli(capsys, "run", "--resume", "k", "--quiet", "--results", results)  # the lock died with it
    assert code == 0, err
    finished = RunStore.open("k", results).load_record("SinMoAll")
    reference = RunStore.open("reference", results).load_record("SinMoAll")
    assert finished.complete and [step["row"] for step in finished.steps] == list(range(6))
    np.testing.assert_array_equal(finished.matrix(), reference.matrix())


# ---------------------------------------------------------------- fuzzing the TTL loader

def _corrupt(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    lines = data.split(b"\n")
    choice = rng.randrange(10)
    if choice == 0:
        return "truncated", data[:rng.randrange(len(data) + 1)]
    if choice == 1:
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return "byte flips", bytes(flipped)
    if choice == 2:
        old, new = rng.choice([(b",", b";"), (b",", b"\t"), (b",,", b","), (b",", b",,"), (b",", b" "), (b"\n", b",")])
        return f"swapped {old!r}->{new!r}", data.replace(old, new, rng.choice([1, 3, -1]))
    if choice == 3:
        number = rng.randrange(len(lines))
        huge = str(rng.choice([2**63, 2**64, 10**30, 2**63 - 1, -(2**63)])).encode()
        tokens = lines[number].split(b",")
        tokens[rng.randrange(len(tokens))] = huge
        lines[number] = b",".join(tokens)
        return "huge id", b"\n".join(lines)
    if choice == 4:
        mixed = [line + (b"\r" if rng.random() < 0.5 else b"") for line in lines]
        return "BOM/CRLF mix", rng.choice([b"\xef\xbb\xbf", b""]) + b"\n".join(mixed)
    if choice == 5:
        number = rng.randrange(len(lines))
        lines.insert(number, rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"", b" ", b",,", b"0", b"\x00"]) + lines[number])
        return "odd bytes at a line start", b"\n".join(lines)
    if choice == 6:
        rng.shuffle(lines)
        return "shuffled lines", b"\n".join(lines[:rng.randrange(len(lines) + 1)])
    if choice == 7:
        return "gzip", gzip.compress(data)[:rng.choice([None, 10, 40])]
    if choice == 8:
        number = rng.randrange(len(lines))
        lines[number] = lines[number].replace(b"0", b"-0", 1).replace(b"1", b"1.5", 1)
        return "signs and decimals", b"\n".join(lines)
    return "blank lines and spaces", b"\n\n".join(line.replace(b",", b" , ") if rng.random() < 0.2 else line
                                                  for line in lines)


def test_fuzzed_ttl_files_load_or_raise_one_line_errors(tmp_path):
    root, _ = _ttl(tmp_path)
    folder = root / "ColdRec"
    pristine = {name: (folder / name).read_bytes() for name in TTL_FILES}
    rng = random.Random(10)
    outcomes = {"loaded": 0, "rejected": 0}
    for case in range(500):
        name = rng.choice(TTL_FILES)
        kind, data = _corrupt(rng, pristine[name])
        (folder / name).write_bytes(data)
        try:
            load_dataset("ttl", {"cache": False}, root)
            outcomes["loaded"] += 1
        except BenchError as error:
            message = str(error)
            assert message and "\n" not in message, (case, kind, name, message)
            outcomes["rejected"] += 1
        except Exception as error:  # noqa: BLE001 - the point of the test
            pytest.fail(f"case {case} ({kind} in {name}) raised {type(error).__name__}: {error}")
        (folder / name).write_bytes(pristine[name])
    assert outcomes["loaded"] > 0 and outcomes["rejected"] > 0, outcomes
