"""How the runner loads a dataset by name: adapters register a class with `Options` and `load`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.config import from_dict
from bench.registry import DATASETS
from bench.engine.tasks import Dataset
from bench.datasets.splitting import Tables


@dataclass
class NoOptions:
    pass


class DatasetAdapter:
    Options: ClassVar[type] = NoOptions
    needs_data_dir: ClassVar[bool] = False
    summary: ClassVar[str] = ""
    # Method settings that belong to this dataset rather than to the method, as a paper's
    # per-dataset hyperparameter table does: {method: {option: value}}. Merged under the
    # user's own settings when a run is configured, so config.json shows what was used.
    method_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def load(cls, options: Any, data_dir: Path | None) -> Dataset:
        raise NotImplementedError

    @classmethod
    def estimated_bytes(cls, options: dict, data_dir: str | Path | None) -> tuple[int, int | None] | None:
        """(bytes of the loaded data, item count or None), estimated before reading anything, for
        the memory check of bench/experiments/memory.py; None when it cannot be told up front."""
        return None

    @classmethod
    def describe(cls, options: Any, data_dir: Path | None) -> tuple[Dataset | Tables, list[dict]]:
        """What `bench data info` prints: the dataset (or its tables) and its per-task statistics."""
        dataset = cls.load(options, data_dir)
        return dataset, dataset.statistics()


class TableAdapter(DatasetAdapter):
    """An adapter that parses files into `Tables`; statistics come from them without splitting."""

    @classmethod
    def tables(cls, options: Any, data_dir: Path) -> Tables:
        raise NotImplementedError

    @classmethod
    def load(cls, options: Any, data_dir: Path | None) -> Dataset:
        return cls.tables(options, Path(data_dir)).build()

    @classmethod
    def describe(cls, options: Any, data_dir: Path | None) -> tuple[Tables, list[dict]]:
        tables = cls.tables(options, Path(data_dir))
        return tables, tables.statistics()


def load_dataset(name: str, options: dict | None = None, data_dir: str | Path | None = None) -> Dataset:
    adapter, parsed, folder = _resolve(name, options, data_dir)
    return adapter.load(parsed, folder)


def describe_dataset(name: str, options: dict | None = None,
                     data_dir: str | Path | None = None) -> tuple[Dataset | Tables, list[dict]]:
    adapter, parsed, folder = _resolve(name, options, data_dir)
    return adapter.describe(parsed, folder)


def _resolve(name: str, options: dict | None, data_dir: str | Path | None):
    from bench.errors import BenchError

    adapter = DATASETS.get(name)
    parsed = from_dict(adapter.Options, options or {}, f"dataset_options ({adapter.registered_name})")
    if adapter.needs_data_dir and data_dir is None:
        raise BenchError(f"dataset '{adapter.registered_name}' needs --data-dir")
    if data_dir is not None and not adapter.needs_data_dir:
        raise BenchError(f"--data-dir {data_dir}: dataset '{adapter.registered_name}' reads no files")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise BenchError(f"--data-dir {data_dir}: no such directory")
    return adapter, parsed, Path(data_dir) if data_dir is not None else None
