"""Presets (issue 11): `paper` = the released settings, `quick` = the small default of the
embedded data; preset < dataset method_defaults < the user's settings."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.config import build_run_config
from bench.errors import BenchError


def test_default_preset_depends_on_the_dataset():
    assert build_run_config({}).preset == "quick"
    ttl = build_run_config({"dataset": "ttl", "data_dir": "x"})
    assert ttl.preset == "paper"
    assert build_run_config({"dataset": "movielens"}).preset == "paper"
    quick = build_run_config({"preset": "quick", "dataset": "ttl"})
    assert quick.backbone.embedding_dim == 64 and quick.method_train == {"DITTO": {"lr": 5e-4, "first_task": {"lr": 1e-2}}}


def test_quick_preset_keeps_teracon_retention_on_and_paper_keeps_the_code_rule():
    """At 128-row batches int(r_i * batch) is 0 rows for related tasks: the quick preset rounds
    stochastically; the paper preset (batch 1024) keeps the released int()."""
    assert build_run_config({}).method_options["TERACON"]["rows"] == "expected"
    assert "rows" not in build_run_config({"preset": "paper"}).method_options["TERACON"]
    from bench.registry import METHODS
    assert METHODS.options("TERACON+int", build_run_config({}).method_options)["rows"] == "int"


def test_paper_preset_holds_the_released_settings():
    config = build_run_config({"dataset": "ttl", "preset": "paper"})
    assert config.backbone.embedding_dim == 256 and config.backbone.dilations == [1, 4] * 4
    first, later = config.train.for_task(True), config.train.for_task(False)
    assert (first.batch_size, first.lr, first.epochs, first.patience) == (32, 1e-3, 10, 5)
    assert (later.batch_size, later.lr, later.epochs, later.patience) == (1024, 1e-4, 100, 5)
    assert config.method_options["HAT"] == {"smax": 400.0, "c": 0.75}
    assert config.method_options["PeterRec"]["bottleneck_dim"] == 256 // 4
    assert config.method_train["TERACON"]["lr"] == 1e-3
    assert config.method_train["Conure"]["batch_size"] == 512


def test_user_settings_override_the_preset_and_its_specific_values():
    config = build_run_config({"dataset": "ttl", "train": {"epochs": 1, "lr": 0.01},
                               "backbone": {"embedding_dim": 32},
                               "method_options": {"hat": {"smax": 100.0}}})
    assert config.backbone.embedding_dim == 32 and config.backbone.dilations == [1, 4] * 4
    assert config.train.for_task(True).epochs == 1  # --epochs also means T1's epochs
    assert config.train.for_task(True).lr == 0.01
    assert config.train.for_task(True).batch_size == 32  # not set by the user: the preset's
    assert "epochs" not in config.method_train["Conure"] and "lr" not in config.method_train["TERACON"]
    assert config.method_options["HAT"] == {"smax": 100.0, "c": 0.75}
    assert config.method_options["PeterRec"]["bottleneck_dim"] == 32 // 4  # follows the user's d


def test_a_method_override_the_user_empties_is_gone():
    """The user's train values replace DITTO's whole quick-preset override; an empty
    {"first_task": {}} left behind would still be a method_train entry in the run's config."""
    config = build_run_config({"preset": "quick", "dataset": "ttl", "train": {
        "lr": 5e-4, "first_task": {"lr": 1e-2}}})
    assert "DITTO" not in config.method_train
    kept = build_run_config({"preset": "quick", "dataset": "ttl", "train": {"first_task": {"lr": 1e-2}}})
    assert kept.method_train == {"DITTO": {"lr": 5e-4}}


def test_dataset_defaults_sit_between_preset_and_user(monkeypatch):
    from bench.datasets.synthetic import Synthetic

    monkeypatch.setattr(Synthetic, "method_defaults", {"TERACON": {"smax": 20.0, "alpha": 3.0}})
    config = build_run_config({"preset": "paper", "method_options": {"TERACON": {"alpha": 1.0}}})
    assert config.method_options["TERACON"]["smax"] == 20.0  # dataset over preset (50)
    assert config.method_options["TERACON"]["alpha"] == 1.0  # user over dataset


def test_resolved_config_rebuilds_unchanged():
    config = build_run_config({"dataset": "ttl", "train": {"epochs": 3}})
    assert build_run_config(config.to_dict()) == config  # --resume and sweeps compare exactly this


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(BenchError, match="unknown preset 'fast'"):
        build_run_config({"preset": "fast"})


def test_cli_records_the_preset(tmp_path, capsys):
    results = tmp_path / "r"
    assert main(["run", "--methods", "FineSmax", "--epochs", "1", "--set", "dataset_options.n_users=120",
                 "--preset", "quick", "--results", str(results), "--run-id", "p", "--quiet", "--no-matrices"]) == 0
    # a newcomer's first table says it is not the papers' setting, and what the preset changes
    assert "preset quick: small and fast, NOT the papers'" in capsys.readouterr().err
    config = json.loads((results / "runs" / "p" / "config.json").read_text())
    assert config["preset"] == "quick" and config["train"]["min_epochs"] == 2
