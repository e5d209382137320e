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


def test_fused_exact_loss_matches_the_chunked_reference():
    """The fused kernel (liger-kernel, bf16 inputs, fp32 inside) against the chunked fp32 loss:
    loss within 1e-2 relative, gradients within 2e-2 of the largest entry (bf16 keeps 8 bits)."""
    pytest.importorskip("liger_kernel")
    from bench.engine import softmax

    device = torch.device("cuda")
    assert softmax.exact_loss_path(device).startswith("fused")
    torch.manual_seed(0)
    rows, dim, items = 3000, 256, 50_000
    hidden = torch.randn(rows, dim, device=device, requires_grad=True)
    weight = (0.05 * torch.randn(items, dim, device=device)).requires_grad_()
    bias = (0.1 * torch.randn(items, device=device)).requires_grad_()
    targets = torch.randint(1, items, (rows,), device=device)
    targets[::7] = softmax.IGNORE  # padding positions
    kept = targets != softmax.IGNORE
    reference = softmax.chunked_cross_entropy(hidden[kept], weight, bias, targets[kept])
    expected = torch.autograd.grad(reference, [hidden, weight, bias])
    fused = softmax.fused_cross_entropy(hidden, weight, bias, targets)
    got = torch.autograd.grad(fused, [hidden, weight, bias])
    assert fused.item() == pytest.approx(reference.item(), rel=1e-2)
    for name, g, e in zip(("hidden", "weight", "bias"), got, expected):
        assert (g - e).abs().max() <= 2e-2 * e.abs().max(), name
    assert got[0][~kept].abs().max() == 0  # ignored positions get no gradient
