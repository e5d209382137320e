"""`bench run --estimate` against the measured wall time of the same run, as a markdown row.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/estimate_vs_run.py            # the main job
    python benchmarks/estimate_vs_run.py -- --methods SinMo,FineSmax --epochs 2          # any run

Both commands get a fresh, empty T1 cache (so the estimate prices T1 as trained, as the run
trains it) and a scratch results folder; the run's time is the wall time of its process.
Run it alone on the machine: other work on the same cores skews both figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def seconds(text: str) -> float:
    value, unit = text.split()
    return float(value) * UNITS[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_args", nargs="*", help="arguments of `bench run` (default: --methods all)")
    args = parser.parse_args()
    run_args = args.run_args or ["--methods", "all"]
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "BENCH_T1_CACHE": str(Path(scratch) / "t1")}
        command = [sys.executable, "-m", "bench", "run", *run_args, "--results", str(Path(scratch) / "results")]
        started = time.perf_counter()
        estimate = subprocess.run([*command, "--estimate"], cwd=ROOT, env=env, capture_output=True, text=True,
                                  check=True)
        estimating = time.perf_counter() - started
        total = re.search(r"^total\s+(\S+ \S+)\s+(\S+ \S+)", estimate.stdout, re.MULTILINE)
        started = time.perf_counter()
        subprocess.run([*command, "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        measured = time.perf_counter() - started
    high, early = seconds(total.group(1)), seconds(total.group(2))
    print(estimate.stdout)
    print("| run | threads | estimate max | estimate early | measured | measured / max | measured / early "
          "| --estimate took |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| `bench run {' '.join(run_args)}` | {os.environ.get('OMP_NUM_THREADS', 'all')} | {high:.0f} s "
          f"| {early:.0f} s | {measured:.0f} s | {measured / high:.2f} | {measured / early:.2f} | {estimating:.0f} s |")


if __name__ == "__main__":
    main()
