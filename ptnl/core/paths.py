"""Every path ptnl reads or writes, resolved from the repo root or an environment variable.

Never from the working directory: nbval runs a notebook's kernel in the notebook's folder,
papermill in its ``--cwd``, JupyterLab wherever it was started. Resolving from here makes the
same notebook write to the same place under all three.

Each location is a function, not a constant, so a test (or a user) can point an environment
variable elsewhere at run time and every later call follows it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # ptnl/
REPO_ROOT = PACKAGE_DIR.parent


def _from_env(var: str, default: Path) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser().resolve() if value else default


def data_root() -> Path:
    """Real datasets, laid out as CoOp's DATASETS.md lays them out (``$PTNL_DATA``, default ``data/``)."""
    return _from_env("PTNL_DATA", REPO_ROOT / "data")


def cache_dir() -> Path:
    """Feature caches and other recomputable artefacts (``$PTNL_CACHE``, default ``cache/``)."""
    return _from_env("PTNL_CACHE", REPO_ROOT / "cache")


def manifests_dir() -> Path:
    """Noise manifests a notebook writes (notebook 10's example): ``<cache>/manifests/``, so they
    follow ``$PTNL_CACHE`` (recomputable: ``python -m ptnl noise export`` writes one again)."""
    return cache_dir() / "manifests"


def results_dir() -> Path:
    """Run store: ``results/<experiment>/<config-hash>/`` (``$PTNL_RESULTS``, default ``results/``)."""
    return _from_env("PTNL_RESULTS", REPO_ROOT / "results")


FIGURES_EXPERIMENT = "toy"  # the committed figures are the toy set's


def shipped_results_dir() -> Path:
    """The toy set's runs as they ship in git (``results/toy/`` under the repo root, whatever
    ``$PTNL_RESULTS`` says): the numbers behind the committed notebooks and figures."""
    return REPO_ROOT / "results" / FIGURES_EXPERIMENT


def shipped_figures_dir() -> Path:
    """The committed figures (``figures/`` under the repo root, whatever ``$PTNL_FIGURES`` says)."""
    return REPO_ROOT / "figures"


def figures_dir(experiment: str | None = None) -> Path:
    """Figures written by the notebooks (``$PTNL_FIGURES``, default ``figures/``): the toy set's
    (experiment "toy", committed) at the top, every other experiment's in ``figures/<experiment>/``
    (not committed), so a paper run never writes over the committed figures."""
    root = _from_env("PTNL_FIGURES", REPO_ROOT / "figures")
    if experiment is None or experiment == FIGURES_EXPERIMENT:
        return root
    return root / experiment_dir(experiment).name


def weights_dir() -> Path:
    """Local model checkpoints a user drops in by hand (``$PTNL_WEIGHTS``, default ``weights/``).

    open_clip's own downloads go to its cache (``~/.cache/huggingface`` or ``$HF_HOME``);
    this folder is for files passed as ``pretrained=<path>``.
    """
    return _from_env("PTNL_WEIGHTS", REPO_ROOT / "weights")


def toy_checkpoint_dir() -> Path:
    """The toy CLIP checkpoints that ship inside the package (read-only, committed)."""
    return PACKAGE_DIR / "models" / "toy" / "checkpoints"


def build_dir() -> Path:
    """Executed notebooks and other build outputs (``build/``; ``make clean`` removes it)."""
    return REPO_ROOT / "build"


def experiment_dir(experiment: str) -> Path:
    """Folder holding every run of one experiment."""
    if not experiment or "/" in experiment or experiment.startswith("."):
        raise ValueError(
            f"experiment name {experiment!r} must be a plain folder name (no '/', not empty, "
            "not starting with '.'), e.g. 'sec42_noise'"
        )
    return results_dir() / experiment
