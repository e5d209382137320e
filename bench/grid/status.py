"""`bench grid status`: where every run of a grid is, read from the results and state files.

A run is `done` when its method's record is complete, `failed` when its last process ended
with an error (the line is shown), `running` while its process lives (the task and epoch come
from its progress file), `interrupted` when a process left it unfinished (killed, cancelled,
timed out: the next `bench grid` resumes it) and `pending` before it starts. The remaining
time comes from `bench grid --estimate` (estimate.json in the grid's folder).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from bench.grid import worker
from bench.grid.slurm import slurm_queue
from bench.grid.stages import Plan, t1_done
from bench.io import read_json

STATES = ("pending", "running", "interrupted", "failed", "done")


@dataclass
class JobStatus:
    name: str  # a run id, or t1-<index>
    stage: str  # "t1" or "run"
    state: str
    detail: str = ""
    fraction: float = 0.0  # of the job's steps finished (for the remaining time)


def grid_status(plan: Plan) -> list[JobStatus]:
    """Every T1 job, then every run, with its state."""
    queued = slurm_queue(plan)
    jobs = []
    for job in plan.t1_jobs:
        done = t1_done(plan, job.index)
        jobs.append(_with_process(plan, JobStatus(job.name, "t1", "done" if done else "pending"), queued))
    for entry in plan.runs:
        jobs.append(_with_process(plan, _run_status(plan, entry), queued))
    return jobs


def _run_status(plan: Plan, entry: dict) -> JobStatus:
    from bench.results.store import MethodRecord

    run_dir = Path(plan.results) / "runs" / entry["run_id"]
    path = run_dir / "methods" / entry["method"] / "result.json"
    if not (run_dir / "config.json").exists():
        return JobStatus(entry["run_id"], "run", "pending")
    if not path.exists():
        return JobStatus(entry["run_id"], "run", "interrupted", "no step finished")
    try:
        record = MethodRecord(**read_json(path))
    except (TypeError, ValueError):
        return JobStatus(entry["run_id"], "run", "interrupted", "unreadable result.json")
    if record.complete:
        return JobStatus(entry["run_id"], "run", "done", f"{len(record.steps)} step(s)", 1.0)
    return JobStatus(entry["run_id"], "run", "interrupted", f"{len(record.steps)} step(s) finished",
                     len(record.steps) / max(1, len(record.tasks)))


def _with_process(plan: Plan, status: JobStatus, queued: dict[str, str]) -> JobStatus:
    """Refine a job that is not done with what its last process said (state file, queue)."""
    if status.state == "done":
        return status
    state = worker.read_state(plan.directory, status.name)
    if state.get("state") == "running" and _alive(state, status.name, queued):
        status.state = "running"
        status.detail = _progress_text(plan, status.name) or status.detail
    elif state.get("state") == "failed":
        status.state, status.detail = "failed", state.get("error", "")
    elif status.name in queued:
        status.detail = f"queued ({queued[status.name]})" + (f"; {status.detail}" if status.detail else "")
    return status


def _alive(state: dict, name: str, queued: dict[str, str]) -> bool:
    """A Slurm job by the queue; a process on this host by its pid."""
    if state.get("slurm_job"):
        return queued.get(name, "").endswith(" RUNNING")
    if state.get("host") == socket.gethostname() and state.get("pid"):
        try:
            os.kill(int(state["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return _not_zombie(int(state["pid"]))
    return True  # another machine, no queue to ask: trust the state file


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _progress_text(plan: Plan, name: str) -> str:
    path = worker.progress_path(plan.directory, name)
    try:
        progress = read_json(path)
    except (OSError, ValueError):
        return ""
    return f"{progress['fit']}: epoch {progress['epoch']}/{progress['epochs']}"


def remaining_seconds(plan: Plan, jobs: list[JobStatus]) -> tuple[float, float] | None:
    """(max, early) device-seconds left, from estimate.json; None without an estimate."""
    path = plan.directory / "estimate.json"
    if not path.exists():
        return None
    estimate = read_json(path)
    left = [0.0, 0.0]
    for job in jobs:
        if job.state == "done":
            continue
        cost = estimate["jobs"].get(job.name)
        if cost is None:
            continue
        for i in (0, 1):
            left[i] += cost[i] * (1.0 - job.fraction)
    return left[0], left[1]


def render(plan: Plan, jobs: list[JobStatus], fmt: str = "github") -> str:
    from tabulate import tabulate

    from bench.experiments.estimate import duration

    counts = {state: sum(job.state == state for job in jobs) for state in STATES}
    table = tabulate([(job.name, job.stage, job.state, job.detail) for job in jobs],
                     headers=["job", "stage", "state", "detail"], tablefmt=fmt)
    summary = f"grid {plan.spec['name']}: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    left = remaining_seconds(plan, jobs)
    if left is None:
        summary += "; remaining time: unknown (run `bench grid --estimate` once)"
    else:
        summary += (f"; remaining: {duration(left[0])} of device time at most, {duration(left[1])} "
                    "with early stopping (from --estimate)")
    return f"{table}\n{summary}"
