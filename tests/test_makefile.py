"""The Makefile's housekeeping targets, run for real on throwaway copies of the repository:
``make clean`` and ``make distclean`` remove only what git does not track (the shipped store
results/toy/ stays), distclean works outside a git checkout too, and ``make help`` names the
notebooks that exist. None of them needs the environment (.venv) to run."""

import os
import pathlib
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
MAKEFILE = REPO / "Makefile"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(cwd: pathlib.Path, *targets: str, **env: str) -> subprocess.CompletedProcess:
    # An outer make (`make test`) must not pass its flags or level down to this one.
    base = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    res = subprocess.run(
        ["make", "--no-print-directory", *targets],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, f"make {' '.join(targets)} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _git(cwd: pathlib.Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _write(path: pathlib.Path, text: str = "x\n") -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _fake_venv(root: pathlib.Path) -> pathlib.Path:
    """A .venv whose python fails: a target that used it would fail too."""
    python = _write(root / ".venv" / "bin" / "python", "#!/bin/sh\nexit 3\n")
    python.chmod(0o755)
    _write(root / ".venv" / "lib" / "site" / "__pycache__" / "m.pyc")
    return root / ".venv"


@pytest.fixture
def clone(tmp_path):
    """A clone of the repository's HEAD with the working tree's Makefile (the rules under test)."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("the repository is not a git checkout")
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True, capture_output=True)
    shutil.copy2(MAKEFILE, dest / "Makefile")
    return dest


def test_clean_and_distclean_remove_only_what_git_does_not_track(clone):
    tracked = _git(clone, "ls-files", "-z").split("\0")[:-1]
    assert "Makefile" in tracked and any(p.startswith("results/toy/") for p in tracked)
    shipped = next(clone / p for p in tracked if p.startswith("results/toy/"))
    shipped.write_text(shipped.read_text() + " ")  # a tracked file with local edits stays as it is
    edited = shipped.read_text()

    venv = _fake_venv(clone)
    build = [
        _write(clone / "build" / "toy" / "00_quickstart.ipynb"),
        _write(clone / ".pytest_cache" / "v" / "x"),
        _write(clone / ".ruff_cache" / "x"),
        _write(clone / "ptnl" / "__pycache__" / "x.cpython-311.pyc"),
    ]
    kept_by_clean = [
        _write(clone / "results" / "other" / "0123456789abcdef" / "metrics.json"),
        _write(clone / "results" / "toy" / "fedcba9876543210" / "metrics.json"),  # trained, not shipped
        _write(clone / "results" / "toy" / ".lock"),  # ignored
        _write(clone / "cache" / "features" / "x.pt"),
        _write(clone / "ptnl.egg-info" / "PKG-INFO"),
        venv / "bin" / "python",
    ]

    _make(clone, "clean")
    assert [p for p in build if p.exists()] == []
    assert [p for p in kept_by_clean if not p.exists()] == []
    assert [p for p in tracked if not (clone / p).exists()] == []

    out = _make(clone, "distclean")
    assert "not a git checkout" not in out.stdout
    assert [p for p in tracked if not (clone / p).exists()] == [], "distclean removed tracked files"
    assert shipped.read_text() == edited
    assert [p for p in kept_by_clean if p.exists()] == []
    assert not venv.exists() and not (clone / "cache").exists()
    # Nothing untracked or ignored is left; what remains differs from HEAD only by local edits.
    status = _git(clone, "status", "--porcelain", "--ignored", "--untracked-files=all").splitlines()
    assert [line for line in status if not line.startswith(" M ")] == []


def test_distclean_outside_a_git_checkout_keeps_results(tmp_path):
    """An unpacked archive: nothing says which results are shipped, so results/ stays whole."""
    root = tmp_path / "unpacked"
    root.mkdir()
    shutil.copy2(MAKEFILE, root / "Makefile")
    results = [
        _write(root / "results" / "toy" / "a" / "metrics.json"),
        _write(root / "results" / "other" / "b"),
    ]
    removed = [
        _fake_venv(root),
        _write(root / "cache" / "x").parent,
        _write(root / "ptnl.egg-info" / "PKG-INFO"),
    ]
    removed.append(_write(root / "build" / "x").parent)

    # git must not find a repository above tmp_path (were /tmp inside one).
    out = _make(root, "distclean", GIT_CEILING_DIRECTORIES=str(tmp_path))
    assert "not a git checkout" in out.stdout
    assert [p for p in results if not p.exists()] == []
    assert [p for p in removed if p.exists()] == []
    assert (root / "Makefile").exists()


def test_help_names_the_notebooks_that_exist():
    nums = sorted(p.name[:2] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert nums, "no notebooks/NN_*.ipynb"
    out = _make(REPO, "help").stdout
    assert f"make {nums[0]} .. make {nums[-1]}" in out


def test_help_follows_the_notebooks_folder(tmp_path):
    """The range comes from notebooks/, not from the Makefile's text: one more notebook moves it."""
    shutil.copy2(MAKEFILE, tmp_path / "Makefile")
    for name in ("00_first.ipynb", "07_middle.ipynb", "11_later.ipynb"):
        _write(tmp_path / "notebooks" / name, "{}")
    assert "make 00 .. make 11" in _make(tmp_path, "help").stdout
