"""Datasets held in memory under a name: the seam through which a caller (a test, a notebook with
its own images) hands ptnl a ``Dataset`` that no loader on disk knows.

``load_dataset``, ``get_dataset`` (what the engine calls) and ``identity`` look here first, so a
registered dataset is the one every run on its name reads, and its ``fingerprint()`` is the data
identity in those runs' ids.
"""

from __future__ import annotations

from ptnl.data.base import Dataset

_REGISTERED: dict[str, Dataset] = {}


def register_dataset(dataset: Dataset) -> str:
    """Make ``dataset`` the one every run on ``dataset.name`` reads (until unregistered)."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"register_dataset takes a ptnl.data.Dataset, got {type(dataset).__name__}")
    _REGISTERED[dataset.name] = dataset
    return dataset.name


def unregister_dataset(name: str) -> None:
    _REGISTERED.pop(name, None)


def registered(name: str) -> Dataset | None:
    return _REGISTERED.get(name)
