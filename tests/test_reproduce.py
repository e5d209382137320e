"""`bench reproduce`: the published tables are well-formed data, and a tiny TTL-format export
runs a table's grid end to end (shape check only: tiny data cannot match the paper's numbers)."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.experiments import reproduce
from bench.registry import METHODS
from test_datasets import ttl_release

TINY = ["--epochs", "1", "--set", "backbone.embedding_dim=8", "--set", "backbone.dilations=[1]",
        "--set", "train.batch_size=64", "--device", "cpu"]


@pytest.mark.parametrize("name", reproduce.available())
def test_reference_tables_name_their_source_and_real_methods(name):
    reference = reproduce.load_reference(name)
    assert reference.source["paper"] and reference.source["table"] and "page" in reference.source
    # each row is a method (or variant) or an extra row of one it runs ("Conure-" of Conure)
    assert all(method in METHODS for method in reference.run_methods())
    assert all(row in METHODS or row.startswith(reproduce.runnable(row)) for row in reference.methods)
    for method, values in reference.published.items():  # only numbers that were transcribed
        assert method in reference.rows() and set(values) <= set(reference.tasks) | {"Avg"}
        assert all(0.0 <= float(v) <= 1.0 for v in values.values())


def test_reproduce_runs_the_grid_on_a_tiny_ttl_export(tmp_path, capsys, monkeypatch):
    root = ttl_release(tmp_path / "ttl", n_users=80)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    table = {"name": "tiny", "source": {"paper": "a paper", "table": "Table 2", "page": 5},
             "dataset": "ttl", "methods": ["FineSmax", "MTL"], "tasks": ["T1", "T2", "T3", "T4", "T5", "T6"],
             "metric": "MRR@5 / accuracy", "published": {"FineSmax": {"T1": 0.5, "T4": 0.25}}, "note": ""}
    (reference_dir / "tiny.json").write_text(json.dumps(table))
    monkeypatch.setattr(reproduce, "REFERENCE_DIR", reference_dir)
    monkeypatch.setattr(reproduce.load_reference, "__defaults__", (reference_dir,))
    monkeypatch.setattr(reproduce.available, "__defaults__", (reference_dir,))
    frames, real = [], reproduce.reproduce  # the frame the table prints, to check numbers as numbers
    monkeypatch.setattr(reproduce, "reproduce", lambda *args, **kw: frames.append(real(*args, **kw)) or frames[-1])
    code = main(["reproduce", "tiny", "--data-dir", str(root), "--results", str(tmp_path / "r"),
                 "--quiet", "--format", "plain", *TINY])
    out = capsys.readouterr().out
    assert code == 0
    assert "a paper, Table 2, p. 5" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["FineSmax"], ["MTL"])]
    assert len(rows) == 2 * 7  # six tasks and Avg per method
    frame_rows = {(row[0], row[1]): row for row in rows}
    assert frame_rows[("FineSmax", "T1")][-2] == "0.5000"  # published, then the difference
    # columns: method task metric harness ± std seeds published difference
    fine, mtl = frame_rows[("FineSmax", "T1")], frame_rows[("MTL", "T1")]
    assert float(fine[3]) >= 0 and fine[4] == "–" and fine[5] == "1"  # one seed: no std
    # the difference as a number (two figures rounded to 4 decimals need not differ by a rounded 0.5)
    harness, difference = frames[0].loc[("FineSmax", "T1"), ["harness", "difference"]]
    assert difference == harness - 0.5 and [fine[3], fine[-1]] == [f"{harness:.4f}", f"{difference:.4f}"]
    assert mtl[3] == "–" and mtl[-1] == "–"  # MTL has no T1 score
    assert frame_rows[("FineSmax", "T2")][-2:] == ["–", "–"]  # not published
    config = json.loads((tmp_path / "r" / "runs" / "reproduce-tiny-s0" / "config.json").read_text())
    assert config["preset"] == "paper" and config["train"]["epochs"] == 1
    assert config["backbone"]["embedding_dim"] == 8  # the user's settings override the preset


def test_reproduce_unknown_table_is_one_error_line(capsys):
    assert main(["reproduce", "no-such-table"]) == 2
    assert capsys.readouterr().err.startswith("error: reproduce: no published table 'no-such-table'")


@pytest.mark.slow
def test_reproduce_a_published_table_on_a_tiny_ttl_export(tmp_path, capsys):
    """The real grid (TERACON's table: eight methods) runs on a tiny export: one row per method and task."""
    root = ttl_release(tmp_path / "ttl", n_users=80)
    reference = reproduce.load_reference("teracon-main-ttl")
    code = main(["reproduce", "teracon-main-ttl", "--data-dir", str(root), "--results", str(tmp_path / "r"),
                 "--quiet", "--format", "plain", *TINY])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in reference.methods]
    assert [(row[0], row[1]) for row in rows] == [(m, t) for m in reference.methods for t in [*reference.tasks, "Avg"]]
