"""Bad input is refused, never silently accepted (issue 22, row 5): one test per class.

Empty lists, negative counts and out-of-range seeds are one `error:` line before any file is
written; conflicting labels for one user are named; a loss that grows by orders of magnitude
is flagged; the errors of `train.nonfinite=skip` say what was tried.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest

from bench.cli import build_parser, main
from bench.datasets.base import load_dataset
from bench.datasets.ttl import TTL_FILES
from bench.engine.tasks import Task, TaskKind
from bench.errors import DataFormatError, DivergenceError
from tests.test_cli import assert_one_line_error
from tests.test_datasets import ratings_table, ttl_release, write_release
from tests.test_faults import _fit_with_nan_at

TINY = ["--set", "dataset_options.n_users=100", "--set", "dataset_options.n_items=20",
        "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]", "--epochs", "1", "--quiet"]
TUNE = ["tune", "--method", "SinMo", "--trials", "1"]


def refused(capsys, tmp_path, argv, *fragments):
    """The command is one error line holding the fragments, and wrote nothing."""
    results = tmp_path / "results"
    code = main([argv[0], *TINY, *argv[1:], "--results", str(results)])  # the option tested comes last
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not results.exists(), "nothing is written for refused input"


# ------------------------------------------------------------------ empty lists (and an empty --config)

EMPTY_LISTS = {
    "run --methods": (["run", "--methods", ""], "--methods: expected at least one value"),
    "run --methods commas": (["run", "--methods", " , "], "--methods: expected at least one value"),
    "run --seeds": (["run", "--methods", "SinMo", "--seeds", ""], "--seeds: expected at least one value"),
    "run --orders": (["run", "--methods", "SinMo", "--orders", ""], "--orders: expected at least one value"),
    "run --order": (["run", "--methods", "SinMo", "--order", ""], "--order: expected at least one value"),
    "run --estimate --seeds": (["run", "--methods", "SinMo", "--estimate", "--seeds", ""], "--seeds"),
    "tune --methods": (["tune", "--methods", "", "--trials", "1"], "--methods: expected at least one value"),
    "--set methods=[]": (["run", "--set", "methods=[]"], "config.methods: expected at least 1 entry"),
    "run --config": (["run", "--methods", "SinMo", "--config", ""], "--config: expected a JSON or TOML file"),
}


@pytest.mark.parametrize("argv, fragment", EMPTY_LISTS.values(), ids=EMPTY_LISTS.keys())
def test_an_empty_list_is_refused_not_the_default(capsys, tmp_path, argv, fragment):
    refused(capsys, tmp_path, argv, fragment)


# ------------------------------------------------------------------ counts

def int_options(command: str) -> list[str]:
    """Every option of a command that takes a number: a new one is checked here unasked."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return [action.option_strings[0] for action in sub._actions if action.type in (int, float)]


COUNT_OPTIONS = [("run", option) for option in int_options("run")] + [("tune", option) for option in int_options("tune")]


def test_every_numeric_option_is_listed():
    assert {"--seed", "--epochs", "--fixed-first", "--limit-train-batches"} <= {o for c, o in COUNT_OPTIONS if c == "run"}
    assert {"--trials", "--startup-trials", "--timeout", "--heartbeat"} <= {o for c, o in COUNT_OPTIONS if c == "tune"}


@pytest.mark.parametrize("command, option", COUNT_OPTIONS, ids=[f"{c} {o}" for c, o in COUNT_OPTIONS])
def test_a_negative_count_is_refused(capsys, tmp_path, command, option):
    argv = TUNE if command == "tune" else ["run", "--methods", "SinMo"]
    needs = {"--fixed-first": ["--orders", "all-permutations"]}.get(option, [])  # else refused as unused
    refused(capsys, tmp_path, [*argv, *needs, option, "-3"], "-3")


@pytest.mark.parametrize("argv, fragment", [
    (TUNE[:-1] + ["0"], "--trials 0: expected a number >= 1"),
    ([*TUNE, "--timeout", "0"], "--timeout 0.0: expected a number > 0"),
    (["run", "--methods", "SinMo", "--fixed-first", "1"], "--fixed-first only applies to --orders all-permutations"),
], ids=["tune --trials 0", "tune --timeout 0", "--fixed-first without --orders"])
def test_a_count_that_would_do_nothing_is_refused(capsys, tmp_path, argv, fragment):
    refused(capsys, tmp_path, argv, fragment)


# ------------------------------------------------------------------ seeds

TOO_LARGE = 2**32  # numpy's RandomState (Optuna's samplers) takes 0..2**32-1
SEEDS = {
    "--seed huge": (["run", "--methods", "SinMo", "--seed", "99999999999999999999"], "config.seed: expected a value <= 4294967295"),
    "--seed 2**32": (["run", "--methods", "SinMo", "--seed", str(TOO_LARGE)], "config.seed"),
    "--seeds list": (["run", "--methods", "SinMo", "--seeds", f"0,{TOO_LARGE}"], "--seeds: expected a value <= 4294967295"),
    "--set seed": (["run", "--methods", "SinMo", "--set", f"seed={TOO_LARGE}"], "config.seed"),
    "dataset seed": (["run", "--methods", "SinMo", "--set", f"dataset_options.seed={TOO_LARGE}"],
                     "config.dataset_options.seed"),
    "config file": (["run", "--methods", "SinMo", "--config", "{tmp}/seed.json"], "config.seed"),
    "tune --seed": ([*TUNE, "--seed", "99999999999999999999"], "config.seed"),
}


@pytest.mark.parametrize("argv, fragment", SEEDS.values(), ids=SEEDS.keys())
def test_a_seed_out_of_range_is_refused_before_the_run_exists(capsys, tmp_path, argv, fragment):
    (tmp_path / "seed.json").write_text(json.dumps({"seed": 99999999999999999999}))
    refused(capsys, tmp_path, [arg.replace("{tmp}", str(tmp_path)) for arg in argv], fragment)


def test_the_largest_seed_runs(capsys, tmp_path):
    results = tmp_path / "results"
    assert main(["run", "--methods", "SinMo", "--seed", str(TOO_LARGE - 1), *TINY, "--results", str(results)]) == 0


# ------------------------------------------------------------------ conflicting labels

def test_conflicting_class_labels_are_named(capsys, tmp_path):
    """TTL: the released loader's rule (every line an instance) with a warning naming the file
    and both lines, on every load; MovieLens profiles: an error naming both lines."""
    root = ttl_release(tmp_path / "ttl")
    path = root / "ColdRec" / TTL_FILES[4]  # gender: labels 1 and 2
    lines = path.read_text().splitlines()
    sequence, label = lines[2].split(",,")
    lines.append(f"{sequence},,{3 - int(label)}")
    path.write_text("\n".join(lines) + "\n")
    for _ in range(2):  # a parse, then the cached arrays
        dataset = load_dataset("ttl", {}, root)
        err = capsys.readouterr().err
        assert f"warning: {path}: lines 3 and {len(lines)} give one user the labels" in err, err
        assert "1 user(s) with conflicting labels" in err
    task = dataset.tasks[4]
    assert len(task.train) + len(task.valid) + len(task.test) == len(lines)  # both lines kept, as released

    ratings, users = ratings_table()
    folder = write_release("ml-1m", tmp_path / "ml", ratings, users)
    profile = (folder / "users.dat").read_text().splitlines()
    user, gender, rest = profile[1].split("::", 2)
    profile.append(f"{user}::{'F' if gender == 'M' else 'M'}::{rest}")
    (folder / "users.dat").write_text("\n".join(profile) + "\n")
    with pytest.raises(DataFormatError, match=rf"users\.dat:{len(profile)}: user {user} has gender .* on line 2"):
        load_dataset("movielens", {}, folder)


# ------------------------------------------------------------------ divergence

def test_a_loss_that_grows_by_orders_of_magnitude_is_flagged(capsys, tmp_path):
    results = tmp_path / "results"
    code = main(["run", "--methods", "SinMo", *TINY, "--epochs", "2", "--set", "train.lr=1e6",
                 "--no-t1-cache", "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 0, err  # a warning, not a stop
    assert "warning: task T2-items: the training loss grew from" in err and "lower train.lr" in err
    (logs,) = results.glob("runs/*/methods/SinMo/epochs.json")
    flagged = [log for log in json.loads(logs.read_text()) if log["warnings"]]
    assert flagged and all(any(epoch.get("loss_growth") for epoch in log["epochs"]) for log in flagged)
    from bench.engine.training import loss_growth

    task = Task("T2", TaskKind.ITEM, 3, None, None, None)
    assert loss_growth(task, 0, first=4.0, mean=3.0, previous=None) is None  # learning: no warning
    assert loss_growth(task, 1, first=4.0, mean=3.0, previous=3.5) is None
    assert "from 3.5 (the previous epoch)" in loss_growth(task, 1, first=math.nan, mean=5e3, previous=3.5)


def test_errors_under_nonfinite_skip_say_what_was_tried():
    with pytest.raises(DivergenceError) as caught:
        _fit_with_nan_at(set(range(1, 11)), nonfinite="skip")  # every step of every epoch
    message = str(caught.value)
    assert "all 20 training steps had a non-finite loss and were skipped (train.nonfinite=skip)" in message
    assert "--set train.nonfinite=skip" not in message and "lower train.lr" in message
    with pytest.raises(DivergenceError) as caught:
        _fit_with_nan_at({3}, scores_nan=True, nonfinite="skip")
    message = str(caught.value)
    assert "no epoch has a finite validation score although 2 step(s)" in message
    assert "--set train.nonfinite=skip" not in message
