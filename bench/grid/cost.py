"""`bench grid --estimate`: device-hours of each stage, before anything starts.

Runs that differ only in their seed or order have the same shape, so each distinct (settings
without seed and order, method) is probed once with `bench run --estimate`'s probe
(bench/experiments/estimate.py) on this machine's device; its T1 models' cost goes to the T1
stage (a model the T1 cache holds costs nothing), the rest to each of its runs. The result
is kept in the grid's folder (estimate.json) for `bench grid status`'s remaining time.
"""

from __future__ import annotations

import json

from bench.grid.stages import Plan
from bench.io import write_json


def estimate_grid(plan: Plan) -> dict:
    """{"jobs": {name: [max s, early s]}, "stages": {...}}, also written to estimate.json."""
    from bench.config import build_run_config
    from bench.experiments import estimate

    probes: dict[str, object] = {}
    jobs: dict[str, list[float]] = {}
    for entry in plan.runs:
        shape = {k: v for k, v in entry["settings"].items() if k not in ("seed", "order")}
        key = json.dumps(shape, sort_keys=True, default=str)
        if key not in probes:
            probes[key] = estimate.estimate(build_run_config(entry["settings"]))[0]
        probe = probes[key]
        t1 = [(cost.max, cost.early) for _, _, cost in probe.t1]
        jobs[entry["run_id"]] = [probe.cost.max - sum(c[0] for c in t1), probe.cost.early - sum(c[1] for c in t1)]
        for index in entry["t1"]:
            name = plan.t1_job(index).name
            if name not in jobs and plan.t1_job(index).run_id == entry["run_id"] and plan.t1_job(index).position < len(t1):
                jobs[name] = list(t1[plan.t1_job(index).position])
    stages = {"t1": [0.0, 0.0], "runs": [0.0, 0.0]}
    for name, cost in jobs.items():
        stage = stages["t1" if name.startswith("t1-") else "runs"]
        stage[0] += cost[0]
        stage[1] += cost[1]
    result = {"jobs": jobs, "stages": stages}
    write_json(plan.directory / "estimate.json", result)
    return result


def render(plan: Plan, result: dict) -> str:
    stages = result["stages"]
    lines = [f"estimate of grid {plan.spec['name']}: {len(plan.t1_jobs)} T1 model(s), {len(plan.runs)} run(s); "
             "device-hours (one run or T1 job on one device); 'max' runs every epoch, 'early' stops each task "
             "at the first epoch early stopping may",
             f"{'stage':<10} {'jobs':>6} {'max':>12} {'early':>12}"]
    counts = {"t1": len(plan.t1_jobs), "runs": len(plan.runs)}
    for stage, (most, early) in stages.items():
        lines.append(f"{stage:<10} {counts[stage]:>6} {most / 3600:>10.3f} h {early / 3600:>10.3f} h")
    total = [sum(cost[i] for cost in stages.values()) for i in (0, 1)]
    lines.append(f"{'total':<10} {sum(counts.values()):>6} {total[0] / 3600:>10.3f} h {total[1] / 3600:>10.3f} h")
    return "\n".join(lines)
