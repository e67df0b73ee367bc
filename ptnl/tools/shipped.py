"""The toy set's shipped results: ``results/toy/`` in git, the numbers behind the committed
notebooks and figures, and how a fresh store is compared with them.

``python -m ptnl shipped compare --store build/toy/results --figures build/toy/figures`` ends the
main job (``make notebooks``): it trained every run of the toy set into an empty store, and this
says how many of them are identical to the shipped ones and how many figures are byte-identical
to the committed ones. ``python -m ptnl shipped update --store build/toy/results`` replaces the
shipped runs with that store's (``make ship``, after a change that moves numbers).

Identical means: the same config, the same metrics (every one, every digit; only ``seconds``, the
wall time, is left out) and the same extra files (a UPL member's ``prompt.pt``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.sections import SECTIONS, build
from ptnl.tools import notebooks
from ptnl.tools.plan import notebook_params
from ptnl.train import store
from ptnl.train.config import RunConfig
from ptnl.train.upl import UPLConfig

SHIPPED_SET = "toy"  # params/toy.yaml
VOLATILE_METRICS = ("seconds",)  # wall time: the one metric that differs between two honest runs
FIGURE_SUFFIXES = (".png", ".pdf")


def config_from_dict(d: dict) -> RunConfig | UPLConfig:
    """The config a stored ``config.json`` holds: a UPL member's has a ``selection``."""
    return UPLConfig.from_dict(d) if "selection" in d else RunConfig.from_dict(d)


def planned(param_set: str = SHIPPED_SET) -> dict[str, RunConfig | UPLConfig]:
    """Every run the notebooks of ``param_set`` read, by run id (a run two notebooks share once)."""
    out = {}
    for nb in notebooks.committed_notebooks():
        if nb.stem in SECTIONS:
            for c in build(nb.stem, notebook_params(nb, param_set)):
                out.setdefault(c.run_id, c)
    return out


def _finished(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if d.name[0] != "." and (d / store.DONE_FILE).is_file()}


def _difference(a: Path, b: Path) -> tuple[str, bool]:
    """What first differs between two finished run folders ("" if they hold the same run), and
    whether their test accuracies are equal."""
    ma, mb = (json.loads((d / store.METRICS_FILE).read_text()) for d in (a, b))
    same_acc = ma.get("test_acc") == mb.get("test_acc")
    if json.loads((a / store.CONFIG_FILE).read_text()) != json.loads((b / store.CONFIG_FILE).read_text()):
        return "config", same_acc
    for k in VOLATILE_METRICS:
        ma.pop(k, None), mb.pop(k, None)
    if ma != mb:
        keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
        return "metrics " + ", ".join(keys[:4]) + (" ..." if len(keys) > 4 else ""), same_acc
    extra = sorted(
        {p.name for d in (a, b) for p in d.iterdir()}
        - {store.CONFIG_FILE, store.METRICS_FILE, store.DONE_FILE}
    )
    for name in extra:
        if (
            not ((a / name).is_file() and (b / name).is_file())
            or (a / name).read_bytes() != (b / name).read_bytes()
        ):
            return name, same_acc
    return "", same_acc


def compare_runs(store_root: Path, shipped: Path | None = None, ids=None) -> dict:
    """Compare the runs ``ids`` (default: the toy set's) of ``store_root/toy`` with the shipped ones."""
    shipped = shipped or paths.shipped_results_dir()
    mine = _finished(Path(store_root) / shipped.name)
    theirs = _finished(shipped)
    ids = list(planned()) if ids is None else list(ids)
    out = {
        "runs": len(ids),
        "identical": 0,
        "test_acc_identical": 0,
        "differ": [],
        "missing": [],
        "not_shipped": [],
    }
    for rid in ids:
        if rid not in mine:
            out["missing"].append(rid)
        elif rid not in theirs:
            out["not_shipped"].append(rid)
        else:
            what, same_acc = _difference(mine[rid], theirs[rid])
            out["test_acc_identical"] += same_acc
            if what:
                out["differ"].append(f"{rid}: {what}")
            else:
                out["identical"] += 1
    return out


def compare_figures(figures: Path, shipped: Path | None = None) -> dict:
    """Byte-compare every committed figure (``<name>.png`` and ``.pdf``) with the one in ``figures``."""
    shipped = shipped or paths.shipped_figures_dir()
    names = sorted({p.stem for p in shipped.glob("*") if p.suffix in FIGURE_SUFFIXES})
    out = {"figures": len(names), "identical": 0, "differ": [], "missing": []}
    for name in names:
        files = [(shipped / f"{name}{s}", Path(figures) / f"{name}{s}") for s in FIGURE_SUFFIXES]
        if not all(new.is_file() for _, new in files):
            out["missing"].append(name)
        elif all(old.read_bytes() == new.read_bytes() for old, new in files):
            out["identical"] += 1
        else:
            out["differ"].append(name)
    return out


def report(runs: dict, figures: dict | None) -> str:
    lines = [f"{runs['identical']}/{runs['runs']} runs identical to the shipped results (results/toy/)"]
    if runs["identical"] < runs["runs"]:
        lines.append(f"  test accuracy identical in {runs['test_acc_identical']}/{runs['runs']}")
        for what, rows in (
            ("differ", runs["differ"]),
            ("missing here", runs["missing"]),
            ("not shipped", runs["not_shipped"]),
        ):
            if rows:
                lines.append(f"  {len(rows)} {what}, e.g. {', '.join(rows[:3])}")
    if figures is not None:
        lines.append(
            f"{figures['identical']}/{figures['figures']} figures identical to the committed ones (figures/)"
        )
        if figures["differ"]:
            lines.append(f"  differ: {', '.join(figures['differ'])}")
        if figures["missing"]:
            lines.append(f"  not drawn: {', '.join(figures['missing'])}")
    return "\n".join(lines)


def update(store_root: Path, shipped: Path | None = None, ids=None) -> int:
    """Replace the shipped runs by the runs ``ids`` (default: the toy set's) of ``store_root``,
    all of which must be done. The new folder is copied whole beside the old one and swapped in
    by two renames."""
    shipped = shipped or paths.shipped_results_dir()
    mine = _finished(Path(store_root) / shipped.name)
    ids = list(planned()) if ids is None else list(ids)
    missing = [rid for rid in ids if rid not in mine]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the toy set's {len(ids)} runs are not done in {Path(store_root) / shipped.name} "
            f"(e.g. {missing[0]}): run the main job first, `make notebooks`"
        )
    new = shipped.with_name(f".{shipped.name}.new")
    old = shipped.with_name(f".{shipped.name}.old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    for rid in sorted(ids):
        shutil.copytree(mine[rid], new / rid)
    if shipped.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(shipped, old)
    os.rename(new, shipped)
    shutil.rmtree(old, ignore_errors=True)
    return len(ids)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    sub = ap.add_subparsers(dest="shipped_cmd", required=True)
    c = sub.add_parser("compare", help="how many runs (and figures) equal the shipped ones")
    c.add_argument(
        "--store", type=Path, required=True, help="a run store root holding toy/, e.g. build/toy/results"
    )
    c.add_argument(
        "--figures", type=Path, default=None, help="a folder of redrawn figures, e.g. build/toy/figures"
    )
    u = sub.add_parser("update", help="replace results/toy/ by the toy set's runs of another store")
    u.add_argument(
        "--store", type=Path, required=True, help="a run store root holding toy/, e.g. build/toy/results"
    )


def command(args: argparse.Namespace) -> int:
    try:
        if args.shipped_cmd == "update":
            n = update(args.store)
            print(f"{paths.shipped_results_dir()}: {n} runs from {args.store}")
            return 0
        figures = compare_figures(args.figures) if args.figures else None
        print(report(compare_runs(args.store), figures))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
