"""`bench grid`: spec expansion and names, the T1 stage, the local launcher (two pretend devices,
a run killed with kill -9), the status table, and a real single-node Slurm cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.errors import BenchError
from bench.grid import worker
from bench.grid.spec import load_spec, expand
from bench.grid.stages import Plan, make_plan
from bench.grid.status import grid_status, render

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--set", "dataset_options.n_users=200", "--device", "cpu"]
GRID = ["--methods", "SinMo,FineSmax", "--seeds", "0,1", *TINY]


def _flags(**values) -> dict:
    return values


# --- the spec ----------------------------------------------------------------------------------

def test_spec_file_and_flags_expand_to_deterministic_run_names(tmp_path):
    spec_file = tmp_path / "grid.toml"
    spec_file.write_text('name = "paper"\nmethods = ["SinMo", "DNN"]\nseeds = [0, 1]\n'
                         'set = ["train.epochs=1"]\n[settings]\nbackbone = {embedding_dim = 8}\n'
                         '[slurm]\npartition = "gpu"\n')
    spec = load_spec(spec_file, _flags(seeds=[2], set=["dataset_options.n_users=200"], slurm={"mem_gb": 8.0}))
    runs = expand(spec)
    assert [run.run_id for run in runs] == ["paper-SinMo-s2", "paper-DNN-s2"]  # the flag's seeds win
    assert runs[0].settings["train"] == {"epochs": 1} and runs[0].settings["backbone"] == {"embedding_dim": 8}
    assert runs[0].settings["dataset_options"] == {"n_users": 200} and runs[0].settings["methods"] == ["SinMo"]
    assert spec.slurm.partition == "gpu" and spec.slurm.mem_gb == 8.0  # the file's table, the flag laid over it
    assert [run.run_id for run in expand(spec)] == [run.run_id for run in runs]  # the same names every time

    several = load_spec(None, _flags(name="g", methods=["SinMo"], seeds=[0], orders=[[1, 2, 3, 4, 5, 6],
                                                                                      [1, 3, 2, 4, 5, 6]]))
    assert [run.run_id for run in expand(several)] == ["g-SinMo-o123456-s0", "g-SinMo-o132456-s0"]
    assert expand(several)[1].settings["order"] == [1, 3, 2, 4, 5, 6]


@pytest.mark.parametrize("flags, message", [
    ({"name": "a b"}, "name 'a b'"),
    ({"name": "../x"}, "name '../x': expected one name"),  # the names rule of bench/results/names.py
    ({"seeds": [0, 0]}, "seeds must be a non-empty list of distinct values"),
    ({"local": {"per_device": 0}}, "grid spec.local.per_device"),
])
def test_bad_specs_fail_with_one_line(flags, message):
    with pytest.raises(BenchError, match=message):
        load_spec(None, flags)


def test_a_bad_run_setting_fails_before_anything_starts(tmp_path, capsys):
    assert main(["grid", "--methods", "SinMo", "--set", "train.epochs=0", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: config.train.epochs")
    assert not (tmp_path / "grids").exists()


# --- the T1 stage ------------------------------------------------------------------------------

def test_the_plan_gives_each_distinct_t1_model_one_job(tmp_path):
    """SinMo and FineSmax share each seed's T1 model, DNN needs none, TERACON trains its own."""
    spec = load_spec(None, _flags(name="p", methods=["SinMo", "FineSmax", "DNN", "TERACON"], seeds=[0, 1],
                                  set=["dataset_options.n_users=200"]))
    plan = make_plan(spec, tmp_path)
    runs = {entry["run_id"]: entry["t1"] for entry in plan.runs}
    assert len(plan.t1_jobs) == 4 and len({job.key for job in plan.t1_jobs}) == 4
    assert runs["p-SinMo-s0"] == runs["p-FineSmax-s0"] != runs["p-SinMo-s1"] == runs["p-FineSmax-s1"]
    assert runs["p-DNN-s0"] == runs["p-DNN-s1"] == []
    assert len(runs["p-TERACON-s0"]) == 1 and runs["p-TERACON-s0"] != runs["p-SinMo-s0"]
    assert [job.key.split("-")[0] for job in plan.t1_jobs] == ["t1", "t1", "teracon", "teracon"]
    assert make_plan(spec, tmp_path).t1_jobs == plan.t1_jobs  # the same plan every time


def test_the_plan_probes_any_backbone_and_only_the_models_a_method_asks_for(tmp_path):
    """On SASRec the probe stands in a SASRec T1 model (it once built a NextItNet and failed to
    load); DITTO and Conure, whose preset train settings are their own, plan only their own T1
    model, not the shared one they never use."""
    spec = load_spec(None, _flags(name="q", methods=["FineSmax", "DITTO", "Conure"], seeds=[0], preset="paper",
                                  set=["dataset_options.n_users=200", "backbone.name=sasrec"]))
    plan = make_plan(spec, tmp_path)
    kinds = {entry["method"]: [plan.t1_jobs[i].key.split("-")[0] for i in entry["t1"]] for entry in plan.runs}
    assert kinds == {"FineSmax": ["t1"], "DITTO": ["ditto"], "Conure": ["conure"]}


def test_a_grid_folder_holds_one_grid(tmp_path):
    make_plan(load_spec(None, _flags(name="p", methods=["DNN"], set=["train.epochs=1"])), tmp_path).save()
    with pytest.raises(BenchError, match="exists with other settings for p-DNN-s0"):
        make_plan(load_spec(None, _flags(name="p", methods=["DNN"], set=["train.epochs=2"])), tmp_path)


def test_estimate_prices_each_stage_and_starts_nothing(tmp_path, t1_cache_root, capsys):
    assert main(["grid", "--name", "e", "--methods", "SinMo,DNN", "--seeds", "0,1", *TINY, "--estimate",
                 "--results", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[2:]] == [["t1", "2"], ["runs", "4"], ["total", "6"]]
    jobs = json.loads((tmp_path / "grids" / "e" / "estimate.json").read_text())["jobs"]
    assert sorted(jobs) == ["e-DNN-s0", "e-DNN-s1", "e-SinMo-s0", "e-SinMo-s1", "t1-0", "t1-1"]
    assert all(cost[0] >= cost[1] > 0 for cost in jobs.values())
    assert jobs["e-SinMo-s0"] == jobs["e-SinMo-s1"]  # one probe per shape: seeds share it
    assert not (tmp_path / "runs").exists() and not list(t1_cache_root.glob("*.pt"))  # nothing trained


# --- status ------------------------------------------------------------------------------------

def test_status_says_pending_running_interrupted_failed_and_done(tmp_path):
    spec = load_spec(None, _flags(name="s", methods=["DNN"], seeds=[0, 1, 2, 3, 4]))
    plan = make_plan(spec, tmp_path)
    plan.save()
    runs = tmp_path / "runs"

    def run_folder(run_id: str, steps: int, complete: bool) -> None:
        (runs / run_id / "methods" / "DNN").mkdir(parents=True)
        (runs / run_id / "config.json").write_text("{}")
        record = {"method": "DNN", "tasks": ["T1", "T2"], "metrics": {}, "steps": [{}] * steps, "complete": complete}
        (runs / run_id / "methods" / "DNN" / "result.json").write_text(json.dumps(record))

    run_folder("s-DNN-s1", 1, False)  # running: this process holds it, at epoch 2 of T2
    worker.write_state(plan.directory, "s-DNN-s1", "running", host=socket.gethostname(), pid=os.getpid())
    worker.progress_path(plan.directory, "s-DNN-s1").write_text(
        json.dumps({"task": "T2", "fit": "DNN T2", "epoch": 2, "epochs": 5}))
    run_folder("s-DNN-s2", 1, False)  # its process is gone (kill -9)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    worker.write_state(plan.directory, "s-DNN-s2", "running", host=socket.gethostname(), pid=dead.pid)
    worker.write_state(plan.directory, "s-DNN-s3", "failed", error="error: out of memory")
    run_folder("s-DNN-s4", 2, True)
    jobs = {job.name: job for job in grid_status(plan)}
    assert [(jobs[f"s-DNN-s{i}"].state) for i in range(5)] == ["pending", "running", "interrupted", "failed", "done"]
    assert jobs["s-DNN-s1"].detail == "DNN T2: epoch 2/5"
    assert jobs["s-DNN-s2"].detail == "1 step(s) finished" and jobs["s-DNN-s3"].detail == "error: out of memory"
    text = render(plan, list(jobs.values()))
    assert [line.split("|")[3].strip() for line in text.splitlines()[2:7]] == [
        "pending", "running", "interrupted", "failed", "done"]
    assert text.splitlines()[-1].startswith("grid s: 1 pending, 1 running, 1 interrupted, 1 failed, 1 done")

    (plan.directory / "estimate.json").write_text(json.dumps({"jobs": {f"s-DNN-s{i}": [100.0, 50.0]
                                                                        for i in range(5)}}))
    assert "remaining: 5.0 min of device time at most, 2.5 min with early stopping" in render(plan, list(
        jobs.values()))  # 100 + 50 (half done) + 50 + 100 + 0 done


def test_publish_refuses_a_grid_with_runs_not_done(tmp_path, capsys):
    make_plan(load_spec(None, _flags(name="u", methods=["DNN"])), tmp_path).save()
    assert main(["grid", "publish", "--name", "u", "--results", str(tmp_path)]) == 2
    assert "error: grid u: 1 run(s) not done (u-DNN-s0)" in capsys.readouterr().err
    assert main(["grid", "status", "--name", "nothing", "--results", str(tmp_path)]) == 2
    assert "no grid at" in capsys.readouterr().err


# --- the local launcher, for real --------------------------------------------------------------

def _bench(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=1200, **kwargs)


def _trained(grid_dir: Path) -> list[str]:
    """The T1 models trained by the grid's processes (their logs' t1-cache lines)."""
    return [line.split()[2] for path in sorted((grid_dir / "logs").glob("*.log"))
            for line in path.read_text().splitlines() if line.startswith("t1-cache: training")]


def _matrices(results: Path, plan: Plan) -> dict[str, np.ndarray]:
    from bench.results.store import RunStore

    return {entry["run_id"]: RunStore.open(entry["run_id"], results).load_record(entry["method"]).matrix()
            for entry in plan.runs}


def _record(results: Path, entry: dict) -> dict | None:
    path = results / "runs" / entry["run_id"] / "methods" / entry["method"] / "result.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stop_a_run_between_steps(results: Path, plan: Plan, timeout: float = 900) -> tuple[str, int]:
    """A run that has finished a step and not its last (so it has a checkpoint to resume from),
    its process frozen (SIGSTOP) there, so that however fast the machine it cannot finish before
    the test kills or cancels it. Returns the run id and the pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in plan.runs:
            record = _record(results, entry)
            state = worker.read_state(plan.directory, entry["run_id"])
            if not record or not record["steps"] or record["complete"] or state.get("state") != "running":
                continue
            try:
                os.kill(state["pid"], signal.SIGSTOP)
            except ProcessLookupError:
                continue
            if not _record(results, entry)["complete"]:  # it did not finish in the meantime
                return entry["run_id"], state["pid"]
            os.kill(state["pid"], signal.SIGCONT)
        time.sleep(0.02)
    raise AssertionError("no run reached a step in time")


@pytest.mark.slow
def test_local_grid_on_two_pretend_devices_survives_kill_9(tmp_path, t1_cache_root):
    results, cache = tmp_path / "results", t1_cache_root  # the cache this process's status view reads
    env = {"BENCH_T1_CACHE": str(cache)}
    command = ["grid", "--name", "loc", *GRID, "--epochs", "3", "--devices", "0,1", "--threads", "2",
               "--results", str(results)]
    launcher = subprocess.Popen([sys.executable, "-m", "bench", *command], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    plan = Plan.load(_wait_for(lambda: (results / "grids" / "loc" / "plan.json").exists() and
                               results / "grids" / "loc"))
    victim, pid = _stop_a_run_between_steps(results, plan)
    os.kill(pid, signal.SIGKILL)
    out, err = launcher.communicate(timeout=1200)
    assert launcher.returncode == 1, err  # the killed run's process failed
    assert f"{victim} rc=-9" in err
    jobs = {job.name: job for job in grid_status(plan)}
    assert jobs[victim].state == "interrupted" and all(job.state == "done" for name, job in jobs.items()
                                                       if name != victim), out
    devices = {worker.read_state(plan.directory, job)["device"] for job in jobs if job != victim}
    assert devices == {"0", "1"}  # the slots' CUDA_VISIBLE_DEVICES, round-robin

    again = _bench(*command, env=env)
    assert again.returncode == 0, again.stderr
    assert "3 run(s) done already, skipped" in again.stderr and "0 T1 job(s), 1 run(s)" in again.stderr
    assert f"run {victim}: resuming" in worker.log_path(plan.directory, victim).read_text()
    assert all(job.state == "done" for job in grid_status(plan))
    # each distinct T1 model trained once (2 seeds: 2 models), by the T1 stage; every run loaded its model
    assert sorted(_trained(plan.directory)) == sorted({job.key for job in plan.t1_jobs}) and len(plan.t1_jobs) == 2
    for entry in plan.runs:
        t1 = json.loads((results / "runs" / entry["run_id"] / "environment.json").read_text())["t1_cache"]
        assert [outcome["hit"] for outcome in t1.values()] == [True]

    published = _bench("grid", "publish", "--name", "loc", "--results", str(results), env=env)
    assert published.returncode == 0, published.stderr
    published_ids = [path.name for path in (results / "published").iterdir()
                     if not path.name.startswith(".")]  # not the publishers' .locks
    assert sorted(published_ids) == sorted(entry["run_id"] for entry in plan.runs)
    board = (results / "LEADERBOARD.md").read_text()
    assert "| SinMo " in board and "| FineSmax " in board

    # uninterrupted, the killed run gives the same matrix, bit for bit (CPU)
    alone = tmp_path / "alone"
    entry = plan.run(victim)
    assert main(["run", "--methods", entry["method"], "--seed", str(entry["seed"]), "--epochs", "3",
                 "--set", "dataset_options.n_users=200", "--device", "cpu", "--run-id", "alone", "--quiet",
                 "--results", str(alone)]) == 0
    from bench.results.store import RunStore

    assert np.array_equal(RunStore.open("alone", alone).load_record(entry["method"]).matrix(),
                          _matrices(results, plan)[victim], equal_nan=True)


def _wait_for(condition, timeout: float = 600, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


# --- a real single-node Slurm cluster ----------------------------------------------------------

SLURM_CONF = """\
ClusterName=benchci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/ctld
SlurmdSpoolDir={dir}/d
SlurmctldPidFile={dir}/ctld.pid
SlurmdPidFile={dir}/d.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    """munged, slurmctld and slurmd on the loopback address with a generated slurm.conf; the
    environment that points Slurm's commands at it. Skipped, with the reason, where they cannot start."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")
               if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Slurm not installed (missing {', '.join(missing)}): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    try:
        import submitit  # noqa: F401
    except ImportError:
        pytest.skip("submitit not installed: pip install -e '.[slurm]'")
    directory = Path("/tmp") / f"bench-slurm-{os.getpid()}"  # short: a unix socket path is at most 108 bytes
    shutil.rmtree(directory, ignore_errors=True)
    for sub in ("ctld", "d", "log", "munge"):
        (directory / sub).mkdir(parents=True)
    (directory / "munge").chmod(0o700)
    key = directory / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = directory / "slurm.conf"
    conf.write_text(SLURM_CONF.format(dir=directory, ctld_port=_free_port(), d_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []

    def start(command: list[str]) -> None:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            stop()
            pytest.skip(f"{' '.join(command[:1])} could not start: {(result.stderr or result.stdout).strip()[-300:]}")
        started.append(command[0])

    def stop() -> None:
        for name, pid_file in (("slurmd", "d.pid"), ("slurmctld", "ctld.pid"), ("munged", "munge/munged.pid")):
            try:
                os.kill(int((directory / pid_file).read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    start(["munged", "--force", f"--key-file={key}", f"--socket={directory}/munge/munge.socket",
           f"--pid-file={directory}/munge/munged.pid", f"--log-file={directory}/log/munged.log",
           f"--seed-file={directory}/munge/seed"])
    start(["slurmctld", "-f", str(conf)])
    start(["slurmd", "-f", str(conf), "-N", "localhost"])
    try:
        _wait_for(lambda: "idle" in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                                   text=True).stdout, timeout=60, every=0.5)
    except AssertionError:
        log = (directory / "log" / "slurmd.log").read_text()[-300:] if (directory / "log" / "slurmd.log").exists() else ""
        stop()
        pytest.skip(f"the Slurm node never became idle: {log}")
    yield env
    stop()
    time.sleep(1)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.slow
def test_slurm_grid_with_a_cancelled_and_requeued_job_matches_the_local_grid(tmp_path, slurm_cluster, t1_cache_root):
    env = slurm_cluster
    local_results, slurm_results = tmp_path / "local", tmp_path / "slurm"
    local = _bench("grid", "--name", "cmp", *GRID, "--epochs", "3", "--threads", "1", "--results",
                   str(local_results), env={"BENCH_T1_CACHE": str(tmp_path / "t1-local")})
    assert local.returncode == 0, local.stderr

    slurm_env = {**env, "BENCH_T1_CACHE": str(t1_cache_root)}  # the cache this process's status view reads
    submitted = _bench("grid", "--name", "cmp", *GRID, "--epochs", "3", "--launcher", "slurm", "--gpus-per-task", "0",
                       "--cpus-per-task", "1", "--mem-gb", "0.5", "--time-min", "30", "--results", str(slurm_results),
                       env=slurm_env)
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted T1 stage: 2 job(s)" in submitted.stderr
    plan = Plan.load(slurm_results / "grids" / "cmp")
    jobs = json.loads((plan.directory / "slurm" / "jobs.json").read_text())
    assert set(jobs) == {"t1-0", "t1-1", *(entry["run_id"] for entry in plan.runs)}

    victim, _ = _stop_a_run_between_steps(slurm_results, plan)  # the node is this machine
    slurm_id = jobs[victim]
    subprocess.run(["scancel", slurm_id], env=env, check=True)  # its processes get SIGKILL after KillWait
    _wait_for(lambda: slurm_id not in subprocess.run(["squeue", "-h", "-r", "-o", "%i"], env=env, capture_output=True,
                                                     text=True).stdout, timeout=120, every=0.5)
    record = json.loads((slurm_results / "runs" / victim / "methods" / plan.run(victim)["method"]
                         / "result.json").read_text())
    assert not record["complete"]  # cancelled mid-run
    subprocess.run(["scontrol", "requeue", slurm_id], env=env, check=True)
    subprocess.run(["scontrol", "update", f"jobid={slurm_id}", "StartTime=now"], env=env, check=True)  # no 2-min hold

    def finished():
        states = [job.state for job in grid_status(plan)]
        assert "failed" not in states, _bench("grid", "status", "--name", "cmp", "--results", str(slurm_results),
                                              env=slurm_env).stdout
        return all(state == "done" for state in states)

    _wait_for(finished, timeout=1200, every=2)
    assert f"run {victim}: resuming" in worker.log_path(plan.directory, victim).read_text()
    again = _bench("grid", "--name", "cmp", *GRID, "--epochs", "3", "--launcher", "slurm", "--gpus-per-task", "0",
                   "--cpus-per-task", "1", "--mem-gb", "0.5", "--results", str(slurm_results), "--wait",
                   env=slurm_env)  # the same command again: nothing left to submit
    assert again.returncode == 0, again.stderr
    assert "4 run(s) done already, skipped" in again.stderr and "submitted" not in again.stderr
    assert "grid cmp: 6 done" in again.stdout

    local_plan = Plan.load(local_results / "grids" / "cmp")
    slurm_matrices, local_matrices = _matrices(slurm_results, plan), _matrices(local_results, local_plan)
    assert slurm_matrices.keys() == local_matrices.keys() and len(slurm_matrices) == 4
    for run_id, matrix in slurm_matrices.items():
        assert np.array_equal(matrix, local_matrices[run_id], equal_nan=True), run_id
    for grid in (plan, local_plan):
        assert sorted(_trained(grid.directory)) == sorted({job.key for job in grid.t1_jobs}) and len(grid.t1_jobs) == 2
