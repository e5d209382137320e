"""Named starting points for a run's settings: `paper` (the released scripts) and `quick`.

A preset is a partial run-config dict. `build_run_config` merges, later winning:

    preset  <  the dataset's method_defaults  <  the user's --config / shortcuts / --set

and a user's *general* train value also replaces the preset's more specific ones for the
same key (`--epochs 1` sets train.epochs and drops the preset's train.first_task.epochs and
method_train.*.epochs), so a user setting always means what it says.

- `paper`: the settings of the released code. Both papers release scripts for TTL only; the
  same values are used for MovieLens (no separate scripts were released).
- `quick`: today's small setting (d=64, dilations [1,4], batch 128, lr 1e-3, <= 10 epochs,
  patience 3, one schedule for every task): the dataclass defaults of bench/config.py. It is a
  DEVIATION from both papers, kept so the embedded synthetic data runs in about a minute on a CPU.
  At its 128-row batches TERACON's retention rows are stochastically rounded (see `quick`), and
  DITTO keeps its released learning rates (T1 1e-2, later 5e-4; 1e-3 is every other method's T1 lr).

The default preset depends on the dataset: `quick` for `synthetic`, `paper` for everything else.
"""

from __future__ import annotations

import copy
from typing import Any

from bench.errors import BenchError

PRESETS = ("paper", "quick")
QUICK_DATASETS = ("synthetic",)  # datasets whose default preset is `quick`
PRESET_SUMMARY = {
    "paper": "the released scripts' settings (d=256, dilations [1,4]x4, T1 batch 32 / lr 1e-3 / 10 epochs, "
             "later tasks batch 1024 / lr 1e-4 / 100 epochs, patience 5; per-method values in bench/presets.py)",
    "quick": "small and fast, NOT the papers' (d=64, dilations [1,4], batch 128, lr 1e-3, 10 epochs, patience 3; "
             "TERACON's retention rows stochastically rounded, as int() keeps none of 128; DITTO at its released lrs)",
}


def default_preset(dataset: str) -> str:
    return "quick" if dataset.lower() in QUICK_DATASETS else "paper"


def paper(dataset: str) -> dict[str, Any]:
    """The released settings (one source file named per value)."""
    del dataset  # TTL scripts only; the papers use the same settings for ML (see module docstring)
    return {
        "backbone": {
            # 'dilated_channels': 256 and 'dilations': [1,4,1,4,1,4,1,4] in TERACON
            # train_task1.py / train_teracon.py (model_para) and Conure conure_tp_t*.py.
            "embedding_dim": 256,
            "dilations": [1, 4, 1, 4, 1, 4, 1, 4],
            "kernel_size": 3,  # 'kernel_size': 3, same files
        },
        "train": {
            # Later tasks: TERACON train_teracon.py defaults (--batch 1024, --lr 0.0001,
            # --epochs 100) and its early stop `if count == 5` (patience 5).
            "epochs": 100,
            "batch_size": 1024,
            "lr": 1e-4,
            "patience": 5,
            "first_task": {
                "epochs": 10,  # TERACON ttl_train.sh: train_task1.py --epochs 10
                "batch_size": 32,  # TERACON train_task1.py model_para 'batch_size': 32
                "lr": 1e-3,  # TERACON ttl_train.sh: train_task1.py --lr 0.001
                "patience": 5,  # TERACON train_task1.py `if count == 5: #Early stop`
            },
        },
        "method_options": {
            # joansj/hat src/approaches/hat.py: lamb=0.75 ("chosen was 0.75"), smax=400.
            "HAT": {"smax": 400.0, "c": 0.75},
            # TERACON ttl_train.sh --smax 50; train_teracon.py --alpha default 0.7.
            "TERACON": {"smax": 50.0, "alpha": 0.7},
            # DITTO train_ditto.py argparse: --alpha 0.7, --beta 0.4, --gamma 0.8, --smax 50, --n_neg 99.
            "DITTO": {"smax": 50.0, "alpha": 0.7, "beta": 0.4, "gamma": 0.8, "negatives": 99},
        },
        "method_train": {
            # TERACON ttl_train.sh: task 2 at --lr 0.001 (tasks 3..6 at 0.0001 via the method's
            # own later-task schedule, methods/teracon.py), --batch 1024.
            "TERACON": {"lr": 1e-3, "batch_size": 1024},
            # Conure conure_tp_t2.py..t4.py: 'learning_rate': 0.0001, 'batch_size': 512,
            # 'iterations' (epochs) 15 / 80 / 30 -> at most 80 here, with the harness's early stop.
            # T1 retraining after pruning: conure_ret_t1.py lr 0.001, batch 32, 10 iterations.
            "Conure": {"lr": 1e-4, "batch_size": 512, "epochs": 80,
                       "first_task": {"lr": 1e-3, "batch_size": 32, "epochs": 10}},
            # DITTO train_ditto.py: --lr 0.0005, --epochs 100, --batch 512, early stop `if count == 2`;
            # T1 train_task1.py: --lr 0.01, --epochs 10, model_para 'batch_size': 512, `if count == 3`.
            "DITTO": {"lr": 5e-4, "batch_size": 512, "epochs": 100, "patience": 2,
                      "first_task": {"lr": 1e-2, "batch_size": 512, "epochs": 10, "patience": 3}},
        },
    }


def quick(dataset: str) -> dict[str, Any]:
    """The dataclass defaults of bench/config.py, small and fast, not the papers'; plus what keeps
    a method's own mechanism on at these small batches (no table may show a mechanism that the
    preset, not the method, switched off)."""
    del dataset
    return {
        "method_options": {
            # TERACON samples a fraction r_i of each batch for retention (eq. 14); the code takes
            # int(r_i * batch) rows (train_teracon.py ~L175), ~2 rows of its 1024-row batches for
            # related tasks (r_i ~ 0.0025) but 0 of 128 rows, which would switch retention off.
            # Stochastic rounding keeps r_i * batch rows on average; `TERACON+int` is the code's rule.
            "TERACON": {"rows": "expected"},
            # DITTO needs nothing here: its transfer losses take k = max(int(r_i B), 20) rows
            # (train_ditto.py L246), 20 of the 128-row batches at least, so no mechanism is off.
        },
        "method_train": {
            # Every other method's released T1 lr is this preset's 1e-3 (TERACON ttl_train.sh,
            # Conure conure_ret_t1.py); DITTO's released lrs are T1 1e-2 (train_task1.py --lr) and
            # 5e-4 later (train_ditto.py --lr). At 1e-3 its T1 (Linear(d, d) head against the
            # U(+-sqrt(1/rows)) item table, BPR) stayed near chance level in 10 quick epochs (seeds
            # 0-2, per-row BPR pairs: T1 test MRR@5 0.024 with 1+99 sampled candidates, 0.023 for random
            # scores), so each method keeps its own lrs.
            "DITTO": {"lr": 5e-4, "first_task": {"lr": 1e-2}},
        },
    }


def preset_settings(name: str, dataset: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise BenchError(f"config.preset: unknown preset '{name}'; choose from: {', '.join(PRESETS)}")
    return {"paper": paper, "quick": quick}[name](dataset)


def merge_settings(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Nested settings merged group by group (`over` wins); lists and scalars are replaced whole (a copy)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_specific(preset: dict[str, Any], user: dict[str, Any]) -> None:
    """A user's train.X replaces the preset's train.first_task.X and method_train.*.X."""
    general = [k for k in (user.get("train") or {}) if k != "first_task"] \
        if isinstance(user.get("train"), dict) else []
    first = preset.get("train", {}).get("first_task", {})
    for key in general:
        first.pop(key, None)
    for overrides in preset.get("method_train", {}).values():
        for key in general:
            overrides.pop(key, None)
            overrides.get("first_task", {}).pop(key, None)
    user_first = (user.get("train") or {}).get("first_task") if isinstance(user.get("train"), dict) else None
    for overrides in preset.get("method_train", {}).values():
        for key in (user_first or {}):
            overrides.get("first_task", {}).pop(key, None)
    # An override the user's values emptied is no override: left behind as {"first_task": {}},
    # it would still show in the run's config and split a leaderboard's setups for nothing.
    method_train = preset.get("method_train", {})
    for name in list(method_train):
        if method_train[name].get("first_task") == {}:
            del method_train[name]["first_task"]
        if not method_train[name]:
            del method_train[name]


def _derived(name: str, data: dict[str, Any]) -> None:
    """Values of the paper preset that depend on other settings."""
    if name != "paper":
        return
    # PeterRec's patch d -> k -> d has k = d / 4 in the released code: SIGIR2020_peterrec ops.py
    # get_mp (hidden_size = residual_channels / (cardinality * 4), cardinality 1 in
    # PeterRec_cau_parallel.py) and Tenrec model/transfer_learning/peterrec.py (int(channel / 4)).
    d = (data.get("backbone") or {}).get("embedding_dim", 256)
    options = data.setdefault("method_options", {})
    if isinstance(options, dict) and isinstance(d, int):
        key = next((m for m in options if m.lower() == "peterrec"), "PeterRec")
        chosen = options.setdefault(key, {})
        if isinstance(chosen, dict):
            chosen.setdefault("bottleneck_dim", max(1, d // 4))


def apply_preset(user: dict[str, Any], dataset_defaults: dict[str, Any]) -> dict[str, Any]:
    """preset < dataset < user, with the chosen preset's name stored under "preset"."""
    dataset = user.get("dataset", "synthetic")
    name = user.get("preset") or default_preset(str(dataset))
    preset = preset_settings(name, str(dataset))
    _drop_specific(preset, user)
    data = merge_settings(merge_settings(preset, dataset_defaults), user)
    _derived(name, data)
    data["preset"] = name
    return data
