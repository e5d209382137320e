"""`--launcher local`: the grid's jobs as processes on this machine, a pool of N per device.

A thread pool (concurrent.futures) starts one `bench grid _job` process per job, as many at
once as there are slots (`per_device` on each device). A slot's device is its
CUDA_VISIBLE_DEVICES (the devices shared round-robin by the slots; "cpu" hides every GPU),
and the machine's threads are divided among the slots (OMP_NUM_THREADS). The T1 jobs go
first; a run is handed to the pool only once every T1 job it needs has finished, so no run
waits in a slot for a T1 model.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

from bench.grid import worker
from bench.grid.spec import LocalSpec
from bench.grid.stages import Plan


def visible_devices() -> list[str]:
    """The GPUs this process sees, as CUDA_VISIBLE_DEVICES values; none: the CPU."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [part for part in visible.split(",") if part.strip()] or ["cpu"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] or ["cpu"]


def slots(local: LocalSpec) -> tuple[list[str], int]:
    """The device of every slot (round-robin over the devices) and the threads each gets."""
    devices = local.devices or visible_devices()
    layout = [devices[i % len(devices)] for i in range(len(devices) * local.per_device)]
    threads = max(1, (local.threads or os.cpu_count() or 1) // len(layout))
    return layout, threads


def job_command(directory: Path, job: str) -> list[str]:
    return [sys.executable, "-m", "bench", "grid", "_job", job, "--grid-dir", str(directory)]


def launch(plan: Plan, t1_todo: list[int], runs_todo: list[str], local: LocalSpec,
           log: Callable[[str], None]) -> int:
    """Run the T1 jobs, then the runs as their T1 models exist; 0 when every job succeeded."""
    layout, threads = slots(local)
    free: queue.Queue[str] = queue.Queue()
    for device in layout:
        free.put(device)
    log(f"grid {plan.spec['name']}: {len(t1_todo)} T1 job(s), {len(runs_todo)} run(s) on {len(layout)} slot(s) "
        f"(devices {', '.join(dict.fromkeys(layout))}; {threads} thread(s) each); logs in {plan.directory / 'logs'}")

    def start(job: str) -> int:
        device = free.get()
        try:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if device == "cpu" else device,
                   "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
            path = worker.log_path(plan.directory, job)
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with open(path, "a") as output:
                rc = subprocess.run(job_command(plan.directory, job), env=env, stdout=output,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
            log(f"{job} rc={rc} {time.monotonic() - started:.0f}s (device {device})")
            return rc
        finally:
            free.put(device)

    failed = 0
    t1_state = {index: "running" for index in t1_todo}
    waiting = {entry["run_id"]: entry["t1"] for entry in plan.runs if entry["run_id"] in runs_todo}
    with ThreadPoolExecutor(max_workers=len(layout)) as pool:
        futures = {pool.submit(start, plan.t1_job(index).name): index for index in t1_todo}

        def hand_over() -> int:
            lost = 0
            for run_id, needed in list(waiting.items()):
                states = [t1_state.get(index, "done") for index in needed]
                if "failed" in states:
                    del waiting[run_id]
                    missing = [plan.t1_job(i).name for i, s in zip(needed, states) if s == "failed"]
                    worker.write_state(plan.directory, run_id, "failed", error=f"T1 job {', '.join(missing)} failed")
                    log(f"{run_id} not started: T1 job {', '.join(missing)} failed")
                    lost += 1
                elif all(state == "done" for state in states):
                    del waiting[run_id]
                    futures[pool.submit(start, run_id)] = None
            return lost

        failed += hand_over()
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                index = futures.pop(future)
                ok = future.result() == 0
                failed += not ok
                if index is not None:
                    t1_state[index] = "done" if ok else "failed"
            failed += hand_over()
    return 0 if failed == 0 else 1
