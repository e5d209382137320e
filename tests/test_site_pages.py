"""`bench leaderboard` also writes the site's results pages, figures and the README snapshot;
`--check` fails when any of them is stale (bench/results/site.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.results import site

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "published"
RUNS = ["synthetic-paper-TERACON-s0", "synthetic-paper-TERACON-s1"]


@pytest.fixture
def checkout(tmp_path):
    """A checkout-shaped folder: two published runs, mkdocs.yml and a README with the markers."""
    for run in RUNS:
        shutil.copytree(PUBLISHED / run, tmp_path / "results" / "published" / run)
    (tmp_path / "mkdocs.yml").write_text("site_name: t\n")
    (tmp_path / "README.md").write_text(f"# t\n\n{site.SNAPSHOT_START}\nold\n{site.SNAPSHOT_END}\n\nafter\n")
    return tmp_path


def test_pages_snapshot_and_check(checkout, capsys):
    pytest.importorskip("matplotlib")
    results = checkout / "results"
    assert main(["leaderboard", "--results", str(results)]) == 0
    pages = checkout / "docs" / "results"
    assert sorted(p.name for p in pages.glob("*.md")) == ["index.md", "reference.md", "synthetic-paper.md"]
    table = (pages / "synthetic-paper.md").read_text()
    assert '<table class="sortable"' in table and "<th scope=\"row\">TERACON</th>" in table
    for run in RUNS:  # both runs' figures, drawn and linked
        for kind in ("forgetting", "performance"):
            assert (pages / "figures" / run / f"TERACON-{kind}.png").stat().st_size > 1000
            assert f"../figures/{run}/TERACON-{kind}.png" in table
    assert "[synthetic paper](docs/results/synthetic-paper.md)" in (checkout / "README.md").read_text()
    assert "old" not in (checkout / "README.md").read_text()
    assert (checkout / "README.md").read_text().endswith("\n\nafter\n")
    assert main(["leaderboard", "--results", str(results), "--check"]) == 0

    index = json.loads((pages / "figures" / "index.json").read_text())
    assert sorted(index) == [f"figures/{run}/TERACON" for run in RUNS]
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results)]) == 0  # nothing changed: nothing redrawn
    assert "figures: 0 of 2" in capsys.readouterr().err

    (pages / "synthetic-paper.md").write_text(table.replace("TERACON</th>", "X</th>", 1))
    assert main(["leaderboard", "--results", str(results), "--check"]) == 1
    assert "synthetic-paper.md" in capsys.readouterr().err
    assert main(["leaderboard", "--results", str(results), "--check", "--no-site"]) == 0

    shutil.rmtree(results / "published" / RUNS[1])  # an unpublished run's figures go
    assert main(["leaderboard", "--results", str(results)]) == 0
    assert not (pages / "figures" / RUNS[1]).exists()
    assert main(["leaderboard", "--results", str(results), "--check"]) == 0


def test_no_site_without_mkdocs_yml(tmp_path):
    shutil.copytree(PUBLISHED / RUNS[0], tmp_path / "results" / "published" / RUNS[0])
    assert main(["leaderboard", "--results", str(tmp_path / "results")]) == 0
    assert not (tmp_path / "docs").exists()


def test_table_cells_are_escaped_and_bold_kept():
    import pandas as pd

    frame = pd.DataFrame({"Avg": ["**0.5 ± 0.1**"], "runs": ["r"], "commit": ["c"]}, index=["A<b>"])
    html = site.html_table(frame, "t")
    assert "<th scope=\"row\">A&lt;b&gt;</th>" in html and "<strong>0.5 ± 0.1</strong>" in html
    assert "runs" not in html and "commit" not in html
