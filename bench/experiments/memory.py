"""A memory estimate of a run's data and model, checked against what the machine has before
any work (`run --no-memory-check` skips it).

The estimate is rough (within a factor of about two): the dataset adapter estimates its
parsed arrays (`DatasetAdapter.estimated_bytes`; None when it cannot tell before reading),
and the model is the configured backbone (counted on the meta device) plus an output layer, as weights, gradients
and Adam's two moments of the model in training, and weights alone for the task models a
method keeps (six backbones for SinMo). A run that cannot fit would otherwise fail minutes
in with a MemoryError traceback (numpy's `_ArrayMemoryError` for `n_users=100000000`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bench.config import RunConfig
from bench.errors import BenchError

GiB = 1 << 30
KEPT_MODELS = 6  # backbones a method may keep (SinMo: one per task)


def available_ram() -> int | None:
    """MemAvailable of /proc/meminfo (what can be allocated without swapping), else free pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def model_bytes(config: RunConfig, n_items: int | None) -> int:
    if n_items is None:
        return 0
    return 4 * backbone_parameters(config, n_items) * (4 + KEPT_MODELS)


def backbone_parameters(config: RunConfig, n_items: int) -> int:
    """The configured backbone's parameters plus a full output layer (the T1 softmax), counted
    on the meta device: any backbone, no memory, no initialisation."""
    from bench.engine.backbone import build_encoder

    with torch.device("meta"):
        encoder = build_encoder(n_items, config.backbone)
    return sum(p.numel() for p in encoder.parameters()) + (n_items + 1) * config.backbone.embedding_dim


def check_memory(config: RunConfig, device: torch.device) -> None:
    """One error line when the estimate exceeds the memory available (RAM; and the GPU's for CUDA)."""
    from bench.registry import DATASETS

    adapter = DATASETS.get(config.dataset)
    estimate = adapter.estimated_bytes(config.dataset_options, config.data_dir)
    if estimate is None:
        return
    data, n_items = estimate
    model = model_bytes(config, n_items)
    needs = [("memory", data + (model if device.type != "cuda" else 0), available_ram())]
    if device.type == "cuda":
        needs.append((f"{device} memory", data + model, torch.cuda.mem_get_info(device)[0]))
    for what, needed, available in needs:
        if available is not None and needed > available:
            raise BenchError(f"this run needs about {needed / GiB:.1f} GiB of {what} (data ~{data / GiB:.1f} GiB, "
                             f"model ~{model / GiB:.1f} GiB) but {available / GiB:.1f} GiB is available; "
                             "use less data (dataset_options), or skip this estimate with --no-memory-check")
