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


def test_site_command_names_the_missing_extra(monkeypatch, capsys):
    import importlib.util

    from bench.commands import site as command

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mkdocs" else real(name, *a))
    assert main(["site", "build"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ['error: site: MkDocs and mkdocs-material are not installed: '
                                                           'pip install -e ".[docs]"']
    config = command.config_file()
    assert config.name == "mkdocs.yml"
    assert command.command("serve", config, "127.0.0.1:9000")[2:] == ["mkdocs", "serve", "--config-file", str(config),
                                                                      "--dev-addr", "127.0.0.1:9000"]
    assert command.command("build", config, "")[-3:] == ["--strict", "--config-file", str(config)]


def test_reference_tables_set_published_values_beside_the_harness(checkout, monkeypatch):
    from bench.experiments import reproduce
    from bench.results import leaderboard

    folder = checkout / "reference"
    folder.mkdir()
    table = {"name": "t-main", "source": {"paper": "P", "table": "Table 9", "page": 3, "url": None},
             "dataset": "synthetic", "methods": ["TERACON", "Nope"], "tasks": ["T1", "T2"],
             "metric": "MRR@5", "published": {"TERACON": {"T1": 0.5}}}
    (folder / "t-main.json").write_text(json.dumps(table))
    on_sasrec = {**table, "name": "t-sasrec", "settings": {"backbone": {"name": "sasrec"}}}
    (folder / "t-sasrec.json").write_text(json.dumps(on_sasrec))
    load = reproduce.load_reference
    monkeypatch.setattr(reproduce, "available", lambda: ["t-main", "t-sasrec"])
    monkeypatch.setattr(reproduce, "load_reference", lambda name: load(name, folder))
    text = site.pages(checkout / "results")["reference.md"]
    group = leaderboard.gather(checkout / "results" / "published")[0]
    mean, std = leaderboard.group_stats(group)
    t1 = next(c for c in mean.columns if str(c).startswith("T1 "))
    harness = mean.at["TERACON", t1]
    rows, sasrec = text.split("## t-main", 1)[1].split("## t-sasrec", 1)
    # a table on another backbone gets no harness column from the NextItNet runs
    assert "Harness: no published paper-preset run on `synthetic` with backbone `sasrec` yet." in sasrec
    assert "| TERACON | published | 0.5000 | – | – |" in sasrec and "| | harness | – | – | – |" in sasrec
    assert "| TERACON | published | 0.5000 | – | – |" in rows
    assert f"| | harness | {harness:.4f} ± {std.at['TERACON', t1]:.4f} |" in rows
    assert f"| | difference | {harness - 0.5:+.4f} | – | – |" in rows
    assert "| Nope | published | – | – | – |" in rows and "| | harness | – | – | – |" in rows
    assert "[synthetic, order 1,2,3,4,5,6: paper defaults](synthetic-paper.md)" in rows


def test_snapshot_heading_names_a_sampled_table(tmp_path):
    """Two tables of one dataset and preset that differ by protocol get distinct README headings."""
    pytest.importorskip("matplotlib")
    for run in ("synthetic-all-s0", "synthetic-sampled-s0"):
        shutil.copytree(PUBLISHED / run, tmp_path / "results" / "published" / run)
    (tmp_path / "mkdocs.yml").write_text("site_name: t\n")
    (tmp_path / "README.md").write_text(f"# t\n\n{site.SNAPSHOT_START}\n{site.SNAPSHOT_END}\n")
    assert main(["leaderboard", "--results", str(tmp_path / "results")]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "[synthetic quick](docs/results/synthetic-quick.md)" in readme
    assert "[synthetic quick sampled](docs/results/synthetic-quick-sampled.md)" in readme
