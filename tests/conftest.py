"""Shared test set-up.

Tests never write into the repo's results/ or cache/: both point at a per-session temporary
folder unless the caller set them explicitly (e.g. to reuse a warm feature cache).
"""

import os
import tempfile

import pytest

_SESSION_TMP = tempfile.mkdtemp(prefix="ptnl-tests-")
os.environ.setdefault("PTNL_RESULTS", os.path.join(_SESSION_TMP, "results"))
os.environ.setdefault("PTNL_CACHE", os.path.join(_SESSION_TMP, "cache"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def fresh_store(tmp_path, monkeypatch):
    """An empty results/ and cache/ of the test's own."""
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def use_dataset():
    """``use_dataset(ds)``: runs on ``ds.name`` read ``ds`` for this test (it is registered through
    ``ptnl.data.register_dataset``, and unregistered afterwards); returns ``ds``."""
    from ptnl.data import register_dataset, unregister_dataset

    names = []

    def use(dataset):
        names.append(register_dataset(dataset))
        return dataset

    yield use
    for name in names:
        unregister_dataset(name)
