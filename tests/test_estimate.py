"""`bench run --estimate`: per-method predictions from a few timed steps, and nothing written.

The predictions are timings, so the tests check the numbers `estimate` computed (recorded by
`probed`) and that the table prints those numbers, never a figure's rounded text: a timing
printed with one decimal may read 0.0 on a fast machine or change unit on a slow one."""

from __future__ import annotations

import re

import pytest

from bench.cli import main
from bench.experiments import estimate

SMALL = ["--epochs", "2", "--device", "cpu", "--set", "dataset_options.n_users=120", "--set", "backbone.embedding_dim=8"]


@pytest.fixture
def probed(monkeypatch) -> list[list[estimate.MethodEstimate]]:
    """The estimates each `--estimate` call computed, in order."""
    calls, real = [], estimate.estimate

    def recording(config):
        calls.append(real(config))
        return calls[-1]

    monkeypatch.setattr(estimate, "estimate", recording)
    return calls


def figures(cost: estimate.Cost) -> list[str]:
    """The table's max and early columns for `cost`, as printed."""
    return [*estimate.duration(cost.max).split(), *estimate.duration(cost.early).split()]


def test_estimate_prints_every_method_and_writes_nothing(tmp_path, t1_cache_root, capsys, probed):
    assert main(["run", "--methods", "SinMo,FineSmax,TERACON", "--estimate", "--results", str(tmp_path), *SMALL]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if re.match(r"^(SinMo|FineSmax|TERACON|total) ", line)}
    assert set(rows) == {"SinMo", "FineSmax", "TERACON", "total"}
    assert "pretrained T1-sequence: trained" in rows["SinMo"] and "TERACON T1: trained" in rows["TERACON"]
    assert "T1" not in rows["FineSmax"]  # the shared T1 model is counted once, for the first method
    (estimates,) = probed
    assert [e.method for e in estimates] == ["SinMo", "FineSmax", "TERACON"]
    for e in estimates:
        assert 0 < e.cost.early <= e.cost.max and e.steps > 0 and e.fits > 0
        assert rows[e.method].split()[1:5] == figures(e.cost)  # the row prints these numbers
    assert [t1[:2] for t1 in estimates[0].t1] == [("pretrained T1-sequence", False)] and not estimates[1].t1
    assert all(cost.max > 0 for _, _, cost in estimates[0].t1 + estimates[2].t1)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no run folder
    assert not t1_cache_root.exists() or not list(t1_cache_root.glob("*.pt"))  # no T1 cache entry


def test_estimate_prices_a_cached_t1_model_at_nothing(tmp_path, capsys, probed):
    def predicted() -> tuple[str, estimate.MethodEstimate]:
        assert main(["run", "--methods", "SinMo", "--estimate", "--results", str(tmp_path), *SMALL]) == 0
        line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("SinMo "))
        return line, probed[-1][0]

    line, first = predicted()
    (name, cached, cost), = first.t1
    assert name == "pretrained T1-sequence" and not cached and cost.max > 0
    assert f"pretrained T1-sequence: trained ({estimate.duration(cost.max)} max)" in line
    assert main(["run", "--methods", "SinMo", "--quiet", "--results", str(tmp_path), *SMALL]) == 0
    capsys.readouterr()
    line, again = predicted()
    assert [t1[:2] for t1 in again.t1] == [("pretrained T1-sequence", True)]
    assert again.steps < first.steps  # the T1 training is no longer planned (steps, not timings)
    assert "pretrained T1-sequence: cached (0 s)" in line


def test_estimate_of_a_sweep_multiplies_by_its_runs_and_refuses_resume(tmp_path, capsys, probed):
    assert main(["run", "--methods", "FineSmax", "--estimate", "--seeds", "0,1,2", "--results", str(tmp_path),
                 *SMALL]) == 0
    lines = capsys.readouterr().out.splitlines()
    total = next(line for line in lines if line.startswith("total ")).split()
    sweep = next(line for line in lines if line.startswith("total x 3 runs")).split()
    (estimates,) = probed
    one = estimate.Cost(sum(e.cost.max for e in estimates), sum(e.cost.early for e in estimates))
    assert total[1:5] == figures(one)
    assert sweep[4:8] == figures(estimate.Cost(3 * one.max, 3 * one.early))
    assert main(["run", "--estimate", "--resume", "x", "--results", str(tmp_path)]) == 2
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
