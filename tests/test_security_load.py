"""No stored file the harness reads can run code (issue 22, rows 2 and 4).

Every file written with torch.save is read with weights_only=True: a pickle payload planted
in a run's checkpoint, an in-task checkpoint, a run's cached T1 model or a T1-cache entry is
"damaged" (one warning, then rebuilt; or, for a step checkpoint, refused with one error line)
and never executed. Step checkpoints hold the method's state_dict and plain data, and every
method resumes from them to the very R matrix of an uninterrupted run. The parsed-data cache
is keyed by the whole content of its source files.
"""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from bench.config import TrainConfig
from bench.errors import BenchError
from bench.experiments.runner import run
from bench.io import file_hash, read_json
from bench.registry import METHODS
from bench.results.store import RunStore
from tests.conftest import tiny_config

MARKER = "planted-payload-ran"


class Payload:
    """Unpickling it (torch.load with weights_only=False, pickle.load) creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def plant(path, marker) -> None:
    """A torch.save'd dict shaped like what the harness stores, with the payload inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 2, "model": {"payload": Payload(marker)}, "scope": Payload(marker),
                "done": [], "position": None, "log": {}}, path)


def tiny(methods, **train):
    settings = dict(epochs=1, batch_size=64, lr=3e-3, patience=1)
    settings.update(train)
    return tiny_config(methods=methods, train=TrainConfig(**settings))


class Stop(Exception):
    """Raised by the step callback: the process dies after a step's checkpoint is written."""


def stop_after(steps: int):
    def on_step(name, record):
        if len(record.steps) == steps:
            raise Stop

    return on_step


def _epoch_logs(store: RunStore, method: str) -> list[dict]:
    """epochs.json without wall-clock seconds (the one thing a resume may change)."""
    logs = read_json(store.method_dir(method) / "epochs.json")
    return [{k: ([{f: v for f, v in e.items() if not f.endswith("seconds")} for e in value] if k == "epochs"
                 else value) for k, value in log.items() if k != "seconds"} for log in logs]


# ------------------------------------------------- every method resumes from tensors and plain data

RESUMED = [*METHODS.names(), "Conure+postln+bias+tasknorms", "HAT+binary+lngate", "TERACON+sharedt1"]


@pytest.mark.parametrize("name", RESUMED)
def test_every_method_resumes_from_a_weights_only_checkpoint_to_the_same_matrix(name, results_root):
    config = tiny([name])
    (expected,) = run(config, RunStore.create(config.to_dict(), results_root / "reference"), progress=False)

    store = RunStore.create(config.to_dict(), results_root / "resumed")
    steps = 1 if METHODS.base_name(name) == "MTL" else 2  # MTL has two steps: T1, then the rest
    with pytest.raises(Stop):
        run(config, store, progress=False, on_step=stop_after(steps))
    path = store.method_dir(name) / "checkpoint.pt"
    saved = torch.load(path, weights_only=True)  # tensors and plain data: this load cannot run code
    assert set(saved) == {"format", "state", "extra", "record", "rng"}
    assert saved["extra"]["learned"] == expected.tasks[:len(saved["extra"]["learned"])]

    (resumed,) = run(config, RunStore.open(store.run_id, results_root / "resumed"), progress=False)
    np.testing.assert_array_equal(resumed.matrix(), expected.matrix())
    assert resumed.variants == expected.variants
    assert [s["parameters"] for s in resumed.steps] == [s["parameters"] for s in expected.steps]
    assert _epoch_logs(store, name) == _epoch_logs(RunStore.open(expected_run(results_root), results_root / "reference"),
                                                   name)


def expected_run(results_root) -> str:
    (run_dir,) = (results_root / "reference" / "runs").iterdir()
    return run_dir.name
