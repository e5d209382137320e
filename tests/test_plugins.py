"""Out-of-tree methods and datasets: the two examples of docs/extending.md, loaded with --plugin and as
installed entry points, run end to end like built-ins (run, table, list, tune)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.registry import DATASETS, METHODS, load_plugins

EXTENDING = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TINY = ["--epochs", "1", "--set", "device=cpu", "--set", "backbone.embedding_dim=16", "--set", "dataset_options.n_users=200"]


def readme_example(section: str) -> str:
    """The first python block under `## <section>` of docs/extending.md."""
    body = EXTENDING.read_text().split(f"## {section}\n", 1)[1]
    return body.split("```python\n", 1)[1].split("```", 1)[0]


def write_examples(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    method, dataset = folder / "finetop.py", folder / "cycles.py"
    method.write_text(readme_example("Add your own method"))
    dataset.write_text(readme_example("Add your own dataset"))
    return method, dataset


@pytest.fixture
def isolated_registries(monkeypatch):
    """Plugins registered by a test leave the process-wide registries as they were."""
    load_plugins()
    for registry in (METHODS, DATASETS):  # import the built-ins first: a module imported during
        for name in registry.names():     # the test would register into the copy, not the original
            registry.get(name)
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))
    yield
    for name in ("bench_plugin_finetop", "bench_plugin_cycles"):
        sys.modules.pop(name, None)


def test_plugin_files_run_tune_and_list(tmp_path, capsys, isolated_registries):
    method, dataset = write_examples(tmp_path / "mine")
    plugins = ["--plugin", str(method), "--plugin", str(dataset)]
    results = tmp_path / "results"
    assert main([*plugins, "run", "--methods", "FineTop,FineSmax", "--dataset", "cycles", *TINY,
                 "--results", str(results), "--run-id", "own", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("| FineTop ")  # a row of the table, printed last
    record = json.loads((results / "runs" / "own" / "methods" / "FineTop" / "result.json").read_text())
    stored = json.loads((results / "runs" / "own" / "config.json").read_text())
    assert stored["dataset"] == "cycles" and stored["methods"] == ["FineSmax", "FineTop"]
    assert len(record["tasks"]) == 3 and "T3 Acc" in out  # cycles' three tasks, the last one a class task

    assert main([*plugins, "list"]) == 0
    listing = capsys.readouterr().out
    assert "FineTop" in listing and "docs example" in listing and "cycles" in listing
    assert main([*plugins, "list", "FineTop", "--dataset", "cycles"]) == 0
    options = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["trained_blocks", "1", "paper"] for line in options)

    assert main([*plugins, "tune", "--method", "FineTop", "--trials", "1", "--dataset", "cycles", *TINY,
                 "--results", str(results), "--quiet"]) == 0
    assert "best trial 0" in capsys.readouterr().out


def test_plugin_option_after_the_command(tmp_path, capsys, isolated_registries):
    """`run --plugin F.py` works as `--plugin F.py run`; both places add up."""
    method, dataset = write_examples(tmp_path / "mine")
    assert main(["list", "--plugin", str(method)]) == 0
    assert "FineTop" in capsys.readouterr().out
    assert main(["--plugin", str(method), "run", "--plugin", str(dataset), "--methods", "FineTop",
                 "--dataset", "cycles", *TINY, "--results", str(tmp_path / "results"), "--quiet"]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1].startswith("| FineTop ")
    assert main(["list", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_entry_points_register_without_any_flag(tmp_path):
    """An installed distribution declaring `bench.methods`/`bench.datasets` entry points (here a
    bare dist-info on PYTHONPATH, what pip leaves behind) is picked up by every command."""
    site = tmp_path / "site"
    write_examples(site)
    info = site / "bench_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.methods]\nFineTop = finetop\n\n[bench.datasets]\ncycles = cycles\n")
    path = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]  # keep the checkout a developer put there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "FineTop", "--dataset", "cycles",
                           *TINY, "--results", str(tmp_path / "results"), "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith("| FineTop ")


def test_a_broken_plugin_is_one_error_line(tmp_path, capsys, isolated_registries):
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    assert main(["--plugin", str(broken), "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --plugin") and "not_a_module_anywhere" in err and err.count("\n") == 1
    assert main(["--plugin", str(tmp_path / "missing.py"), "list"]) == 2
    assert "no such file" in capsys.readouterr().err
