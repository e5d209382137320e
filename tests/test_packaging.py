"""What an installed package promises: quick commands (the import set, not a timing), no
clash with HuggingFace `datasets`, and built-ins described from their source exactly as
their imported classes say."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.registry import DATASETS, METHODS, _registrations

HEAVY = ["torch", "pandas", "sklearn", "optuna", "tqdm"]


@pytest.mark.parametrize("command", [["--help"], ["list"], ["list", "datasets"], ["run", "--help"]])
def test_help_and_list_import_no_heavy_library(command):
    """`--help` and `list` answer in well under a second because they import none of these."""
    script = ("import sys\nfrom bench.cli import main\n"
              f"try:\n    main({command!r})\nexcept SystemExit:\n    pass\n"
              f"print(sorted(set({HEAVY!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("registry, attributes", [(METHODS, {"paper": "", "__doc__": ""}),
                                                  (DATASETS, {"summary": "", "method_defaults": {}})])
def test_built_ins_are_described_as_their_classes_say(registry, attributes):
    package = {"method": "bench.methods", "dataset": "bench.datasets"}[registry.kind]
    folder = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    found = [entry for path in sorted(folder.glob("*.py")) for entry in _registrations(path, registry.kind)]
    assert sorted(name for name, _ in found) == sorted(registry.names())
    for name, stated in found:
        cls = registry.get(name)
        for attribute, default in attributes.items():
            actual = sys.modules[cls.__module__].__doc__ if attribute == "__doc__" else getattr(cls, attribute)
            assert stated.get(attribute, default) == actual, (name, attribute)


def outside_checkout() -> dict[str, str]:
    """os.environ without this checkout on PYTHONPATH: there, as in the working directory, the
    repository's own datasets/ folder is a top-level `datasets` (a developer's PYTHONPATH=$PWD
    made the test below fail for reasons of the shell, not of the package)."""
    root = Path(__file__).resolve().parents[1]
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != root]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(kept)}


def test_huggingface_datasets_and_bench_coexist(tmp_path):
    """Both ship a `datasets`; bench installs its own as bench.datasets, so neither shadows the other.
    (Run outside the checkout, in the working directory and on PYTHONPATH: see `outside_checkout`.)"""
    env = outside_checkout()
    found = subprocess.run([sys.executable, "-c", "import importlib.util; "
                            "print([importlib.util.find_spec(name) is not None for name in ('datasets', 'bench')])"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert found.returncode == 0, found.stderr
    hf_datasets, bench = found.stdout.strip() == "[True, True]", "True]" in found.stdout
    if not hf_datasets:
        pytest.skip("HuggingFace `datasets` is not installed (.ci/run installs it: pip install datasets)"
                    if bench else "bench is not installed (pip install -e .)")
    done = subprocess.run([sys.executable, "-c",
                           "import datasets\nassert callable(datasets.load_dataset)\n"
                           "from bench.registry import DATASETS\nassert 'synthetic' in DATASETS.names()\n"
                           "from bench.datasets.base import load_dataset\n"
                           "assert load_dataset('synthetic', {'n_users': 50}).name == 'synthetic'\n"
                           "print(datasets.__file__)"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent.name == "datasets" and "site-packages" in done.stdout
