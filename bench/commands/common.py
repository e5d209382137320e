"""Arguments shared by several sub-commands, and the one way they become run settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.config import DEFAULT_ROOT, apply_override, load_config_file
from bench.errors import BenchError


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=DEFAULT_ROOT, metavar="DIR",
                        help=f"results root holding runs/ (default: {DEFAULT_ROOT})")


def add_format_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="github", choices=["github", "plain", "simple", "latex"],
                        help="table style (tabulate format; default: github markdown)")
    parser.add_argument("--matrices", action="store_true",
                        help="also print each method's performance and forgetting matrices (before the table)")
    parser.add_argument("--no-matrices", action="store_false", dest="matrices",
                        help=argparse.SUPPRESS)  # the default now; kept so older scripts still run


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true",
                       help="show progress bars even when stderr is not a terminal")
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def show_progress(args: argparse.Namespace) -> bool:
    """Bars only on a terminal: in a log file tqdm's carriage returns become thousands of lines."""
    return args.progress or (not args.quiet and sys.stderr.isatty())


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The run settings `run` and `tune` share (declared once)."""
    parser.add_argument("--dataset", help="dataset adapter (default: synthetic)")
    parser.add_argument("--data-dir", help="directory holding the dataset's files")
    parser.add_argument("--preset", choices=["paper", "quick"],
                        help="settings to start from: paper = the released scripts' (d=256, 8 blocks, their "
                             "batch sizes, lrs, epochs); quick = small and fast (a deviation). "
                             "Default: quick for synthetic, paper otherwise; --set/--config override it")
    parser.add_argument("--seed", type=int, help="random seed (default: 0)")
    parser.add_argument("--epochs", type=int, help="maximum epochs per task (shortcut for --set train.epochs=N)")
    parser.add_argument("--limit-train-batches", type=int, metavar="N",
                        help="train on at most N batches per epoch (smoke runs; train.limit_train_batches)")
    parser.add_argument("--limit-eval-users", type=int, metavar="N",
                        help="evaluate on the first N users of each split (train.limit_eval_users)")
    parser.add_argument("--precision", choices=["fp32", "bf16"],
                        help="bf16 autocast on CUDA (train.precision; default fp32)")
    parser.add_argument("--protocol", choices=["harness", "released"],
                        help="training protocol of every method (train.protocol): harness (default) or "
                             "released = the released TERACON scripts' (hit@1 selection, full batches only)")
    parser.add_argument("--config", help="JSON or TOML file of settings (see config.json of any run)")
    add_set_argument(parser, "backbone.embedding_dim=32")
    parser.add_argument("--no-t1-cache", action="store_true",
                        help="train every T1 model here instead of loading it from the T1 cache shared by "
                             "runs ($BENCH_T1_CACHE, else $BENCH_DATA/cache/t1)")


def add_set_argument(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one setting, e.g. --set {example} (repeatable)")


def settings_from_args(args: argparse.Namespace) -> dict:
    """A run-config dict from --config, the shortcuts and --set, in that order of precedence.

    `--no-t1-cache` is no setting of the run (the cache never changes a result); it turns the
    cache off for this process and the workers it starts."""
    if getattr(args, "no_t1_cache", False):
        from bench.engine import t1cache

        t1cache.disable()
    if args.config is not None and not args.config.strip():  # "" must not mean "no config file"
        raise BenchError("--config: expected a JSON or TOML file, got ''")
    data = load_config_file(args.config) if args.config else {}
    shortcuts = {
        "methods": given_list(getattr(args, "methods", None), "--methods"),
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "preset": getattr(args, "preset", None),
        "order": parse_order(args.order) if getattr(args, "order", None) is not None else None,
        "seed": args.seed,
        "device": getattr(args, "device", None),
    }
    data.update({key: value for key, value in shortcuts.items() if value is not None})
    train_shortcuts = {"epochs": args.epochs, "limit_train_batches": args.limit_train_batches,
                       "limit_eval_users": args.limit_eval_users, "precision": args.precision,
                       "protocol": getattr(args, "protocol", None)}
    for key, value in train_shortcuts.items():
        if value is not None:
            if key.startswith("limit") and value < 1:
                raise BenchError(f"--{key.replace('_', '-')}: expected a positive number, got {value}")
            data.setdefault("train", {})[key] = value
    for assignment in args.set:
        apply_override(data, assignment)
    return data


def split_list(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def given_list(text: str | None, option: str) -> list[str] | None:
    """The items of a comma-separated option; None when it is not given. Given but empty
    (`--methods ""`) is an error: it must not silently mean the default."""
    if text is None:
        return None
    items = split_list(text)
    if not items:
        raise BenchError(f"{option}: expected at least one value, got '{text}'")
    return items


def check_counts(args: argparse.Namespace, minimums: dict[str, int | float], exclusive: bool = False) -> None:
    """Numbers given on the command line at or above their minimum (above it with `exclusive`),
    checked before any work: `--trials -3` is an error, not an empty study."""
    for dest, low in minimums.items():
        value = getattr(args, dest, None)
        if value is not None and (value <= low if exclusive else value < low):
            raise BenchError(f"--{dest.replace('_', '-')} {value}: expected a number {'>' if exclusive else '>='} {low}")


def parse_order(text: str) -> list[int]:
    try:
        return [int(part) for part in given_list(text, "--order")]
    except ValueError:
        raise BenchError(f"--order expects task numbers such as 1,2,3, got '{text}'") from None
