"""What an installed package promises: quick commands (the import set, not a timing), no
clash with HuggingFace `datasets`, and built-ins described from their source exactly as
their imported classes say."""

from __future__ import annotations

import importlib.util
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


def test_huggingface_datasets_and_bench_coexist(tmp_path):
    """Both ship a `datasets`; bench installs its own as bench.datasets, so neither shadows the other.
    (Run outside the checkout: Python puts the working directory first on sys.path, and there
    the repository's own datasets/ folder is a top-level `datasets`.)"""
    # Look for it where the check runs, outside the checkout: here, inside it, the repository's
    # own datasets/ folder would be found instead.
    found = subprocess.run([sys.executable, "-c", "import importlib.util; "
                            "print(importlib.util.find_spec('datasets') is not None)"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    if found.stdout.strip() != "True":
        pytest.skip("HuggingFace `datasets` is not installed (.ci/run installs it: pip install datasets)")
    done = subprocess.run([sys.executable, "-c",
                           "import datasets\nassert callable(datasets.load_dataset)\n"
                           "from bench.registry import DATASETS\nassert 'synthetic' in DATASETS.names()\n"
                           "from bench.datasets.base import load_dataset\n"
                           "assert load_dataset('synthetic', {'n_users': 50}).name == 'synthetic'\n"
                           "print(datasets.__file__)"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent.name == "datasets" and "site-packages" in done.stdout
