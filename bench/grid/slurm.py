"""`--launcher slurm`: the grid's jobs as Slurm job arrays, submitted through submitit.

One array for the T1 stage (a task per distinct T1 model), then the runs: one array per set
of T1 jobs they need, submitted with `--dependency=afterok:<those T1 tasks>` (and
kill-on-invalid-dep), so a run starts only once its T1 model exists and holds no GPU while
it waits. Each array task starts the same `bench grid _job` process as the local launcher,
its output in results/grids/<name>/logs/<job>.log (submitit's own logs in slurm/).

Preemption and time-outs: submitit catches Slurm's warning signal and calls `GridJob.checkpoint`,
which requeues the same job; the run then resumes from its in-task checkpoint
(`bench run --resume` semantics). A job cancelled and requeued by hand (`scontrol requeue`)
resumes the same way. Needs the `slurm` extra: pip install "userrep-bench[slurm]".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

from bench.errors import BenchError
from bench.grid import worker
from bench.grid.spec import SlurmSpec
from bench.grid.stages import Plan
from bench.io import read_json, write_json


class GridJob:
    """The callable submitit pickles into each array task: one `bench grid _job` process."""

    def __init__(self, directory: str, threads: int):
        self.directory, self.threads = directory, threads

    def __call__(self, job: str) -> int:
        import os

        from bench.grid.local import job_command

        path = worker.log_path(Path(self.directory), job)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "PYTHONUNBUFFERED": "1"}
        with open(path, "a") as output:
            rc = subprocess.run(job_command(Path(self.directory), job), env=env, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise RuntimeError(f"{job} ended with exit status {rc}; see {path}")
        return rc

    def checkpoint(self, job: str):
        """Preempted or timed out: requeue the same job (it resumes from its checkpoints)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self, job)


def jobs_path(plan: Plan) -> Path:
    return plan.directory / "slurm" / "jobs.json"


def submitted(plan: Plan) -> dict[str, str]:
    """{job name: Slurm job id} of every job this grid submitted (the latest submission)."""
    path = jobs_path(plan)
    return read_json(path) if path.exists() else {}


def _executor(plan: Plan, slurm: SlurmSpec, name: str):
    try:
        import submitit
    except ImportError:
        raise BenchError("--launcher slurm needs submitit: pip install 'userrep-bench[slurm]'") from None
    executor = submitit.SlurmExecutor(folder=plan.directory / "slurm" / "%A", max_num_timeout=slurm.max_requeues)
    additional = {"requeue": True, **slurm.additional}
    parameters = dict(job_name=f"{plan.spec['name']}-{name}", time=slurm.time_min, cpus_per_task=slurm.cpus_per_task,
                      array_parallelism=slurm.max_parallel, additional_parameters=additional)
    if slurm.gpus_per_task:
        parameters["gpus_per_node"] = slurm.gpus_per_task
    if slurm.mem_gb is not None:
        parameters["mem"] = f"{int(slurm.mem_gb * 1024)}M"
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(slurm, key):
            parameters[key] = getattr(slurm, key)
    executor.update_parameters(**parameters)
    return executor


def _submit_array(plan: Plan, slurm: SlurmSpec, stage: str, jobs: list[str], dependency: list[str]) -> dict[str, str]:
    executor = _executor(plan, slurm, stage)
    if dependency:
        executor.update_parameters(dependency="afterok:" + ":".join(dependency))
        executor.update_parameters(additional_parameters={**executor.parameters["additional_parameters"],
                                                          "kill-on-invalid-dep": "yes"})
    task = GridJob(str(plan.directory), slurm.cpus_per_task)
    with executor.batch():
        handles = [executor.submit(task, job) for job in jobs]
    return {job: handle.job_id for job, handle in zip(jobs, handles)}


def launch(plan: Plan, t1_todo: list[int], runs_todo: list[str], slurm: SlurmSpec,
           log: Callable[[str], None]) -> int:
    """Submit the T1 array and the run arrays; returns at once (`bench grid status` follows them,
    `--wait` waits for them)."""
    queued = slurm_queue(plan)
    t1_todo = [i for i in t1_todo if plan.t1_job(i).name not in queued]
    runs_todo = [r for r in runs_todo if r not in queued]
    ids = dict(submitted(plan))
    t1_ids: dict[int, str] = {}
    if t1_todo:
        names = [plan.t1_job(i).name for i in t1_todo]
        new = _submit_array(plan, slurm, "t1", names, [])
        ids.update(new)
        t1_ids = {i: new[plan.t1_job(i).name] for i in t1_todo}
        log(f"submitted T1 stage: {len(names)} job(s), array {next(iter(new.values())).split('_')[0]}")
    for name, job_id in queued.items():  # T1 jobs still queued from an earlier submission
        if name.startswith("t1-"):
            t1_ids[int(name[3:])] = job_id.split()[0]
    groups: dict[tuple[str, ...], list[str]] = {}
    for entry in plan.runs:
        if entry["run_id"] in runs_todo:
            needed = tuple(sorted(t1_ids[i] for i in entry["t1"] if i in t1_ids))
            groups.setdefault(needed, []).append(entry["run_id"])
    for dependency, runs in groups.items():
        new = _submit_array(plan, slurm, "runs", runs, list(dependency))
        ids.update(new)
        log(f"submitted {len(runs)} run(s), array {next(iter(new.values())).split('_')[0]}"
            + (f", after {', '.join(dependency)}" if dependency else ""))
    for name, job_id in queued.items():
        log(f"{name}: still queued as {job_id}")
    write_json(jobs_path(plan), ids)
    return 0


def wait(plan: Plan, log: Callable[[str], None], every: float = 30.0) -> None:
    """Return once none of the grid's jobs is queued or running any more (`--wait`)."""
    import time

    while queued := slurm_queue(plan):
        log(f"waiting: {len(queued)} job(s) queued or running")
        time.sleep(every)


def slurm_queue(plan: Plan) -> dict[str, str]:
    """{job name: "<slurm id> <state>"} of this grid's Slurm jobs still queued or running."""
    jobs = submitted(plan)
    if not jobs or shutil.which("squeue") is None:
        return {}
    ids = sorted({value.split("_")[0] for value in jobs.values()})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(ids)], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    live = dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())
    return {name: f"{job_id} {live[job_id]}" for name, job_id in jobs.items() if job_id in live}
