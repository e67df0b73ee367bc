"""Figure helpers: one house style, and files that are byte-stable across reruns.

Figures read results (``ptnl.train.store.collect``) and reference numbers (``ptnl.report.reference``); they never
compute. ``save_figure`` strips the timestamps and software versions matplotlib embeds by default,
so rebuilding a figure from the same results writes the same bytes (a diff means the numbers moved).
"""

from __future__ import annotations

import os
from pathlib import Path

from ptnl.core import paths

PAPER_STYLE = dict(linestyle="--", marker="x", alpha=0.6)  # the paper's numbers, drawn beside ours
OURS_STYLE = dict(linestyle="-", marker="o")
# Method colours are the method registry's (``ptnl.train.methods.VARIANT_COLORS``).


def use_style():
    """Deterministic, readable defaults (no fonts that vary by machine, fixed DPI)."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "font.family": "DejaVu Sans",
            "font.size": 9,
            "axes.titlesize": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "svg.hashsalt": "ptnl",
            "pdf.compression": 6,
        }
    )


def save_figure(fig, name: str, folder: Path | None = None, experiment: str | None = None) -> list[Path]:
    """Write ``<name>.png`` and ``<name>.pdf`` (atomically, byte-stable) under ``folder``, by default
    ``paths.figures_dir(experiment)``: ``figures/`` for the toy set, ``figures/<experiment>/`` else.
    Returns the paths written, relative to the repo root where they are inside it."""
    folder = Path(folder) if folder is not None else paths.figures_dir(experiment)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for ext, metadata in (
        ("png", {"Software": None}),
        ("pdf", {"Creator": None, "Producer": None, "CreationDate": None}),
    ):
        path = folder / f"{name}.{ext}"
        tmp = path.with_suffix(f".tmp-{os.getpid()}.{ext}")
        fig.savefig(tmp, format=ext, metadata=metadata, bbox_inches="tight")
        os.replace(tmp, path)
        out.append(path.relative_to(paths.REPO_ROOT) if path.is_relative_to(paths.REPO_ROOT) else path)
    return out
