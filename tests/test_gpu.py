"""Every method on CUDA (skipped on machines without a GPU, such as CI's)."""

import numpy as np
import pytest
import torch

from bench.registry import METHODS
from bench.experiments.runner import run
from bench.results.store import RunStore
from tests.conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", METHODS.names())
def test_method_runs_on_cuda(name, results_root):
    config = tiny_config(methods=[name], device="cuda")
    (record,) = run(config, RunStore.create(config.to_dict(), results_root), progress=False)
    assert record.complete
    assert np.isfinite(record.matrix()[-1, 1:]).all()


def test_auto_device_picks_cuda():
    from bench.experiments.runner import resolve_device

    assert resolve_device("auto").type == "cuda"


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_bf16_autocast_and_both_losses_on_cuda(loss, results_root):
    config = tiny_config(methods=["FineSmax"], device="cuda")
    config.train.precision, config.train.loss, config.train.negatives = "bf16", loss, 8
    (record,) = run(config, RunStore.create(config.to_dict(), results_root), progress=False)
    assert record.complete and np.isfinite(record.matrix()[-1]).all()
    assert torch.backends.cuda.matmul.allow_tf32
