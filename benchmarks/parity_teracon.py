"""Parity of the harness's TERACON with the released code (Sein-Kim/TERACON) on identical files.

Run by hand (CPU is fine; a GPU is used by both sides when one is there):

    OMP_NUM_THREADS=1 python benchmarks/parity_teracon.py --released /path/to/your/TERACON-checkout

What it does, each step cached under --out (default results/parity/, not committed), so a
rerun of one side never redoes the other:

1. data/: one synthetic dataset (--users 24000, --items 1000, --seq-len 20) written in the
   released TTL file names (datasets/ttl.py `write_release`), read by both sides.
2. released-src/: a COPY of your checkout with the edits listed in `EDITS` below (your
   checkout is never changed, and nothing of the released code is stored in this repository):
     - train_task1.py, train_teracon.py, inference_past_tasks.py: model_para
       'dilated_channels' 256 -> --d (64) and 'dilations' [1,4,1,4,1,4,1,4] -> --dilations
       ([1,4]); these are hard-coded there, with no command-line argument;
     - teracon.py, generator_hat_other.py: `.to(t.get_device())`, `torch.tensor([t_]).to(device)`
       and `torch.tensor([t]).to(device)` -> `.to(t.device)` / `.to(x.device)`, so the
       scripts run on a CPU (`get_device()` is -1 there and `--gpu_num` is an int); on a GPU
       they pick the same device as before;
     - train_task1.py: `.view([-1])` -> `.reshape([-1])` (recent torch keeps the strides of the
       numpy slice `batch_sam[:, 1:]`, and view() then fails; same values).
   Everything else is a command-line argument of the scripts: --epochs (4), --lr, --smax,
   --batch, --seed, --datapath, --datapath_index, --paths, --savepath, --n_tasks,
   --inference_task, --gpu_num (0 when CUDA is available; without CUDA they fall back to CPU).
3. released/seed<S>/: the schedule of ttl_train.sh (train_task1.py --lr 1e-3 with its own
   batch 32; train_teracon.py for tasks 2..6, --lr 1e-3 at task 2 then 1e-4, --batch 1024,
   --smax 50, alpha 0.7 by default), then inference_past_tasks.py with the task-6 model on
   every task (the final row). The diagonal is the test score each script logs at its best
   validation epoch (task<N>.txt).
4. harness/<label>/seed<S>/: `python -m bench run --dataset ttl --data-dir data --preset paper
   --methods TERACON` with the same size and schedule (d, dilations, --epochs, T1 batch 32 /
   lr 1e-3, later batch 1024, lr 1e-3 at T2 then 1e-4, alpha 0.7, smax 50) and the split seed
   set to the run's seed, plus `--harness-args` (e.g. `--protocol released`, or `--set ...` to
   measure one cause; give each such setting its own --label).

Then it prints, per side, the diagonal and the final row (mean ± std over the seeds; MRR@5
for T1-T3, accuracy for T4-T6), the per-task difference of the means and whether it is
within max(0.02, sqrt(std_released^2 + std_harness^2)) (issue 19's criterion).

Sizes: one seed at 24,000 users took 8-13 min (released) and 8-10 min (harness) on one thread
of the shared 2-core CPU here; --jobs N runs N seeds at once. Below about 20,500 users a class
task's validation split is smaller than one 1024-row batch and the released scripts divide by
zero (getBatch yields no batch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

N_TASKS = 6
SCRIPTS = ("train_task1.py", "train_teracon.py", "inference_past_tasks.py")
# The edits made to the copy of the released scripts: (files, old text, new text). Each old
# text must occur in each file, so a changed release fails loudly instead of running unedited.
CPU_EDITS = [
    (("teracon.py", "generator_hat_other.py"), ".to(t.get_device())", ".to(t.device)"),
    (("teracon.py",), "torch.tensor([t_]).to(device)", "torch.tensor([t_]).to(x.device)"),
    (("generator_hat_other.py",), "torch.tensor([t]).to(device)", "torch.tensor([t]).to(x.device)"),
    # torch >= 2 keeps a numpy slice's strides in torch.LongTensor(batch[:, 1:]), so view() fails
    (("train_task1.py",), ".view([-1])", ".reshape([-1])"),
]


def size_edits(d: int, dilations: list[int]) -> list[tuple[tuple[str, ...], str, str]]:
    return [(SCRIPTS, "'dilated_channels': 256", f"'dilated_channels': {d}"),
            (SCRIPTS, "'dilations': [1,4,1,4,1,4,1,4,]", f"'dilations': {list(dilations)}")]


def edits(d: int, dilations: list[int]) -> list[tuple[tuple[str, ...], str, str]]:
    return size_edits(d, dilations) + CPU_EDITS


def patch_copy(source: Path, target: Path, d: int, dilations: list[int]) -> None:
    """Copy the released checkout's Python files to `target` and apply `edits` there."""
    copy_with_edits(source, target, SCRIPTS + ("teracon.py", "generator_hat_other.py", "utils.py", "data_loader.py"),
                    "a TERACON checkout", edits(d, dilations))


def copy_with_edits(source: Path, target: Path, required: tuple[str, ...], what: str,
                    changes: list[tuple[tuple[str, ...], str, str]]) -> None:
    """A copy of a released checkout's Python files with each (files, old, new) edit applied,
    listed in EDITS.txt; a checkout without `required` files or an edit's text is one error."""
    missing = [name for name in required if not (source / name).is_file()]
    if missing:
        raise SystemExit(f"error: {source} is not {what} (missing {', '.join(missing)})")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for path in source.glob("*.py"):
        shutil.copy2(path, target / path.name)
    for files, old, new in changes:
        for name in files:
            text = (target / name).read_text()
            if old not in text:
                raise SystemExit(f"error: {name} of {source} has no `{old}`: not the release this benchmark knows")
            (target / name).write_text(text.replace(old, new))
    (target / "EDITS.txt").write_text("".join(f"{', '.join(files)}: {old!r} -> {new!r}\n"
                                              for files, old, new in changes))


def write_data(directory: Path, users: int, items: int, seq_len: int, seed: int) -> list[Path]:
    from bench.datasets.synthetic import SyntheticOptions, generate
    from bench.datasets.ttl import write_release

    done = directory / "DONE.json"
    wanted = {"users": users, "items": items, "seq_len": seq_len, "seed": seed}
    if done.exists() and json.loads(done.read_text()) == wanted:
        return sorted(directory.glob("original_desen_*.csv"))
    dataset = generate(SyntheticOptions(n_users=users, n_items=items, seq_len=seq_len, seed=seed))
    paths = write_release(dataset, directory)
    done.write_text(json.dumps(wanted))
    return paths


def thread_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    return env


def call(command: list[str], cwd: Path, log: Path) -> None:
    with open(log, "a") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        result = subprocess.run(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=thread_env())
    if result.returncode != 0:
        raise RuntimeError(f"{command[1]} failed (exit {result.returncode}); see {log}")


def last_score(text: str) -> float:
    """The last test score a released script logged: MRR@5 for item tasks, else hit@1 (accuracy)."""
    mrr = re.findall(r"Accuracy mrr_5: ([0-9.eE+-]+)", text)
    if mrr:
        return float(mrr[-1])
    accuracy = re.findall(r"accuracy\(hit@1\):\s*([0-9.]+)", text)
    if not accuracy:
        raise RuntimeError("no test score in the released script's log")
    return float(accuracy[-1]) / 100.0


def run_released(src: Path, data: list[Path], out: Path, seed: int, epochs: int, cuda: bool) -> dict:
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*"):
        stale.unlink()
    log, index = out / "log.txt", str(out / "index.csv")
    common = ["--seed", str(seed), "--datapath_index", index] + (["--gpu_num", "0"] if cuda else [])
    call([sys.executable, "train_task1.py", "--epochs", str(epochs), "--lr", "0.001",
          "--datapath", str(data[0]), "--savepath", str(out / "task1")] + common, src, log)
    for n in range(2, N_TASKS + 1):
        call([sys.executable, "train_teracon.py", "--epochs", str(epochs), "--lr", "0.001" if n == 2 else "0.0001",
              "--smax", "50", "--batch", "1024", "--datapath", str(data[n - 1]),
              "--paths", str(out / f"task{n - 1}.t7"), "--savepath", str(out / f"task{n}"),
              "--n_tasks", str(n)] + common, src, log)
    for n in range(1, N_TASKS + 1):
        call([sys.executable, "inference_past_tasks.py", "--datapath", str(data[n - 1]),
              "--paths", str(out / f"task{N_TASKS}.t7"), "--n_tasks", str(N_TASKS), "--inference_task", str(n),
              "--savepath", str(out / f"final{n}")] + common, src, log)
    result = {"diagonal": [last_score((out / f"task{n}.txt").read_text()) for n in range(1, N_TASKS + 1)],
              "final": [last_score((out / f"final{n}.txt").read_text()) for n in range(1, N_TASKS + 1)]}
    result_path.write_text(json.dumps(result))
    for model in out.glob("*.t7"):
        model.unlink()
    return result


def harness_command(data_dir: Path, root: Path, seed: int, epochs: int, d: int, dilations: list[int],
                    extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--dataset", "ttl", "--data-dir", str(data_dir),
            "--preset", "paper", "--methods", "TERACON", "--seed", str(seed), "--epochs", str(epochs),
            "--set", f"backbone.embedding_dim={d}", "--set", f"backbone.dilations={json.dumps(dilations)}",
            # the paper preset's TERACON lr/batch given run-wide (the same values), so the run
            # does not first train the shared T1 model that only the baselines use
            "--set", "train.lr=0.001", "--set", "train.batch_size=1024",
            "--set", "train.first_task.lr=0.001", "--set", "train.first_task.batch_size=32",
            "--set", f"dataset_options.seed={seed}", "--set", f"dataset_options.cache_dir={root.parent.parent / 'cache'}",
            "--results", str(root), "--run-id", "run", "--quiet", *extra]


def run_harness(data_dir: Path, out: Path, seed: int, epochs: int, d: int, dilations: list[int],
                extra: list[str]) -> dict:
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    call(harness_command(data_dir, out, seed, epochs, d, dilations, extra), REPO, out / "log.txt")
    record = json.loads((out / "runs" / "run" / "methods" / "TERACON" / "result.json").read_text())
    R = [[math.nan] * N_TASKS for _ in range(N_TASKS)]
    for step in record["steps"]:
        for name, scores in step["scores"].items():
            R[step["row"]][record["tasks"].index(name)] = scores[record["metrics"][name]]
    result = {"diagonal": [R[i][i] for i in range(N_TASKS)], "final": R[-1], "command": extra}
    result_path.write_text(json.dumps(result))
    return result


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def report(released: list[dict], harness: list[dict], label: str) -> str:
    """Markdown tables: both sides' rows (mean ± std), the difference and the tolerance check."""
    return parity_tables(released, harness, label, N_TASKS, "MRR@5 T1-T3, accuracy T4-T6")


def compare(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float, bool]:
    """(difference b - a, tolerance max(0.02, combined std), within) of two (mean, std) pairs."""
    (ma, sa), (mb, sb) = a, b
    tolerance = max(0.02, math.sqrt(sa ** 2 + sb ** 2))
    return mb - ma, tolerance, abs(mb - ma) <= tolerance


def parity_tables(released: list[dict], harness: list[dict], label: str, n_tasks: int, metric: str,
                  released_name: str = "released code") -> str:
    """The final and diagonal rows of both sides (mean ± std over seeds, and of the per-seed
    Avg), their difference and whether it is within max(0.02, the combined std)."""
    lines = []
    for row in ("final", "diagonal"):
        lines += [f"\n{row} row ({len(released)} released / {len(harness)} harness seeds; {metric})\n",
                  "| | " + " | ".join(f"T{n}" for n in range(1, n_tasks + 1)) + " | Avg |",
                  "|---" * (n_tasks + 2) + "|"]
        stats = {}
        for side, results in ((released_name, released), (f"harness {label}", harness)):
            if not results:
                continue
            columns = [mean_std([r[row][n] for r in results]) for n in range(n_tasks)]
            stats[side] = columns + [mean_std([sum(r[row]) / n_tasks for r in results])]
            lines.append(f"| {side} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in stats[side]) + " |")
        if len(stats) == 2:
            checks = [compare(a, b) for a, b in zip(*stats.values())]
            lines.append("| difference | " + " | ".join(f"{diff:+.3f}" for diff, _, _ in checks) + " |")
            lines.append("| within max(0.02, stds) | " + " | ".join(
                f"{'yes' if ok else 'NO'} ({tol:.3f})" for _, tol, ok in checks) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--released", type=Path, help="your checkout of github.com/Sein-Kim/TERACON "
                        "(needed unless the released side is cached already)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "parity")
    parser.add_argument("--users", type=int, default=24000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--seq-len", type=int, default=20)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--dilations", default="1,4")
    parser.add_argument("--side", choices=("both", "released", "harness", "report"), default="both")
    parser.add_argument("--label", default="default", help="name of this harness setting's cache folder")
    parser.add_argument("--harness-args", default="", help="extra `bench run` arguments, e.g. "
                        "'--protocol released' or '--set method_options.TERACON.head_init=harness'")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (each one thread)")
    args = parser.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    dilations = [int(s) for s in args.dilations.split(",")]
    import torch

    cuda = torch.cuda.is_available()
    out = args.out / f"u{args.users}-i{args.items}-l{args.seq_len}-d{args.d}-{'x'.join(map(str, dilations))}-e{args.epochs}"
    data = write_data(out / "data", args.users, args.items, args.seq_len, 0)
    data = [data_path for name in _release_names() for data_path in data if data_path.name == name]
    extra = args.harness_args.split()

    def released_side(seed: int) -> dict | None:
        path = out / "released" / f"seed{seed}" / "result.json"
        if path.exists() or args.side in ("both", "released"):
            if not path.exists() and args.released is None:
                raise SystemExit("error: --released DIR is needed to run the released side")
            return run_released(src, data, path.parent, seed, args.epochs, cuda)
        return None

    def harness_side(seed: int) -> dict | None:
        path = out / "harness" / args.label / f"seed{seed}" / "result.json"
        if path.exists() or args.side in ("both", "harness"):
            return run_harness(out / "data", path.parent, seed, args.epochs, args.d, dilations, extra)
        return None

    src = out / "released-src"
    if args.side in ("both", "released") and args.released is not None:
        patch_copy(args.released.resolve(), src, args.d, dilations)
    jobs = [(side, seed) for side in (released_side, harness_side) for seed in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs))
    released = [r for r in results[:len(seeds)] if r is not None]
    harness = [r for r in results[len(seeds):] if r is not None]
    ran_with = harness[0].get("command", extra) if harness else extra  # as cached, for --side report
    print(f"parity: {args.users} users, {args.items} items, L={args.seq_len}, d={args.d}, "
          f"dilations {dilations}, {args.epochs} epochs, seeds {seeds}, harness '{args.label}' {' '.join(ran_with)}")
    print(report(released, harness, args.label))
    return 0


def _release_names() -> list[str]:
    from bench.datasets.ttl import TTL_FILES

    return TTL_FILES


if __name__ == "__main__":
    sys.exit(main())
