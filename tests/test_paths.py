import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptnl.core import paths


def test_repo_root_holds_the_project():
    assert (paths.REPO_ROOT / "pyproject.toml").is_file()
    assert (paths.REPO_ROOT / "ptnl" / "core" / "paths.py").is_file()


def test_defaults_live_under_repo_root(monkeypatch):
    for var in ("PTNL_DATA", "PTNL_CACHE", "PTNL_RESULTS", "PTNL_FIGURES", "PTNL_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    assert paths.data_root() == paths.REPO_ROOT / "data"
    assert paths.cache_dir() == paths.REPO_ROOT / "cache"
    assert paths.results_dir() == paths.REPO_ROOT / "results"
    assert paths.figures_dir() == paths.REPO_ROOT / "figures"
    assert paths.weights_dir() == paths.REPO_ROOT / "weights"


def test_environment_variables_win(monkeypatch, tmp_path):
    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "r"))
    assert paths.data_root() == tmp_path / "d"
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.results_dir() == tmp_path / "r"
    assert paths.experiment_dir("exp1") == tmp_path / "r" / "exp1"


def test_paths_do_not_depend_on_the_working_directory(tmp_path):
    # nbval runs kernels in notebooks/, papermill in its --cwd: the answer must be the same.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTNL_")}
    code = "from ptnl.core import paths; print(paths.results_dir()); print(paths.cache_dir())"
    outs = {
        cwd: subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
        ).stdout
        for cwd in (str(tmp_path), str(paths.REPO_ROOT / "notebooks"))
    }
    a, b = outs.values()
    assert a == b
    assert Path(a.splitlines()[0]) == paths.REPO_ROOT / "results"


@pytest.mark.parametrize("bad", ["", "a/b", ".hidden"])
def test_bad_experiment_names_are_refused(bad):
    with pytest.raises(ValueError, match="plain folder name"):
        paths.experiment_dir(bad)


def test_manifests_follow_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PTNL_CACHE", str(tmp_path / "c"))
    assert paths.manifests_dir() == tmp_path / "c" / "manifests"


NOTEBOOKS = sorted((paths.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_write_only_where_a_ptnl_variable_can_point(nb):
    """With every PTNL_* location redirected, a notebook writes nothing under the repo: no code
    cell builds a path from build_dir() or the repo root (notebook 10's manifest goes to the cache)."""
    import json

    code = "".join(
        "".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"
    )
    assert "build_dir()" not in code and "REPO_ROOT /" not in code
