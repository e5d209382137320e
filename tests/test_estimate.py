"""`bench run --estimate`: per-method predictions from a few timed steps, and nothing written."""

from __future__ import annotations

import re

import pytest

from bench.cli import main

SMALL = ["--epochs", "2", "--device", "cpu", "--set", "dataset_options.n_users=120", "--set", "backbone.embedding_dim=8"]


def test_estimate_prints_every_method_and_writes_nothing(tmp_path, t1_cache_root, capsys):
    assert main(["run", "--methods", "SinMo,FineSmax,TERACON", "--estimate", "--results", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"^(SinMo|FineSmax|TERACON|total) ", line)}
    assert set(rows) == {"SinMo", "FineSmax", "TERACON", "total"}
    assert "pretrained T1-sequence: trained" in rows["SinMo"] and "TERACON T1: trained" in rows["TERACON"]
    assert "T1" not in rows["FineSmax"]  # the shared T1 model is counted once, for the first method
    for name in ("SinMo", "FineSmax", "TERACON"):
        high, early = re.findall(r"(\d+\.\d+) (s|min|h)", rows[name])[:2]
        assert float(high[0]) > 0 and float(early[0]) > 0
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no run folder
    assert not t1_cache_root.exists() or not list(t1_cache_root.glob("*.pt"))  # no T1 cache entry


def test_estimate_prices_a_cached_t1_model_at_nothing(tmp_path, capsys):
    def predicted() -> str:
        assert main(["run", "--methods", "SinMo", "--estimate", "--results", str(tmp_path), *SMALL]) == 0
        return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("SinMo "))

    assert re.search(r"pretrained T1-sequence: trained \(\d+\.\d+ s max\)", predicted())
    assert main(["run", "--methods", "SinMo", "--quiet", "--results", str(tmp_path), *SMALL]) == 0
    capsys.readouterr()
    assert "pretrained T1-sequence: cached (0 s)" in predicted()


def test_estimate_of_a_sweep_multiplies_by_its_runs_and_refuses_resume(tmp_path, capsys):
    assert main(["run", "--methods", "FineSmax", "--estimate", "--seeds", "0,1,2", "--results", str(tmp_path),
                 *SMALL]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = next(line for line in lines if line.startswith("total "))
    sweep = next(line for line in lines if line.startswith("total x 3 runs"))
    one, three = seconds(*total.split()[1:3]), seconds(*sweep.split()[4:6])
    assert three == pytest.approx(3 * one, rel=0.02, abs=0.2)  # printed to 0.1 s
    assert main(["run", "--estimate", "--resume", "x", "--results", str(tmp_path)]) == 2
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def seconds(value: str, unit: str) -> float:
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]
