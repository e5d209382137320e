"""Method variants: `TERACON+floor` is TERACON with the overrides its class declares."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from bench.cli import main
from bench.config import build_run_config
from bench.errors import BenchError
from bench.experiments.runner import run
from bench.registry import METHODS, PAPER_ORDER, resolve_methods
from bench.results.store import RunStore
from tests.conftest import tiny_config


def test_variant_names_resolve_case_insensitively_in_declaration_order():
    assert METHODS.canonical("teracon+FLOOR") == "TERACON+floor"
    assert METHODS.canonical("HAT+lngate+binary") == "HAT+binary+lngate"
    assert METHODS.get("Conure+tasknorms") is METHODS.get("Conure")
    assert METHODS.base_name("Conure+postln+bias") == "Conure"
    assert "TERACON+floor" in METHODS and "TERACON+nope" not in METHODS
    with pytest.raises(BenchError, match="unknown variant 'nope' of method TERACON; variants: TERACON"):
        METHODS.canonical("TERACON+nope")
    with pytest.raises(BenchError, match="named twice"):
        METHODS.canonical("HAT+binary+Binary")
    with pytest.raises(BenchError, match="variants: none"):
        METHODS.canonical("SinMo+floor")


def test_all_is_the_ten_base_methods_and_variants_follow_their_method():
    assert resolve_methods(["all"]) == PAPER_ORDER
    rows = resolve_methods(["TERACON+floor", "SinMo", "TERACON", "hat+binary"])
    assert rows == ["SinMo", "HAT+binary", "TERACON", "TERACON+floor"]


@pytest.mark.parametrize("row", [row for name in PAPER_ORDER for row in METHODS.variant_names(name)])
def test_every_variant_overrides_real_options_away_from_the_default(row):
    """A variant changes an option away from the method's default under some preset
    (`TERACON+int` is the code's rule, the default but for the quick preset's 128-row batches)."""
    from bench.presets import PRESETS
    cls = METHODS.get(row)
    overrides = METHODS.options(row, {})
    default = dataclasses.asdict(cls.Options())
    assert overrides and set(overrides) <= set(default), row
    base = METHODS.split(row)[0]
    defaults = [{**default, **build_run_config({"preset": preset}).method_options.get(base, {})}
                for preset in PRESETS]
    assert any(any(d[key] != value for key, value in overrides.items()) for d in defaults), "a variant must differ"


def test_option_precedence_base_then_variant_then_row():
    configured = {"TERACON": {"alpha": 2.0, "min_ratio": 0.1}, "TERACON+floor": {"smax": 20.0}}
    assert METHODS.options("TERACON+floor", configured) == {"alpha": 2.0, "min_ratio": 0.25, "smax": 20.0}
    assert METHODS.options("TERACON", configured) == {"alpha": 2.0, "min_ratio": 0.1}
    assert METHODS.options("TERACON+floor", configured, variants=False) == {"alpha": 2.0, "min_ratio": 0.1,
                                                                             "smax": 20.0}


@pytest.mark.slow
def test_variant_rows_run_record_their_options_and_resume(results_root):
    data = dataclasses.asdict(tiny_config(methods=["Conure+tasknorms", "HAT+binary", "Conure"]))
    data["method_options"] = {"conure+TASKNORMS": {"prune_ratio": 0.5}}
    config = build_run_config(data)
    # config.json says what each row ran with
    assert config.method_options["Conure+tasknorms"] == {"task_norms": True, "prune_ratio": 0.5}
    assert config.method_options["HAT+binary"] == {"binarize": True}
    config.methods = resolve_methods(config.methods)
    store = RunStore.create(config.to_dict(), results_root)
    records = {record.method: record for record in run(config, store, progress=False)}
    assert list(records) == ["Conure", "Conure+tasknorms", "HAT+binary"]
    assert set(records["Conure+tasknorms"].variants) == {"Conure+tasknorms-"}
    assert set(records["Conure"].variants) == {"Conure-"}
    saved = json.loads((store.directory / "config.json").read_text())
    assert saved["methods"] == ["Conure", "Conure+tasknorms", "HAT+binary"]
    resumed = run(build_run_config(RunStore.open(store.run_id, results_root).config),
                  RunStore.open(store.run_id, results_root), progress=False)
    assert [r.method for r in resumed] == list(records)
    for record in resumed:
        np.testing.assert_array_equal(record.matrix(), records[record.method].matrix())


def test_variant_and_base_differ_where_the_option_acts(results_root):
    config = tiny_config(methods=["HAT", "HAT+lngate"])
    store = RunStore.create(config.to_dict(), results_root)
    records = {record.method: record for record in run(build_run_config(config.to_dict()), store, progress=False)}
    assert not np.array_equal(records["HAT"].matrix(), records["HAT+lngate"].matrix(), equal_nan=True)


def test_list_shows_variants(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "TERACON+floor" in out and "min_ratio=0.25" in out
    assert "HAT+binary" in out and "Conure+tasknorms" in out


def test_bad_variant_is_a_one_line_error(capsys, tmp_path):
    code = main(["run", "--methods", "TERACON+flor", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: unknown variant 'flor'")


def test_gated_methods_refuse_the_pre_ln_block():
    """HAT/TERACON gate each conv's units after its ReLU; in a pre-LN block the ReLU comes
    before the conv, so the gates would mask the wrong units."""
    from bench.config import BackboneConfig
    from bench.engine.backbone import NextItNet
    from bench.methods._gates import install_gates

    encoder = NextItNet(10, BackboneConfig(embedding_dim=8, block="pre_ln"))
    with pytest.raises(BenchError, match="backbone.block=post_ln"):
        install_gates(encoder, gate_conv_outputs=False)
    assert len(install_gates(NextItNet(10, BackboneConfig(embedding_dim=8)), gate_conv_outputs=False)) == 4
