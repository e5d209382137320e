"""results/LEADERBOARD.md from the curated runs committed under results/published/.

`results/runs/` is scratch space (git-ignored, with checkpoints and cached models);
publishing copies only a run's light files,

    results/published/<run-id>/config.json, environment.json, methods/<M>/result.json

and the leaderboard is a pure function of those files: runs that differ only in their
seed are averaged (mean ± std), rows are sorted, and nothing but stored values (no
clock, no paths) enters the text, so `--check` can tell whether the committed file is
stale.

Runs with the methods' default settings ("paper defaults" / the run's preset) and runs
that use tuned parameters (`run --use-tuned`, which records each study's trial count in
`tuned_trials`) form separate tables. A cell is bold only when its group has at least
MIN_SEEDS seeds and its mean beats the runner-up's by more than the two stds combined. The
summary paragraph at the top is generated from the same numbers: README claims link to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.results.aggregate import TASK_COLUMN, formatted, mean_std, run_frame
from bench.engine.protocols import describe as describe_protocol
from bench.errors import BenchError, WriteError
from bench.io import open_lock, write_json
from bench.registry import METHODS, PAPER_ORDER, VARIANT_SEPARATOR, resolve_methods
from bench.results.names import is_safe_name, safe_name
from bench.results.store import RunStore
from bench.results.tables import missing_first_caption, render, scenario_caption

PUBLISHED = "published"
LEADERBOARD = "LEADERBOARD.md"
# Settings that do not change what a result means; everything else must match to average runs.
NOT_SETUP = ("seed", "methods", "device", "data_dir", "order")  # the group key holds the resolved order
# Train settings of the same kind (in-task checkpoints); `nonfinite` only when it skips steps.
NOT_SETUP_TRAIN = ("checkpoint_every_minutes", "checkpoint_every_steps")
COLUMNS_DROPPED = ("FWT",)  # needs SinMo in the same run; the papers' tables show BWT only
MIN_SEEDS = 3  # fewer seeds: no std worth the name, so no cell is marked best


def publish(root: Path, run_id: str, force: bool = False) -> Path:
    """Copy a finished test-split run's light files to <root>/published/<run-id>/.

    The copy is made in a new hidden folder inside published/ and renamed into place, so a
    reader never sees half a run and a failure leaves the old copy as it was; with `force` the
    old copy is first renamed aside, then removed. Nothing else is ever deleted. A lock per
    published id (published/.locks/<id>.lock) lets one publisher at a time replace it; while it
    copies it also holds the run's lock, so no process can be working in the run meanwhile."""
    store = RunStore.open(run_id, root)
    name = safe_name(store.run_id, "published id")
    config = store.config
    if config.get("eval_split", "test") != "test":
        raise BenchError(f"run '{run_id}' was evaluated on {config['eval_split']}; only test runs are published")
    records = {record.method: record for record in store.records()}
    missing = [method for method in resolve_methods(config.get("methods") or list(records))
               if method not in records or not records[method].complete]
    if not records or missing:
        raise BenchError(f"run '{run_id}' is not finished: no complete result for {', '.join(missing) or 'any method'}; "
                         f"finish it with run --resume {run_id}")
    published = Path(root) / PUBLISHED
    target = published / name
    with _publish_lock(published, name):
        try:
            store.lock()  # a process still working in the run holds its lock
        except BenchError:
            raise BenchError(f"run '{run_id}' is in use by another process (lock {store.directory / '.lock'}); "
                             "publish it when that process has finished") from None
        try:
            if os.path.lexists(target) and not force:
                raise BenchError(f"{target} exists already; add --force to replace it")
            _remove_leftovers(published, name)
            fresh = _made_inside(published, name, "new")
            try:
                write_json(fresh / "config.json", config)
                write_json(fresh / "environment.json", store.environment)
                for record in records.values():
                    destination = fresh / "methods" / record.method
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(store.method_dir(record.method) / "result.json", destination / "result.json")
                _swap_in(published, name, fresh)
            except BaseException as error:
                _remove_inside(published, name, fresh)
                if isinstance(error, OSError) and not isinstance(error, BenchError):
                    raise WriteError(target, error) from None  # one error line, the old copy kept
                raise
        finally:
            store.unlock()
    return target


PUBLISH_WAIT_SECONDS = 60  # a publish copies a few small files; a longer hold is a stuck process


@contextlib.contextmanager
def _publish_lock(published: Path, name: str):
    """Hold published/.locks/<name>.lock (flock, with the holder's pid in it), waiting up to
    PUBLISH_WAIT_SECONDS for another publisher of the same id, then naming it. The lock files
    stay (removing a lock file another process waits on would let a third one in)."""
    path = published / ".locks" / f"{name}.lock"
    deadline = time.monotonic() + PUBLISH_WAIT_SECONDS
    while True:
        try:
            handle = open_lock(path)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = path.read_text().strip() if path.exists() else ""
                raise BenchError(f"{published / name} is being published by another process "
                                 f"({holder or 'unknown'}; lock {path}); try again when it has finished") from None
            time.sleep(0.1)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"pid {os.getpid()}\n".encode())
        yield
    finally:
        os.close(handle)


def _made_inside(published: Path, name: str, kind: str) -> Path:
    """A new hidden folder of published/ for `name` ('~' cannot occur in a name, so the
    prefix belongs to this id alone); mkdir is atomic, so it is this process's own."""
    published.mkdir(parents=True, exist_ok=True)
    while True:
        path = published / f".{name}~{kind}-{secrets.token_hex(4)}"
        try:
            path.mkdir()  # the umask's mode, as any published folder (mkdtemp's is 0700)
            return path
        except FileExistsError:
            continue


def _swap_in(published: Path, name: str, fresh: Path) -> None:
    """Rename `fresh` to published/<name>; an old copy is renamed aside first and removed last."""
    target, old = published / name, None
    if os.path.lexists(target):
        old = published / f".{name}~old-{fresh.name.rsplit('-', 1)[-1]}"
        os.rename(target, old)
    try:
        os.rename(fresh, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)  # put the old copy back
        raise
    if old is not None:
        _remove_inside(published, name, old)


def _remove_leftovers(published: Path, name: str) -> None:
    """Folders of a publisher of `name` killed mid-copy (we hold its lock: none is at work)."""
    for path in published.glob(f".{name}~*") if published.is_dir() else []:
        _remove_inside(published, name, path)


def _remove_inside(published: Path, name: str, path: Path) -> None:
    """Delete one of publish's own hidden folders, and only after checking that it is one:
    directly inside published/ and named .<name>~..."""
    path = Path(path)
    if path.parent.resolve() != published.resolve() or not path.name.startswith(f".{name}~"):
        raise BenchError(f"refusing to delete {path}: not a folder made by publishing {name} in {published}")
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)


@dataclass
class Group:
    """Runs of one dataset, order and setup (all settings but the seed)."""

    dataset: str
    order: list[int]
    setup: str
    frames: dict[str, list[pd.DataFrame]] = field(default_factory=lambda: defaultdict(list))
    preset: str = "none recorded"
    protocol: str | None = None  # the evaluation protocol's caption words; None: full ranking @5
    backbone: str = "nextitnet"  # backbone.name; named in the label when not the default
    tuned_trials: dict[str, int] = field(default_factory=dict)  # method -> trials of its study
    # per method row: a run may hold one method (a grid of single-method runs) or all of them
    seeds: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    run_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    commits: list[str] = field(default_factory=list)
    scenario: str | None = None  # the time-aware scenario's caption (bench/results/tables.py), else None

    @property
    def sampled(self) -> bool:
        """Scored by sampled-candidate ranking: never comparable with full-ranking numbers."""
        return bool(self.protocol and self.protocol.startswith("sampled"))

    def fewest_seeds(self) -> int:
        return min((len(seeds) for seeds in self.seeds.values()), default=0)

    def ranked_rows(self) -> list[str]:
        """Rows that compete for a best cell: methods with enough seeds; not the pre-pruning
        scores ('Conure-') nor the harness's variants ('TERACON+floor'), which are measurements
        of a method's deviations, not competitors."""
        return [m for m, seeds in self.seeds.items() if len(seeds) >= MIN_SEEDS
                and not m.endswith("-") and VARIANT_SEPARATOR not in m]


def setup_key(config: dict) -> str:
    """Short hash of the settings that define a result (same key = runs averaged together).

    A variant row's declared overrides, which a run records under method_options.<row>, are
    part of the row's name, not of the setup: a TERACON+floor run joins the TERACON runs'."""
    setup = {key: value for key, value in config.items() if key not in NOT_SETUP}
    if describe_protocol(setup.get("eval")) is None:  # full ranking @5: the key of runs made before `eval`
        setup.pop("eval", None)
    if isinstance(setup.get("train"), dict):  # when checkpoints are written never changes a result
        setup["train"] = {key: value for key, value in setup["train"].items()
                          if key not in NOT_SETUP_TRAIN and not (key == "nonfinite" and value == "error")}
    options = {row: values for row, values in (setup.get("method_options") or {}).items()
               if not (VARIANT_SEPARATOR in row and values == _declared_overrides(row))}
    if "method_options" in setup:
        setup["method_options"] = options
    return hashlib.sha1(json.dumps(setup, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _declared_overrides(row: str) -> dict | None:
    try:
        return METHODS.options(row, {})
    except BenchError:  # a plugin's variant that is not loaded: keep its options in the key
        return None


def gather(published: Path) -> list[Group]:
    groups: dict[tuple, Group] = {}
    scenario_records: dict[tuple, list] = {}  # every run's records: single-method runs of a grid too
    directories = sorted(p for p in Path(published).iterdir()  # not a publisher's hidden folders
                         if is_safe_name(p.name) and (p / "config.json").exists()) \
        if Path(published).exists() else []
    for directory in directories:
        store = RunStore(directory)
        config, records = store.config, [r for r in store.records() if r.complete]
        if not records or config.get("eval_split", "test") != "test":
            continue
        n_tasks = len(records[0].tasks)
        order = config.get("order") or list(range(1, n_tasks + 1))
        tuned = dict(config.get("tuned_trials") or {})
        key = (config.get("dataset", "?"), tuple(order), bool(tuned), setup_key(config))
        group = groups.setdefault(key, Group(key[0], list(order), key[3],
                                             preset=config.get("preset") or "none recorded",
                                             protocol=describe_protocol(config.get("eval")),
                                             backbone=(config.get("backbone") or {}).get("name", "nextitnet"),
                                             tuned_trials=tuned))
        frame = run_frame(records, order)
        scenario_records.setdefault(key, []).extend(records)
        for method in frame.index:
            group.frames[method].append(frame.loc[[method]])
            group.seeds[method].append(int(config.get("seed", 0)))
            group.run_ids[method].append(directory.name)
        commit = store.environment.get("commit")
        if commit and commit not in group.commits:
            group.commits.append(commit)
    for key, group in groups.items():
        group.scenario = scenario_caption(scenario_records[key])
    return [groups[key] for key in sorted(groups)]  # per dataset and order: defaults, then tuned


def _rank(method: str) -> tuple:
    base = method.split(" ")[0].split(VARIANT_SEPARATOR)[0].rstrip("-")  # variants follow their method
    return (PAPER_ORDER.index(base) if base in PAPER_ORDER else len(PAPER_ORDER), VARIANT_SEPARATOR in method, method)


def label(group: Group) -> str:
    """'paper defaults' (or the preset's name when it is not `paper`) or 'tuned, N trials each',
    followed by the backbone and the evaluation protocol unless they are the defaults (NextItNet,
    full ranking @5), and the time-aware scenario when the runs are of it."""
    protocol = (f"; backbone {group.backbone}" if group.backbone != "nextitnet" else "") + \
        (f"; {group.protocol}" if group.protocol else "") + ("; time-aware scenario" if group.scenario else "")
    if not group.tuned_trials:
        return ("paper defaults" if group.preset == "paper" else f"method defaults, preset {group.preset}") + protocol
    counts = sorted(set(group.tuned_trials.values()))
    trials = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    tuned = sorted(group.tuned_trials, key=_rank)
    return f"tuned, {trials} trials each ({', '.join(tuned)}; preset {group.preset}){protocol}"


def group_stats(group: Group) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per method (rows in the papers' order): mean and std of every column over the seeds."""
    methods = sorted(group.frames, key=_rank)
    mean, std, _ = mean_std([frame for method in methods for frame in group.frames[method]])
    dropped = [c for c in COLUMNS_DROPPED if c in mean]
    return mean.reindex(methods).drop(columns=dropped), std.reindex(methods).drop(columns=dropped)


def score_columns(frame: pd.DataFrame) -> list[str]:
    """Columns where higher is better: task scores, the averages, BWT."""
    return [c for c in frame.columns if TASK_COLUMN.match(str(c)) or str(c).startswith("Avg") or c == "BWT"]


def clear_best(mean: pd.DataFrame, std: pd.DataFrame, column: str, rows: list[str]) -> str | None:
    """The row of `rows` (those that compete, see Group.ranked_rows) whose mean beats the
    runner-up's by more than std_best + std_runner_up, if any."""
    values = mean[column][[name in rows for name in mean.index]].dropna()
    if len(values) < 2:
        return None
    ranked = values.sort_values(ascending=False)
    best, second = ranked.index[0], ranked.index[1]
    margin = std.at[best, column] + std.at[second, column]
    if pd.isna(margin) or ranked.iloc[0] - ranked.iloc[1] <= margin:
        return None
    return best


def comparable_rows(mean: pd.DataFrame, column: str, rows: list[str]) -> list[str]:
    """Rows whose `column` covers the same tasks: the all-task Avg of a row without a T1 score
    (MTL) averages fewer tasks, so it is shown but not ranked against the others on that column."""
    if column != "Avg":
        return rows
    tasks = [c for c in mean.columns if TASK_COLUMN.match(str(c))]
    return [row for row in rows if mean.loc[row, tasks].notna().all()]


def group_frame(group: Group) -> pd.DataFrame:
    mean, std = group_stats(group)
    frame = formatted(mean, std)
    for column in score_columns(mean):
        best = clear_best(mean, std, column, comparable_rows(mean, column, group.ranked_rows()))
        if best is not None:
            frame.at[best, column] = f"**{frame.at[best, column]}**"
    frame["seeds"] = [",".join(map(str, sorted(group.seeds[m]))) for m in frame.index]
    frame["runs"] = [" ".join(sorted(group.run_ids[m])) for m in frame.index]
    frame["commit"] = " ".join(group.commits) or "–"
    frame.index.name = "method"
    return frame


def summary(groups: list[Group]) -> list[str]:
    """One generated sentence per table with enough seeds: who leads on each average, and whether clearly."""
    lines = []
    for group in groups:
        mean, std = group_stats(group)
        where = f"{group.dataset}, order {','.join(map(str, group.order))}, {label(group)}, setup `{group.setup}`"
        rows = group.ranked_rows()
        if len(rows) < 2:
            fewest = group.fewest_seeds()
            reason = f"{fewest} seed(s), fewer than {MIN_SEEDS}" if fewest < MIN_SEEDS else "fewer than two methods"
            lines.append(f"- {where}: {reason}: not ranked.")
            continue
        parts = []
        for column in [c for c in mean.columns if str(c).startswith("Avg")]:
            competing = comparable_rows(mean, column, rows)
            ranked = mean[column][[n in competing for n in mean.index]].dropna().sort_values(ascending=False)
            if ranked.empty:
                continue
            top = ranked.index[0]
            text = f"{column}: {top} {ranked.iloc[0]:.4f} ± {std.at[top, column]:.4f}"
            if len(ranked) > 1:
                runner = ranked.index[1]
                verdict = "clearly ahead of" if clear_best(mean, std, column, competing) == top else "not separated from"
                text += f", {verdict} {runner} {ranked.iloc[1]:.4f} ± {std.at[runner, column]:.4f}"
            parts.append(text)
        lines.append(f"- {where} ({group.fewest_seeds()} seeds each): " + "; ".join(parts) + ".")
    return lines


def generate(root: Path) -> str:
    groups = gather(Path(root) / PUBLISHED)
    lines = [
        "# Leaderboard",
        "",
        "<!-- generated by `python -m bench leaderboard` from results/published/; do not edit by hand -->",
        "",
        "Final performance after the last task, mean ± std over seeds (MRR@5 for item tasks, accuracy",
        "for classification; tasks numbered as in the dataset). BWT < 0 means forgetting; #B counts",
        "stored backbones; time is training seconds per run. Runs are averaged when all their",
        "settings but the seed agree (`setup` is a hash of those settings, see each run's config.json).",
        "Avg covers every task, Avg T2–Tn the tasks after the first (MTL has no T1 score). Runs with",
        "default settings and runs with tuned parameters are separate tables; a cell is **bold** only",
        f"with at least {MIN_SEEDS} seeds and a mean ahead of the runner-up by more than both stds combined.",
    ]
    if groups:
        lines += ["", "## Summary (generated)", "", *summary(groups)]
    if not groups:
        lines += ["", "(no published runs yet: `python -m bench leaderboard --publish <run-id>`)"]
    current = None
    for group in groups:
        heading = f"## {group.dataset}, order {','.join(map(str, group.order))}"
        if heading != current:
            lines += ["", heading]
            current = heading
        frame = group_frame(group)
        captions = [missing_first_caption(frame)]
        if any(VARIANT_SEPARATOR in str(name) for name in frame.index):
            captions.append("Rows named `Method+variant` measure the harness's deviations from a method's "
                            "released algorithm (docs/protocol.md, \"Protocol and deviations\"); they are not ranked.")
        if group.scenario:  # a time-aware run's dataset differs, so its setup (and table) does too
            captions.append(group.scenario)
        lines += ["", f"### {label(group)}, setup `{group.setup}`", ""]
        for caption in filter(None, captions):
            lines += [caption, ""]
        lines += [render(frame, "github")]
    return "\n".join(lines) + "\n"


def check(root: Path, path: Path) -> bool:
    """True when the committed file equals what would be generated now."""
    return path.exists() and path.read_text() == generate(root)
