"""In-task checkpoints: a fit saved every N steps or minutes and resumed mid-epoch.

At the papers' size one task trains for hours, so the runner's checkpoint after each
finished step is not enough. The runner gives every step of a method a `Journal`, one file
(methods/<M>/fit.pt; the one before is kept as fit.prev.pt until the new one is complete).
A step may call `fit` several times (Conure trains, then prunes and retrains; TERACON and
the shared T1 model train inside a first step), so the journal numbers the calls and holds

- for every call that finished: its module's weights, FitLog and the RNG states after it;
- for the call that is running: the weights, the optimiser, the global RNG states, the
  data-order generator as it was before the epoch's shuffle, epoch and step, the epoch's
  loss so far, the best state and FitLog so far, and the `TrainHooks.resumable` objects.

`--resume` replays the step from its start with the RNG state of the step checkpoint, so
every module is built as before; finished calls restore their outcome instead of training
and the interrupted one continues at its step. On CPU the result is bit-identical to an
uninterrupted run (tests/test_faults.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.io import UnreadableFile, load_torch_with_fallback, remove_with_previous, write_torch_keeping_previous


def scope(name: str, settings: Any) -> str:
    """A journal's scope: what it checkpoints and under which settings, so a run resumed with
    other settings (`--override`) starts the step again instead of continuing the old one."""
    text = json.dumps(dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else settings,
                      sort_keys=True, default=str)
    return f"{name} ({hashlib.sha1(text.encode()).hexdigest()[:12]})"


def rng_states() -> dict[str, Any]:
    """The global RNG states: CPU, and CUDA's where it is in use (also what a cached T1 model
    restores, bench/engine/t1cache.py)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore `rng_states()`; the states may have been loaded onto a GPU (map_location)."""
    torch.set_rng_state(states["cpu"].cpu())
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


class Journal:
    """The in-task checkpoint file of one step (`scope` names it: a stale file of another step
    is ignored). `path=None` keeps nothing; `writer=False` (ranks > 0) reads but never writes."""

    def __init__(self, path: Path | None, scope: str, writer: bool = True):
        self.path, self.scope, self.writer = path, scope, writer and path is not None
        saved = self._load()
        self.done: list[dict] = saved["done"] if saved else []
        self.position: dict | None = saved["position"] if saved else None
        self.calls, self.steps, self.saved_at = 0, 0, time.monotonic()

    def _load(self) -> dict | None:
        if self.path is None:
            return None
        try:
            saved = load_torch_with_fallback(self.path, map_location="cpu")
        except UnreadableFile as error:
            print(f"warning: {error.path} is unreadable ({error.reason}); this step starts again",
                  file=sys.stderr, flush=True)
            return None
        return saved if isinstance(saved, dict) and saved.get("scope") == self.scope else None

    def next_call(self) -> "FitCall":
        self.calls += 1
        return FitCall(self, self.calls - 1)

    def due(self, every_steps: int | None, every_minutes: float | None) -> bool:
        """Count a step; True when a checkpoint is due by steps or by time (no host sync)."""
        self.steps += 1
        return ((every_steps is not None and self.steps >= every_steps)
                or (every_minutes is not None and time.monotonic() - self.saved_at >= 60 * every_minutes))

    def write(self) -> None:
        self.steps, self.saved_at = 0, time.monotonic()
        if self.writer:
            write_torch_keeping_previous(self.path, {"scope": self.scope, "done": self.done,
                                                     "position": self.position})

    def drop(self) -> None:
        """The step is finished (its own checkpoint holds it): the journal is no longer needed."""
        if self.writer:
            remove_with_previous(self.path)


@dataclasses.dataclass
class FitCall:
    """One `fit` call of a step: finished before an interruption, interrupted, or new."""

    journal: Journal
    index: int

    @property
    def finished(self) -> bool:
        return self.index < len(self.journal.done)

    @property
    def position(self) -> dict | None:
        position = self.journal.position
        return position if position is not None and position["call"] == self.index else None

    def outcome(self, state: torch.nn.Module) -> dict:
        """Restore a finished call (weights of `state`, RNG) and return its FitLog as a dict."""
        done = self.journal.done[self.index]
        state.load_state_dict(done["state"])
        set_rng_states(done["rng"])
        state.eval()
        return done["log"]

    def resume(self, state: torch.nn.Module, optimizer, resumable: list) -> dict | None:
        """Restore an interrupted call's weights, optimiser, RNG and hook objects; returns the
        loop's saved variables (None for a call that starts fresh)."""
        position = self.position
        if position is None:
            return None
        state.load_state_dict(position["state"])
        optimizer.load_state_dict(position["optimizer"])
        for item, saved in zip(resumable, position["resumable"]):
            item.load_state_dict(saved)
        set_rng_states(position["rng"])
        return position["loop"]

    def save(self, loop: dict, state: torch.nn.Module, optimizer, resumable: list) -> None:
        self.journal.position = {"call": self.index, "loop": loop, "state": state.state_dict(),
                                 "optimizer": optimizer.state_dict(), "rng": rng_states(),
                                 "resumable": [item.state_dict() for item in resumable]}
        self.journal.write()

    def finish(self, state: torch.nn.Module, log: dict) -> None:
        weights = {key: value.detach().to("cpu", copy=True) for key, value in state.state_dict().items()}
        self.journal.done.append({"state": weights, "log": log, "rng": rng_states()})  # on the host: no GPU memory
        self.journal.position = None
        self.journal.write()
