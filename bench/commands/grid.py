"""`grid`: a grid of runs (methods x seeds x orders x datasets) on this machine or on Slurm.

    bench grid [--spec GRID.toml] [flags]     plan, then train the T1 models and the runs (skips done runs)
    bench grid --estimate                     device-hours per stage, nothing started
    bench grid status                         a table of every run
    bench grid publish                        when every run is done: publish them, regenerate the leaderboard

See docs/grid.md (bench/grid/ holds the code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands.common import add_results_argument, split_list
from bench.errors import BenchError

NAME = "grid"
HELP = "run a grid of runs (methods x seeds x orders x datasets) locally or on Slurm, resumably; status; publish"
ACTIONS = ("run", "status", "publish", "_job")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", default="run", metavar="{run,status,publish}",
                        help="run (default): start or resume the grid; status: a table of its runs; "
                             "publish: publish its finished runs and regenerate the leaderboard")
    parser.add_argument("job", nargs="?", help=argparse.SUPPRESS)  # `_job NAME`: one run or T1 job (the launchers')
    parser.add_argument("--grid-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spec", metavar="GRID.toml", help="grid spec file (flags given as well override it)")
    parser.add_argument("--name", help="grid name: run ids start with it (default: grid)")
    parser.add_argument("--methods", help="comma-separated methods, or 'all'")
    parser.add_argument("--seeds", help="seeds, e.g. 0,1,2")
    parser.add_argument("--orders", nargs="+", metavar="ORDER", help="task orders, e.g. 1,2,3,4,5,6 1,3,2,4,5,6")
    parser.add_argument("--dataset", help="dataset adapter, or several comma-separated (default: synthetic)")
    parser.add_argument("--data-dir", help="directory holding the dataset's files")
    parser.add_argument("--preset", choices=["paper", "quick"], help="settings every run starts from")
    parser.add_argument("--config", help="JSON or TOML file of run settings (as bench run --config)")
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                        help="override one run setting in every run (repeatable)")
    parser.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    parser.add_argument("--device", help="shortcut for --set device=D (auto by default: a GPU where one is visible)")
    parser.add_argument("--launcher", choices=["local", "slurm"], default="local",
                        help="local (default): a process pool on this machine; slurm: job arrays through submitit")
    local = parser.add_argument_group("local launcher")
    local.add_argument("--per-device", type=int, metavar="N", help="runs at a time on each device (default 1)")
    local.add_argument("--devices", help="CUDA_VISIBLE_DEVICES values shared round-robin, e.g. 0,1 "
                                         "(default: every visible GPU, else cpu)")
    local.add_argument("--threads", type=int, metavar="N", help="CPU threads divided among the runs (default: all)")
    slurm = parser.add_argument_group("slurm launcher")
    slurm.add_argument("--partition")
    slurm.add_argument("--account")
    slurm.add_argument("--gpus-per-task", type=int, metavar="N", help="GPUs per job (default 1)")
    slurm.add_argument("--cpus-per-task", type=int, metavar="N", help="CPUs per job (default 4)")
    slurm.add_argument("--mem-gb", type=float, metavar="GB", help="memory per job (default 16)")
    slurm.add_argument("--time-min", type=int, metavar="MIN", help="time limit per job; a job that reaches it "
                                                                   "is requeued and resumes (default 240)")
    slurm.add_argument("--wait", action="store_true",
                       help="after submitting, wait until no job of the grid is queued or running, then print "
                            "the status table (exit 1 unless every run is done)")
    parser.add_argument("--estimate", action="store_true",
                        help="time a few steps of every distinct run shape; print device-hours per stage and exit")
    parser.add_argument("--publish", action="store_true",
                        help="after the grid (local, or slurm with --wait): publish its runs and regenerate "
                             "the leaderboard (all must be done)")
    parser.add_argument("--force", action="store_true", help="with publish: replace runs published before")
    parser.add_argument("--format", default="github", choices=["github", "plain", "simple"], help="status table style")
    add_results_argument(parser)


def _flags(args: argparse.Namespace) -> dict:
    sets = list(args.set or [])
    if args.epochs is not None:
        sets.append(f"train.epochs={args.epochs}")
    if args.device:
        sets.append(f"device={args.device}")
    orders = None
    if args.orders:
        try:
            orders = [[int(part) for part in split_list(text)] for text in args.orders]
        except ValueError:
            raise BenchError(f"--orders expects orders such as 1,3,2,4,5,6, got {' '.join(args.orders)}") from None
    try:
        seeds = [int(part) for part in split_list(args.seeds)] if args.seeds else None
    except ValueError:
        raise BenchError(f"--seeds expects integers such as 0,1,2, got '{args.seeds}'") from None
    local = {"per_device": args.per_device, "threads": args.threads,
             "devices": split_list(args.devices) if args.devices else None}
    slurm = {"partition": args.partition, "account": args.account, "gpus_per_task": args.gpus_per_task,
             "cpus_per_task": args.cpus_per_task, "mem_gb": args.mem_gb, "time_min": args.time_min}
    plugins = [str(Path(p).resolve()) for p in args.plugin + args.plugin_after]
    return {"name": args.name, "methods": split_list(args.methods) if args.methods else None, "seeds": seeds,
            "orders": orders, "dataset": split_list(args.dataset) if args.dataset else None,
            "data_dir": args.data_dir, "preset": args.preset, "config": args.config, "set": sets or None,
            "plugins": plugins or None,
            "local": {k: v for k, v in local.items() if v is not None} or None,
            "slurm": {k: v for k, v in slurm.items() if v is not None} or None}


def execute(args: argparse.Namespace) -> int:
    if args.action not in ACTIONS:
        raise BenchError(f"grid: unknown action '{args.action}'; expected run, status or publish")
    if args.action == "_job":
        from bench.grid import worker

        if not args.job or args.grid_dir is None:
            raise BenchError("grid _job needs a job name and --grid-dir")
        return worker.execute(args.grid_dir, args.job)
    from bench.grid.spec import load_spec
    from bench.grid.stages import Plan

    spec = load_spec(args.spec, _flags(args))
    if args.action == "status":
        return _status(Plan.load(Plan.folder(args.results, spec.name)), args.format)
    if args.action == "publish":
        return _publish(Plan.load(Plan.folder(args.results, spec.name)), args.force)
    from bench.grid.stages import make_plan

    plan = make_plan(spec, args.results.resolve())
    plan.save()
    if args.estimate:
        from bench.grid.cost import estimate_grid, render

        print(render(plan, estimate_grid(plan)))
        return 0
    return _launch(plan, spec, args)


def _launch(plan, spec, args: argparse.Namespace) -> int:
    from bench.grid.status import grid_status, render

    jobs = grid_status(plan)
    t1_todo = [int(job.name[3:]) for job in jobs if job.stage == "t1" and job.state != "done"]
    runs_todo = [job.name for job in jobs if job.stage == "run" and job.state not in ("done", "running")]
    skipped = sum(job.state == "done" for job in jobs if job.stage == "run")
    log = _log
    if skipped:
        log(f"grid {spec.name}: {skipped} run(s) done already, skipped")
    if args.launcher == "slurm":
        from bench.grid import slurm

        rc = slurm.launch(plan, t1_todo, runs_todo, spec.slurm, log)
        if not args.wait:
            if args.publish:
                log("--publish needs --wait with --launcher slurm; publish later with: bench grid publish")
            return rc
        slurm.wait(plan, log)
        jobs = grid_status(plan)
        rc = 0 if all(job.state == "done" for job in jobs) else 1
    else:
        from bench.grid import local

        rc = local.launch(plan, t1_todo, runs_todo, spec.local, log)
        jobs = grid_status(plan)
    print(render(plan, jobs, args.format))
    if rc == 0 and args.publish:
        return _publish(plan, args.force)
    return rc


def _status(plan, fmt: str) -> int:
    from bench.grid.status import grid_status, render

    print(render(plan, grid_status(plan), fmt))
    return 0


def _publish(plan, force: bool) -> int:
    from bench.io import write_text
    from bench.grid.status import grid_status
    from bench.results import leaderboard

    jobs = [job for job in grid_status(plan) if job.stage == "run"]
    unfinished = [job.name for job in jobs if job.state != "done"]
    if unfinished:
        raise BenchError(f"grid {plan.spec['name']}: {len(unfinished)} run(s) not done ({', '.join(unfinished[:3])}"
                         f"{' ...' if len(unfinished) > 3 else ''}); see `bench grid status`")
    results = Path(plan.results)
    for job in jobs:
        if (results / leaderboard.PUBLISHED / job.name).exists() and not force:
            _log(f"{job.name}: published already (--force replaces it)")
            continue
        _log(f"published {leaderboard.publish(results, job.name, force)}")
    path = results / leaderboard.LEADERBOARD
    write_text(path, leaderboard.generate(results))
    print(path)
    return 0


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
