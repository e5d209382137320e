"""Where a training is, in one small file a scheduler's status view can read.

`bench grid` gives every run it starts a file in $BENCH_PROGRESS_FILE; `fit` reports each
epoch it starts there (task, fit, epoch of epochs), so `bench grid status` can say how far
a running run is without opening its checkpoints (hundreds of MB at the papers' size).
Unset (a plain `bench run`), nothing is written.
"""

from __future__ import annotations

import os
import time

from bench.engine import distributed

VARIABLE = "BENCH_PROGRESS_FILE"


def report(task: str, fit: str, epoch: int, epochs: int) -> None:
    """Epoch `epoch` (1-based) of `epochs` of the fit `fit` on `task` has started."""
    path = os.environ.get(VARIABLE)
    if not path or not distributed.is_main():
        return
    from bench.io import write_json

    try:
        write_json(path, {"task": task, "fit": fit, "epoch": epoch, "epochs": epochs, "time": time.time()})
    except OSError:
        pass  # a status line is never worth a run
