"""Name -> factory registries for methods and datasets.

Plugins register themselves on import (`@METHODS.register("Conure")`), so the runner and
the CLI never need an if/else chain over names.
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            key = name.lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[key] = entry
            entry.registered_name = name  # type: ignore[attr-defined]
            return entry

        return decorator

    def get(self, name: str) -> T:
        load_plugins()
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise BenchError(
                f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}"
            ) from None

    def canonical(self, name: str) -> str:
        return self.get(name).registered_name  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        load_plugins()
        return [entry.registered_name for entry in self._entries.values()]  # type: ignore[attr-defined]

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name.lower() in self._entries


METHODS: Registry = Registry("method")
DATASETS: Registry = Registry("dataset")


def load_plugins() -> None:
    """Import the built-in method and dataset packages so they register themselves."""
    importlib.import_module("bench.methods")
    importlib.import_module("bench.datasets")


# The column order of Conure's and TERACON's tables.
PAPER_ORDER = ["DNN", "SinMo", "SinMoAll", "FineSmax", "FineAll", "PeterRec", "MTL", "Conure", "HAT", "TERACON"]


def resolve_methods(names: list[str]) -> list[str]:
    """Canonical names, 'all' expanded to every registered method in the papers' order."""
    resolved: list[str] = []
    for name in names:
        expanded = METHODS.names() if name.lower() == "all" else [METHODS.canonical(name)]
        resolved += [n for n in expanded if n not in resolved]
    rank = {name: index for index, name in enumerate(PAPER_ORDER)}
    return sorted(resolved, key=lambda n: rank.get(n, len(rank)))
