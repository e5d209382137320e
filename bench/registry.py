"""Name -> factory registries for methods and datasets.

Plugins register themselves on import (`@METHODS.register("Conure")`), so the runner and
the CLI never need an if/else chain over names.

A method row may name *variants* of a method: `TERACON+floor` is TERACON with the option
overrides its class declares as `variants = {"floor": {"min_ratio": 0.25}}`. Variants keep
what the harness adds to a paper's algorithm visible as rows of their own, never the
default; several compose (`HAT+binary+lngate`) and are spelled in declaration order.
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


VARIANT_SEPARATOR = "+"


class MethodRegistry(Registry):
    """Methods, addressed by row names: a registered name plus optional `+variant` suffixes."""

    def split(self, name: str) -> tuple[T, list[str]]:
        """The method class and its variants' names as declared (canonical case and order)."""
        base, *parts = name.split(VARIANT_SEPARATOR)
        cls = super().get(base.strip())
        declared = getattr(cls, "variants", {})
        by_key = {key.lower(): key for key in declared}
        chosen = []
        for part in parts:
            key = by_key.get(part.strip().lower())
            if key is None:
                listed = ", ".join(f"{cls.registered_name}+{k}" for k in declared) or "none"
                raise BenchError(f"unknown variant '{part}' of method {cls.registered_name}; variants: {listed}")
            if key in chosen:
                raise BenchError(f"method '{name}': variant '{key}' named twice")
            chosen.append(key)
        return cls, sorted(chosen, key=list(declared).index)

    def get(self, name: str) -> T:
        """The method class (a variant row builds the same class with other options)."""
        return self.split(name)[0]

    def canonical(self, name: str) -> str:
        cls, variants = self.split(name)
        return VARIANT_SEPARATOR.join([cls.registered_name, *variants])  # type: ignore[attr-defined]

    def base_name(self, name: str) -> str:
        return self.split(name)[0].registered_name  # type: ignore[attr-defined]

    def variant_names(self, base: str) -> list[str]:
        cls = self.get(base)
        return [f"{cls.registered_name}{VARIANT_SEPARATOR}{key}" for key in getattr(cls, "variants", {})]

    def options(self, name: str, configured: dict[str, dict], variants: bool = True) -> dict:
        """A row's settings from `configured` (method_options or method_train, keyed by row
        name): the base method's, then the variants' overrides (`variants=True`, for method
        options), then this exact row's; later ones win."""
        cls, chosen = self.split(name)
        base = cls.registered_name  # type: ignore[attr-defined]
        merged = dict(configured.get(base) or {})
        for key in chosen if variants else []:
            merged.update(cls.variants[key])  # type: ignore[attr-defined]
        row = self.canonical(name)
        if row != base:
            merged.update(configured.get(row) or {})
        return merged

    def __contains__(self, name: str) -> bool:
        try:
            self.split(name)
        except BenchError:
            return False
        return True


METHODS: MethodRegistry = MethodRegistry("method")
DATASETS: Registry = Registry("dataset")


def load_plugins() -> None:
    """Import the built-in method and dataset packages so they register themselves."""
    importlib.import_module("bench.methods")
    importlib.import_module("bench.datasets")


# The column order of Conure's and TERACON's tables.
PAPER_ORDER = ["DNN", "SinMo", "SinMoAll", "FineSmax", "FineAll", "PeterRec", "MTL", "Conure", "HAT", "TERACON"]


def resolve_methods(names: list[str]) -> list[str]:
    """Canonical row names, 'all' expanded to every registered method (no variants), in the
    papers' order with each method's variants right after it."""
    resolved: list[str] = []
    for name in names:
        expanded = METHODS.names() if name.lower() == "all" else [METHODS.canonical(name)]
        resolved += [n for n in expanded if n not in resolved]
    bases = list(dict.fromkeys(METHODS.base_name(row) for row in resolved))
    rank = {name: index for index, name in enumerate(PAPER_ORDER)}

    def key(row: str) -> tuple[int, bool]:
        base = METHODS.base_name(row)
        return rank.get(base, len(rank) + bases.index(base)), row != base

    return sorted(resolved, key=key)
