"""Name -> factory registries for methods, datasets and backbones.

Plugins register themselves on import (`@METHODS.register("Conure")`), so the runner and
the CLI never need an if/else chain over names. Three kinds of plugin register:

* the built-in modules of `bench/methods/`, `bench/datasets/` and `bench/backbones/`, which are imported only
  when one of their entries is used: their names, docstrings and literal class attributes
  are read from the source (`ast`), so `bench list` answers without importing torch;
* installed distributions that declare an entry point in the group `bench.methods` or
  `bench.datasets` or `bench.backbones` (the convention pytest plugins use), imported on first use;
* files given as `--plugin path/to/file.py` (see `load_file`).

A method row may name *variants* of a method: `TERACON+floor` is TERACON with the option
overrides its class declares as `variants = {"floor": {"min_ratio": 0.25}}`. Variants keep
what the harness adds to a paper's algorithm visible as rows of their own, never the
default; several compose (`HAT+binary+lngate`) and are spelled in declaration order.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from bench.errors import BenchError
from bench.results.names import safe_name

T = TypeVar("T")

# Entry-point groups, and the built-in package that holds each registry's own plugins.
GROUPS = {"method": "bench.methods", "dataset": "bench.datasets", "backbone": "bench.backbones"}


@dataclass
class Lazy:
    """A built-in entry known from its source file; imported (and so registered) on first use."""

    module: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)  # literal class attributes, module docstring


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | Lazy] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(entry: T) -> T:
            key = name.lower()
            known = self._entries.get(key)
            if known is not None and not (isinstance(known, Lazy) and known.module == entry.__module__):
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[key] = entry
            entry.registered_name = name  # type: ignore[attr-defined]
            return entry

        return decorator

    def get(self, name: str) -> T:
        load_plugins()
        key = name.lower()
        if key not in self._entries:
            raise BenchError(f"unknown {self.kind} '{name}'; choose from: {', '.join(self.names())}")
        entry = self._entries[key]
        if isinstance(entry, Lazy):
            importlib.import_module(entry.module)
            entry = self._entries[key]
            if isinstance(entry, Lazy):
                raise BenchError(f"{entry.module} did not register {self.kind} '{entry.name}'")
        return entry  # type: ignore[return-value]

    def canonical(self, name: str) -> str:
        load_plugins()
        entry = self._entries.get(name.lower())
        return entry.name if isinstance(entry, Lazy) else Registry.get(self, name).registered_name  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        load_plugins()
        return [entry.name if isinstance(entry, Lazy) else entry.registered_name  # type: ignore[attr-defined]
                for entry in self._entries.values()]

    def describe(self, name: str, attribute: str, default: Any = "") -> Any:
        """A class attribute (or `__doc__`, the module docstring) without importing a built-in:
        its source states the value literally, or it keeps its base class's `default`
        (tests/test_packaging.py checks both against the imported classes)."""
        load_plugins()
        entry = self._entries.get(name.lower())
        if isinstance(entry, Lazy):
            return entry.attributes.get(attribute, default)
        entry = Registry.get(self, name)
        if attribute == "__doc__":
            return sys.modules[entry.__module__].__doc__ or default  # type: ignore[attr-defined]
        return getattr(entry, attribute, default)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name.lower() in self._entries

    def _scan(self, package: str) -> None:
        """Lazy entries for every `@<REGISTRY>.register("Name")` class in a built-in package."""
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations or []:
            for path in sorted(Path(folder).glob("*.py")):
                for name, attributes in _registrations(path, self.kind):
                    self._entries.setdefault(name.lower(), Lazy(f"{package}.{path.stem}", name, attributes))


def _registrations(path: Path, kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, literal attributes) of each class registered in one source file."""
    registry = {"method": "METHODS", "dataset": "DATASETS", "backbone": "BACKBONES"}[kind]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "register" and isinstance(decorator.func.value, ast.Name)
                    and decorator.func.value.id == registry and decorator.args
                    and isinstance(decorator.args[0], ast.Constant)):
                found.append((decorator.args[0].value, {"__doc__": ast.get_docstring(tree, clean=False) or "",
                                                        **_literal_attributes(node)}))
    return found


def _literal_attributes(node: ast.ClassDef) -> dict[str, Any]:
    attributes = {}
    for statement in node.body:
        if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            try:
                value = ast.literal_eval(statement.value)
            except (ValueError, TypeError, SyntaxError):
                continue
            attributes.update({t.id: value for t in targets if isinstance(t, ast.Name)})
    return attributes


VARIANT_SEPARATOR = "+"


class MethodRegistry(Registry):
    """Methods, addressed by row names: a registered name plus optional `+variant` suffixes."""

    def split(self, name: str) -> tuple[str, list[str]]:
        """The registered name and the variants' names as declared (canonical case and order),
        read without importing a built-in method."""
        base, *parts = name.split(VARIANT_SEPARATOR)
        base = super().canonical(base.strip())  # read from source: no import for a built-in
        declared = self.describe(base, "variants", {})
        by_key = {key.lower(): key for key in declared}
        chosen = []
        for part in parts:
            key = by_key.get(part.strip().lower())
            if key is None:
                listed = ", ".join(f"{base}+{k}" for k in declared) or "none"
                raise BenchError(f"unknown variant '{part}' of method {base}; variants: {listed}")
            if key in chosen:
                raise BenchError(f"method '{name}': variant '{key}' named twice")
            chosen.append(key)
        return base, sorted(chosen, key=list(declared).index)

    def get(self, name: str) -> T:
        """The method class (a variant row builds the same class with other options)."""
        return super().get(self.split(name)[0])

    def canonical(self, name: str) -> str:
        base, variants = self.split(name)
        return VARIANT_SEPARATOR.join([base, *variants])

    def base_name(self, name: str) -> str:
        return self.split(name)[0]

    def variant_names(self, base: str) -> list[str]:
        base = self.base_name(base)
        return [f"{base}{VARIANT_SEPARATOR}{key}" for key in self.describe(base, "variants", {})]

    def options(self, name: str, configured: dict[str, dict], variants: bool = True) -> dict:
        """A row's settings from `configured` (method_options or method_train, keyed by row
        name): the base method's, then the variants' overrides (`variants=True`, for method
        options), then this exact row's; later ones win."""
        base, chosen = self.split(name)
        declared = self.describe(base, "variants", {})
        merged = dict(configured.get(base) or {})
        for key in chosen if variants else []:
            merged.update(declared[key])
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
BACKBONES: Registry = Registry("backbone")
_loaded = False


def load_plugins() -> None:
    """Know every plugin: built-ins from their source, then installed entry points (imported)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    for registry in (METHODS, DATASETS, BACKBONES):
        registry._scan(GROUPS[registry.kind])
    for registry in (METHODS, DATASETS, BACKBONES):
        for point in entry_points(group=GROUPS[registry.kind]):
            try:
                point.load()
            except Exception as error:  # a broken plugin names itself instead of a traceback
                raise BenchError(f"plugin {point.name} ({point.value}, entry point group "
                                 f"{point.group}): {type(error).__name__}: {error}") from None


def load_file(path: str | Path) -> None:
    """Import one plugin file (`--plugin`), so its `@METHODS/DATASETS/BACKBONES.register` run."""
    path = Path(path).resolve()
    if not path.is_file():
        raise BenchError(f"--plugin {path}: no such file")
    name = f"bench_plugin_{path.stem}"
    if getattr(sys.modules.get(name), "__file__", None) == str(path):
        return  # already loaded
    load_plugins()  # built-ins first, so a clashing plugin name is reported, not shadowed
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BenchError:
        raise
    except Exception as error:
        del sys.modules[name]
        raise BenchError(f"--plugin {path}: {type(error).__name__}: {error}") from None


# The column order of Conure's and TERACON's tables, then DITTO (SIGIR 2025), the newest.
PAPER_ORDER = ["DNN", "SinMo", "SinMoAll", "FineSmax", "FineAll", "PeterRec", "MTL", "Conure", "HAT", "TERACON", "DITTO"]


def resolve_methods(names: list[str]) -> list[str]:
    """Canonical row names, 'all' expanded to every registered method (no variants), in the
    papers' order with each method's variants right after it."""
    resolved: list[str] = []
    for name in names:
        expanded = METHODS.names() if name.lower() == "all" else [METHODS.canonical(name)]
        # a row names the run's folder methods/<row>: a plugin's name must be a safe one
        resolved += [safe_name(n, "method") for n in expanded if n not in resolved]
    bases = list(dict.fromkeys(METHODS.base_name(row) for row in resolved))
    rank = {name: index for index, name in enumerate(PAPER_ORDER)}

    def key(row: str) -> tuple[int, bool]:
        base = METHODS.base_name(row)
        return rank.get(base, len(rank) + bases.index(base)), row != base

    return sorted(resolved, key=key)
