"""`run`: train and evaluate methods over a task sequence, then print the tables.

With `--seeds` or `--orders` it runs a sweep (one run per seed and order, see
bench/experiments/sweeps.py) and prints mean ± std tables.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import signal
import sys
import time
from pathlib import Path

from bench.commands.common import (add_format_arguments, add_progress_arguments, add_results_argument,
                                   add_settings_arguments, given_list, settings_from_args, show_progress)
from bench.errors import BenchError
from bench.results.names import safe_name

NAME = "run"
HELP = "train methods on a task sequence and print the comparison table and forgetting matrices"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", help="comma-separated method names, or 'all' (default: all)")
    parser.add_argument("--order", help="task order as 1-based numbers, e.g. 1,3,2,4,5,6")
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="start even when the estimate of data and model exceeds the memory available")
    add_settings_arguments(parser)
    parser.add_argument("--run-id", help="name of the run directory (default: time, dataset, seed)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run where it stopped")
    parser.add_argument("--override", action="store_true",
                        help="with --resume: apply settings that differ from the stored run (logged in changes.json)")
    add_progress_arguments(parser)
    parser.add_argument("--use-tuned", nargs="?", const=True, default=None, metavar="SOURCE",
                        help="apply each method's best parameters from its `bench tune` study in "
                             "<results>/studies/; `--use-tuned published`: the committed reference "
                             "studies in <results>/tuning/; or a storage URL as for tune --storage")
    parser.add_argument("--seeds", help="repeat every method for these seeds, e.g. 0,1,2 (tables show mean ± std)")
    parser.add_argument("--orders", nargs="+", metavar="ORDER",
                        help="task orders to compare, e.g. 1,2,3,4,5,6 1,3,2,4,5,6; or 'all-permutations'")
    parser.add_argument("--fixed-first", type=int, metavar="TASK",
                        help="with all-permutations: keep this task first (Conure Table 4 keeps T1)")
    parser.add_argument("--estimate", action="store_true",
                        help="time a few steps of every task of every method at this shape, print the "
                             "predicted wall time per method and in total, and exit (writes no run)")
    add_results_argument(parser)
    add_format_arguments(parser)


def config_from_args(args: argparse.Namespace) -> dict:
    data = settings_from_args(args)
    if getattr(args, "use_tuned", False):
        from bench.experiments import tuning

        tuning.apply_tuned(data, args.results, None if args.use_tuned is True else args.use_tuned)
    return data


def execute(args: argparse.Namespace) -> int:
    from bench.engine import distributed

    if args.fixed_first is not None and args.orders is None and not args.resume:  # else silently ignored
        raise BenchError("--fixed-first only applies to --orders all-permutations")
    if args.estimate:
        return _estimate(args)
    if args.run_id is not None:  # a name, not a path: checked before the data is read
        safe_name(args.run_id, "--run-id")
    # `kill` (SIGTERM, a scheduler's preemption) stops like Ctrl-C: the file being written is
    # finished or removed, and the resume hint is printed. Not under torchrun: its launcher
    # stops the ranks with SIGTERM, and a rank blocked in a collective must end at once.
    if distributed.world_size_requested() <= 1:
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    if (args.seeds is not None or args.orders is not None) and not args.resume:
        if distributed.world_size_requested() > 1:
            raise BenchError("--seeds/--orders under torchrun: start one torchrun per seed or order")
        return _sweep(args, config_from_args(args))
    from bench.config import build_run_config
    from bench.experiments.runner import preflight, resolve_order, run
    from bench.results.store import RunStore
    from bench.presets import PRESET_SUMMARY
    from bench.results.tables import render_run

    if args.resume:
        store, config = _resume(args)
        distributed.init(config.device)  # every rank loads the checkpoint; rank 0 writes
    else:
        config = build_run_config(config_from_args(args))
        # bad names, data or a run too large fail before the run is created
        n_tasks, config.methods = preflight(config, memory_check=not args.no_memory_check)
        if args.order:
            resolve_order(config.order, n_tasks, complete=True)  # the rule of --orders
        distributed.init(config.device)
        store = RunStore.create(config.to_dict(), args.results, args.run_id)
    main = distributed.is_main()
    if main:
        print(f"run {store.run_id} -> {store.directory} (preset {config.preset}: {PRESET_SUMMARY[config.preset]})",
              file=sys.stderr)
    try:
        records = run(config, store, progress=show_progress(args), on_step=_step_lines(args))
    except KeyboardInterrupt:
        if main:
            print(f"interrupted; resume with: {resume_command(store.directory, args.results)}", file=sys.stderr)
        return 130
    finally:
        store.unlock()
    if main:
        print(render_run(records, args.format, matrices=args.matrices))
    return 0


def _estimate(args: argparse.Namespace) -> int:
    """`run --estimate`: predicted wall time from a few timed steps (bench/experiments/estimate.py)."""
    from bench.config import build_run_config
    from bench.experiments import estimate
    from bench.experiments.runner import preflight

    if args.resume:
        raise BenchError("--estimate predicts a new run; it cannot resume one")
    config = build_run_config(config_from_args(args))
    n_tasks, config.methods = preflight(config)
    runs = (len(parse_seeds(args.seeds)) if args.seeds is not None else 1) * (
        len(parse_orders(args.orders, args.fixed_first, n_tasks)) if args.orders is not None else 1)
    print(estimate.render(estimate.estimate(config), config, runs))
    return 0


def _step_lines(args: argparse.Namespace):
    """Without bars (stderr is a log, not a terminal) one plain line per learnt step instead."""
    from bench.engine import distributed

    if args.quiet or show_progress(args) or not distributed.is_main():
        return None
    started = time.monotonic()

    def report(method, record) -> None:
        step = record.steps[-1]
        print(f"[{time.monotonic() - started:7.1f}s] {method}: learnt {', '.join(step['tasks'])} "
              f"in {step['seconds']:.1f}s", file=sys.stderr, flush=True)

    return report


def _resume(args: argparse.Namespace):
    """The stored run, locked, and its config; settings given now must match it (or --override)."""
    from bench.experiments.runner import resume_config
    from bench.results.store import RunStore

    given = [flag for flag, value in (("--run-id", args.run_id), ("--seeds", args.seeds),
                                      ("--orders", args.orders), ("--fixed-first", args.fixed_first))
             if value is not None]
    if given:
        raise BenchError(f"--resume continues one stored run; {', '.join(given)} cannot apply to it "
                         "(a sweep resumes by rerunning its command with the same --run-id)")
    store = RunStore.open(args.resume, args.results).lock()
    try:
        return store, resume_config(store, config_from_args(args), args.override)
    except BaseException:
        store.unlock()
        raise


def resume_command(directory: Path, results: Path) -> str:
    """The command that resumes the run in `directory`, exactly as it must be typed: with
    --results when that is not the default, or the run's path when it lies elsewhere."""
    from bench.config import DEFAULT_ROOT

    if Path(directory) != Path(results) / "runs" / Path(directory).name:
        return f"python -m bench run --resume {shlex.quote(str(directory))}"
    command = f"python -m bench run --resume {shlex.quote(Path(directory).name)}"
    if Path(results) != DEFAULT_ROOT:
        command += f" --results {shlex.quote(str(results))}"
    return command


def _sweep(args: argparse.Namespace, data: dict) -> int:
    """`run --seeds/--orders`: run (or resume) every run of the sweep, then print its tables."""
    from bench.config import build_run_config
    from bench.experiments import sweeps
    from bench.experiments.runner import preflight, resolve_order
    from bench.results.store import new_run_id

    base = build_run_config(data)
    n_tasks, base.methods = preflight(base, memory_check=not args.no_memory_check)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else [base.seed]
    orders = (parse_orders(args.orders, args.fixed_first, n_tasks) if args.orders is not None
              else [resolve_order(base.order, n_tasks, complete=bool(args.order))])
    sweep_id = args.run_id or new_run_id({**data, "dataset": base.dataset, "seed": "x"}).replace("-sx", "")
    try:
        sweep = sweeps.run_sweep(base, seeds, orders, sweep_id, args.results, progress=show_progress(args),
                                 log=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        print(f"interrupted; resume the sweep with the same command and --run-id {sweep_id}", file=sys.stderr)
        return 130
    print(sweeps.render_sweep(sweep, args.results, args.format))
    return 0


def parse_seeds(text: str) -> list[int]:
    """Distinct seeds, each in the range numpy and torch accept (checked before any run exists)."""
    from bench.config import SEED_BOUNDS, check_value

    try:
        seeds = [int(part) for part in given_list(text, "--seeds")]
    except ValueError:
        raise BenchError(f"--seeds expects integers such as 0,1,2, got '{text}'") from None
    if len(set(seeds)) != len(seeds):
        raise BenchError(f"--seeds expects distinct integers, got '{text}'")
    return [check_value(seed, int, "--seeds", SEED_BOUNDS) for seed in seeds]


def parse_orders(values: list[str], fixed_first: int | None, n_tasks: int) -> list[list[int]]:
    from bench.experiments.runner import resolve_order

    if fixed_first is not None and not 1 <= fixed_first <= n_tasks:
        raise BenchError(f"--fixed-first {fixed_first}: expected a task number between 1 and {n_tasks}")
    if values == ["all-permutations"]:
        tasks = list(range(1, n_tasks + 1))
        if fixed_first is None:
            return [list(p) for p in itertools.permutations(tasks)]
        rest = [t for t in tasks if t != fixed_first]
        return [[fixed_first, *p] for p in itertools.permutations(rest)]
    if fixed_first is not None:
        raise BenchError("--fixed-first only applies to --orders all-permutations")
    orders = []
    for text in values:
        try:
            order = [int(part) for part in given_list(text, "--orders")]
        except ValueError:
            raise BenchError(f"--orders expects orders such as 1,3,2,4,5,6 or all-permutations, got '{text}'") from None
        order = resolve_order(order, n_tasks, complete=True)
        if order in orders:
            raise BenchError(f"order {text} given twice")
        orders.append(order)
    return orders
