"""Parity of the harness's DITTO with the released code (seungyoon-Choi/DITTO_official) on identical files.

Run by hand (CPU is fine):

    OMP_NUM_THREADS=1 python benchmarks/parity_ditto.py --released /path/to/your/DITTO_official-checkout

What it does, each step cached under --out (default results/parity/ditto/, not committed), so a
rerun of one side never redoes the other:

1. data/: one time-aware dataset in DITTO's release layout (benchmarks/ditto_release_data.py):
   task1.csv (click sequences), task2.csv and task3.csv (item tasks whose targets are raw ids of
   the same dictionary; their sequences bring new items), task4.csv (a class task), and
   task1..3_inference.csv (each past task's later data; T1's brings never-trained items).
2. released-src/: a COPY of your checkout with the edits listed in `EDITS` below (your checkout
   is never changed, and nothing of the released code is stored in this repository):
     - train_task1.py, train_ditto.py, inference_past_tasks_update.py: model_para
       'dilated_channels' 256 -> --d (64) and 'dilations' [1,4,1,4,1,4,1,4,] -> --dilations
       ([1,4]); they are hard-coded there (twice in train_ditto.py), with no argument;
     - ditto.py, generator_hat_other.py: `.to(t.get_device())`, `torch.tensor([t_]).to(device)`
       and `torch.tensor([t]).to(device)` -> `.to(t.device)` / `.to(x.device)`, so the scripts run
       on a CPU (`get_device()` is -1 there and `device` is the int --gpu_num); on a GPU they pick
       the same device as before;
     - train_task1.py: `.view([-1])` -> `.reshape([-1])` (recent torch keeps the strides of the
       numpy slice `batch_sam[:, 1:]`, and view() then fails; same values);
     - train_ditto.py, utils.py: `from torchmetrics.functional import pairwise_cosine_similarity`
       -> a two-line function with torchmetrics' arithmetic (rows divided by their L2 norms, then
       x @ y.T; with y given torchmetrics leaves the diagonal as it is), so the copy needs no
       package the README does not list.
   Everything else is a command-line argument of the scripts. The hard-coded
   `./saved_models/task%d_abl6.t7` and `./saved_models/mean_embedding_%s.t7` (train_ditto.py
   L155, L177, L242) are met by running each seed in its own folder with `saved_models/` and
   naming every --savepath `./saved_models/task<k>_abl6`.
3. released/seed<S>/: train_task1.py (its argparse lr 0.01 and hard-coded batch 512; the README's
   example shows 1e-4, the argparse default is what a user gets), train_ditto.py for each later
   task (--n_tasks k, lr 5e-4, batch 512, smax 50, alpha/beta/gamma 0.7/0.4/0.8, 99 negatives,
   all defaults; --classification 1 for class tasks; --classification_task names ours), then
   inference_past_tasks_update.py with the last model on every past task's inference file (the
   final row; the last task's final score is its own test). The diagonal is the test score each
   training script logs at its best validation epoch (saved_models/task<k>_abl6.txt).
4. harness/<label>/seed<S>/: `python -m bench run --dataset ditto --data-dir data --methods DITTO
   --set eval.protocol=sampled --set eval.negatives=99` with the same size, schedule and split
   seed (= the run's seed), plus `--harness-args` (give each such setting its own --label).

Then it prints, per side, the diagonal and the final row (mean ± std over the seeds; MRR@5 over
1 positive + 99 sampled negatives for item tasks, accuracy for class tasks), the per-task
difference of the means and whether it is within max(0.02, sqrt(std_released^2 + std_harness^2)).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ditto_release_data import ReleaseDataOptions, write_release_data  # noqa: E402
from parity_teracon import call, copy_with_edits, last_score, parity_tables  # noqa: E402

SCRIPTS = ("train_task1.py", "train_ditto.py", "inference_past_tasks_update.py")
SOURCES = SCRIPTS + ("ditto.py", "generator_hat_other.py", "utils.py", "data_loader.py")
TORCHMETRICS = "from torchmetrics.functional import pairwise_cosine_similarity"
# torchmetrics' pairwise_cosine_similarity(x, y) with y given: rows over their L2 norms, x @ y.T
COSINE = ("def pairwise_cosine_similarity(x, y):\n"
          "    return (x / x.norm(p=2, dim=1).unsqueeze(1)) @ (y / y.norm(p=2, dim=1).unsqueeze(1)).T")
# The edits made to the copy of the released scripts: (files, old text, new text). Each old text
# must occur in each file (every occurrence is replaced), so a changed release fails loudly.
CPU_EDITS = [
    (("ditto.py", "generator_hat_other.py"), ".to(t.get_device())", ".to(t.device)"),
    (("ditto.py",), "torch.tensor([t_]).to(device)", "torch.tensor([t_]).to(x.device)"),
    (("generator_hat_other.py",), "torch.tensor([t]).to(device)", "torch.tensor([t]).to(x.device)"),
    # torch >= 2 keeps a numpy slice's strides in torch.LongTensor(batch[:, 1:]), so view() fails
    (("train_task1.py",), ".view([-1])", ".reshape([-1])"),
    (("train_ditto.py", "utils.py"), TORCHMETRICS, COSINE),
]


def size_edits(d: int, dilations: list[int]) -> list[tuple[tuple[str, ...], str, str]]:
    return [(SCRIPTS, "'dilated_channels': 256", f"'dilated_channels': {d}"),
            (SCRIPTS, "'dilations': [1,4,1,4,1,4,1,4,]", f"'dilations': {list(dilations)}")]


# Further edits, each named, that a released VARIANT may add to measure one cause (--released-edits);
# the default comparison uses none of them.
CAUSE_EDITS = {
    # T1's test at its best validation epoch draws its 99 negatives from data_loader.py's
    # rank-ordered popularity list read by item id (utils.py model_test_ L327); the later rows
    # (inference_past_tasks_update.py -> model_test L132) and the harness's sampled protocol
    # draw uniformly. This makes T1's test draw uniformly too (padding id 0 still a candidate).
    "t1-uniform-test": (("utils.py",), "neg_target = np.random.choice(len_items, target.shape[0]*args.n_neg,p=p)",
                        "neg_target = np.random.choice(len_items, target.shape[0]*args.n_neg)"),
    # The released BPR (train_task1.py L159-167, train_ditto.py L290-295 and L355-360) repeats the
    # (N,) positive scores with `.unsqueeze(1).repeat(1, n, 1)`, which TILES them (p1..pN, p1..pN,
    # ...) while the negative scores are row by row (n of user 1, n of user 2, ...): negative m is
    # paired with the positive of user m mod N, not with its own user's. The harness's DITTO does
    # the same by default (pairs="released"); DITTO+userpairs pairs each negative with its own
    # positive. These two edits repeat each positive n times in place instead.
    "bpr-pairs": (("train_task1.py",), "pos_logits = pos_logits.unsqueeze(1).repeat(1,99,1).squeeze(2)",
                  "pos_logits = pos_logits.repeat_interleave(99)"),
    "bpr-pairs-later": (("train_ditto.py",), "pos_logits = pos_logits.unsqueeze(1).repeat(1,args.n_neg,1).squeeze(2)",
                        "pos_logits = pos_logits.repeat_interleave(args.n_neg)"),
}


def edits(d: int, dilations: list[int], causes: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, str]]:
    return size_edits(d, dilations) + CPU_EDITS + [CAUSE_EDITS[name] for name in causes]


def patch_copy(source: Path, target: Path, d: int, dilations: list[int], causes: tuple[str, ...] = ()) -> None:
    """Copy the released checkout's Python files to `target` and apply `edits` there."""
    copy_with_edits(source, target, tuple(SOURCES), "a DITTO_official checkout", edits(d, dilations, causes))


def class_numbers(kinds: list[str]) -> list[int]:
    """1-based numbers of the class tasks, T1 being the click task (the released --classification_task)."""
    return [k for k, kind in enumerate(kinds, start=2) if kind == "class"]


def released_commands(src: Path, data: Path, kinds: list[str], seed: int, t1_epochs: int,
                      epochs: int, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """The released scripts' calls for one seed, in order, run from the seed's folder; `extra`
    goes to every train_ditto.py call (e.g. `--fkt 0`)."""
    n_tasks, py = 1 + len(kinds), sys.executable
    classes = ",".join(map(str, class_numbers(kinds))) or "0"
    commands = [[py, str(src / "train_task1.py"), "--epochs", str(t1_epochs), "--seed", str(seed),
                 "--datapath", str(data / "task1.csv"), "--datapath_index", "index_task1.csv",
                 "--savepath", "./saved_models/task1_abl6"]]
    for k in range(2, n_tasks + 1):
        commands.append([py, str(src / "train_ditto.py"), "--epochs", str(epochs), "--seed", str(seed),
                         "--datapath", str(data / f"task{k}.csv"), "--n_tasks", str(k),
                         "--datapath_index", f"index_task{k - 1}.csv", "--datapath_index_re", f"index_task{k}.csv",
                         "--paths", f"./saved_models/task{k - 1}_abl6.t7", "--savepath", f"./saved_models/task{k}_abl6",
                         "--classification_task", classes, "--classification", str(int(kinds[k - 2] == "class")),
                         *extra])
    for k in range(1, n_tasks):
        commands.append([py, str(src / "inference_past_tasks_update.py"), "--seed", str(seed),
                         "--datapath", str(data / f"task{k}_inference.csv"), "--n_tasks", str(n_tasks),
                         "--inference_task", str(k), "--paths", f"./saved_models/task{n_tasks}_abl6.t7",
                         "--datapath_index", f"index_task{n_tasks}.csv", "--datapath_index_re", f"index_inference{k}.csv",
                         "--savepath", f"./final{k}",
                         "--classification", str(int(k > 1 and kinds[k - 2] == "class"))])
    return commands


def run_released(src: Path, data: Path, kinds: list[str], out: Path, seed: int, t1_epochs: int,
                 epochs: int, extra: tuple[str, ...] = (), t1_only: bool = False,
                 trained: Path | None = None) -> dict:
    """One seed of the released scripts; `t1_only` runs train_task1.py alone (the other scores NaN);
    `trained` (a finished seed folder) reuses its models and runs only the inference script."""
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    if out.exists():
        shutil.rmtree(out)
    (out / "saved_models").mkdir(parents=True)
    log, n_tasks = out / "log.txt", 1 + len(kinds)
    commands = released_commands(src, data, kinds, seed, t1_epochs, epochs, extra)
    if trained is not None:
        if not (trained / "saved_models" / f"task{n_tasks}_abl6.t7").exists():
            raise SystemExit(f"error: {trained} holds no trained models to reuse (run that setting first)")
        shutil.copytree(trained / "saved_models", out / "saved_models", dirs_exist_ok=True)
        for index in trained.glob("index_task*.csv"):
            shutil.copy2(index, out / index.name)
        commands = [c for c in commands if Path(c[1]).name == "inference_past_tasks_update.py"]
    for command in commands[:1] if t1_only else commands:
        call(command, out, log)
    logged = [out / "saved_models" / f"task{k}_abl6.txt" for k in range(1, n_tasks + 1)]
    diagonal = [last_score(path.read_text()) if path.exists() else math.nan for path in logged]
    final = [last_score((out / f"final{k}.txt").read_text()) if not t1_only else math.nan
             for k in range(1, n_tasks)] + diagonal[-1:]
    result = {"diagonal": diagonal, "final": final, "command": list(extra)}
    result_path.write_text(json.dumps(result))
    for model in out.glob("final*.t7"):  # copies of the last model; saved_models/ is kept (small)
        model.unlink()
    return result


def harness_command(data_dir: Path, root: Path, kinds: list[str], seed: int, t1_epochs: int, epochs: int,
                    d: int, dilations: list[int], extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--dataset", "ditto", "--data-dir", str(data_dir),
            # every value that matters is set below (so `paper` would run the same model), and set
            # run-wide, so the runner trains no shared T1 model for the other methods first
            "--preset", "quick", "--methods", "DITTO", "--seed", str(seed), "--epochs", str(epochs),
            "--set", f"backbone.embedding_dim={d}", "--set", f"backbone.dilations={json.dumps(dilations)}",
            "--set", "eval.protocol=sampled", "--set", "eval.negatives=99",
            "--set", "train.lr=0.0005", "--set", "train.batch_size=512", "--set", "train.patience=2",
            "--set", "train.min_epochs=1",  # the released count a stale epoch from the second on
            "--set", "train.first_task.lr=0.01", "--set", "train.first_task.batch_size=512",
            "--set", f"train.first_task.epochs={t1_epochs}", "--set", "train.first_task.patience=3",
            "--set", f"dataset_options.class_tasks={json.dumps(class_numbers(kinds))}",
            "--set", f"dataset_options.seed={seed}",
            "--results", str(root), "--run-id", "run", "--quiet", *extra]


def run_harness(data_dir: Path, out: Path, kinds: list[str], seed: int, t1_epochs: int, epochs: int, d: int,
                dilations: list[int], extra: list[str]) -> dict:
    result_path = out / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    call(harness_command(data_dir, out, kinds, seed, t1_epochs, epochs, d, dilations, extra), REPO, out / "log.txt")
    record = json.loads((out / "runs" / "run" / "methods" / "DITTO" / "result.json").read_text())
    result = matrix_rows(record, 1 + len(kinds))
    result["command"] = extra
    result_path.write_text(json.dumps(result))
    return result


def matrix_rows(record: dict, n_tasks: int) -> dict:
    """The diagonal and the final row of a harness result's R (each task's main metric)."""
    R = [[math.nan] * n_tasks for _ in range(n_tasks)]
    for step in record["steps"]:
        for name, scores in step["scores"].items():
            R[step["row"]][record["tasks"].index(name)] = scores[record["metrics"][name]]
    return {"diagonal": [R[i][i] for i in range(n_tasks)], "final": R[-1]}


def report(released: list[dict], harness: list[dict], label: str, kinds: list[str],
           released_label: str = "default") -> str:
    """Markdown tables: both sides' rows (mean ± std), the difference and the tolerance check."""
    metric = ", ".join(f"T{k} {'accuracy' if kind == 'class' else 'MRR@5'}"
                       for k, kind in enumerate(["click"] + kinds, start=1))
    name = "released code" + ("" if released_label == "default" else f" {released_label}")
    return parity_tables(released, harness, label, 1 + len(kinds), metric, name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--released", type=Path, help="your checkout of github.com/seungyoon-Choi/DITTO_official "
                        "(needed unless the released side is cached already)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "parity" / "ditto")
    defaults = ReleaseDataOptions()
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--items", type=int, default=defaults.items)
    parser.add_argument("--new-items", type=int, default=defaults.new_items, help="items each later period brings")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len)
    parser.add_argument("--tasks", default=",".join(defaults.tasks), help="kinds of T2.. (item or class)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--t1-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every later task")
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--dilations", default="1,4")
    parser.add_argument("--side", choices=("both", "released", "harness", "report"), default="both")
    parser.add_argument("--label", default="default", help="name of this harness setting's cache folder")
    parser.add_argument("--harness-args", default="", help="extra `bench run` arguments, e.g. "
                        "\"--set method_options.DITTO.fkt=false\"")
    parser.add_argument("--released-label", default="default", help="name of this released setting's cache "
                        "folder (default: released/; others: released-<label>/)")
    parser.add_argument("--released-args", default="", help="extra train_ditto.py arguments, e.g. "
                        "'--fkt 0 --task1_bkt 0 --rest_bkt 0'")
    parser.add_argument("--released-edits", default="", help="comma-separated extra edits of the copy that "
                        f"measure one cause: {', '.join(CAUSE_EDITS)}")
    parser.add_argument("--t1-only", action="store_true", help="run only train_task1.py on the released side "
                        "(a variant that changes T1's test alone; give it its own --released-label)")
    parser.add_argument("--inference-only", metavar="LABEL", help="reuse the models of released setting LABEL "
                        "('default' for released/) and run only the inference script (a variant that changes "
                        "the final row alone)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (each one thread)")
    args = parser.parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(",")]
    dilations = [int(s) for s in args.dilations.split(",")]
    kinds = args.tasks.split(",")
    options = ReleaseDataOptions(users=args.users, items=args.items, new_items=args.new_items, seq_len=args.seq_len,
                                 tasks=kinds, targets=[2, 1, 1, 1][:kinds.count("item")])
    out = args.out.resolve() / (f"u{args.users}-i{args.items}+{args.new_items}-l{args.seq_len}-{''.join(k[0] for k in kinds)}"
                      f"-d{args.d}-{'x'.join(map(str, dilations))}-e{args.t1_epochs}x{args.epochs}")
    write_release_data(out / "data", options)
    extra = args.harness_args.split()
    causes = tuple(name for name in args.released_edits.split(",") if name)
    unknown = [name for name in causes if name not in CAUSE_EDITS]
    if unknown:
        raise SystemExit(f"error: --released-edits: unknown {', '.join(unknown)}; choose from {', '.join(CAUSE_EDITS)}")
    suffix = "" if args.released_label == "default" else f"-{args.released_label}"
    src = out / f"released-src{suffix}"

    def released_side(seed: int) -> dict | None:
        path = out / f"released{suffix}" / f"seed{seed}" / "result.json"
        if path.exists() or args.side in ("both", "released"):
            if not path.exists() and args.released is None:
                raise SystemExit("error: --released DIR is needed to run the released side")
            trained = None if args.inference_only is None else out / (
                "released" if args.inference_only == "default" else f"released-{args.inference_only}") / f"seed{seed}"
            return run_released(src, out / "data", kinds, path.parent, seed, args.t1_epochs, args.epochs,
                                tuple(args.released_args.split()), args.t1_only, trained)
        return None

    def harness_side(seed: int) -> dict | None:
        path = out / "harness" / args.label / f"seed{seed}" / "result.json"
        if path.exists() or args.side in ("both", "harness"):
            return run_harness(out / "data", path.parent, kinds, seed, args.t1_epochs, args.epochs, args.d,
                               dilations, extra)
        return None

    if args.side in ("both", "released") and args.released is not None:
        patch_copy(args.released.resolve(), src, args.d, dilations, causes)
    jobs = [(side, seed) for side in (released_side, harness_side) for seed in seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda job: job[0](job[1]), jobs))
    released = [r for r in results[:len(seeds)] if r is not None]
    harness = [r for r in results[len(seeds):] if r is not None]
    ran_with = harness[0].get("command", extra) if harness else extra  # as cached, for --side report
    released_with = released[0].get("command", []) if released else []
    print(f"parity: {args.users} users, {args.items} items (+{args.new_items} per period), L={args.seq_len}, "
          f"tasks click,{args.tasks}, d={args.d}, dilations {dilations}, epochs T1 {args.t1_epochs} / later "
          f"{args.epochs}, seeds {seeds}, released '{args.released_label}' {' '.join(released_with)} "
          f"{args.released_edits}, harness '{args.label}' {' '.join(ran_with)}")
    print(report(released, harness, args.label, kinds, args.released_label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
