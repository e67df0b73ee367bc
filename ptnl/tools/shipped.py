"""The toy set's shipped results: ``results/toy/`` in git, the numbers behind the committed
notebooks and figures, and how a fresh store is compared with them.

``python -m ptnl shipped compare --store build/toy/results --figures build/toy/figures
--notebooks build/toy`` ends the main job (``make notebooks``): it trained every run of the toy
set into an empty store, and this sorts every run into three classes against the shipped one
(``classify``): identical (every metric, every digit, but ``PROVENANCE``); within float rounding
(test accuracy equal, every other metric within ``ROUNDING_REL``/``ROUNDING_ABS``); moved. Then it
compares every claim's verdict in the executed notebooks with the committed notebooks', and the
figures byte for byte. Bits may differ on another machine (another CPU, ARM, another BLAS); a
conclusion must not: it exits 1 only when a run is missing or a verdict changed, and names them.
Figures that differ because their runs moved are named, not a failure.

``python -m ptnl shipped update --store build/toy/results`` replaces the shipped runs with that
store's (``make ship``, after a change that moves numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.data.labels import PSEUDO_KINDS
from ptnl.report import claims
from ptnl.sections import SECTIONS, build
from ptnl.tools import docs, notebooks
from ptnl.tools.plan import notebook_params
from ptnl.train import ensemble, store
from ptnl.train.config import RunConfig, identity_part

SHIPPED_SET = "toy"  # params/toy.yaml
# How long, where, with which kernels and beside how many others a run trained: provenance, not
# what it measured. Never compared.
PROVENANCE = ("seconds", "group_size", "numeric_path")
# "Within float rounding": the test accuracy equal, integers and strings equal, and every other
# float within this of the shipped value. Other kernels reorder float sums, and 50 epochs of SGD
# grow that drift: measured against the pinned path on other kernel paths (docs/log/
# reproducible-v1.md), up to 3e-4 relative in a training loss and one training sample in a fit
# fraction, with the test accuracy equal.
ROUNDING_REL, ROUNDING_ABS = 1e-3, 1e-3
CLASSES = ("identical", "rounding", "moved")
# Methods whose training amplifies float rounding beyond ROUNDING (a few training samples or test
# images flip, a cross-validated hyperparameter jumps), with the bound their test accuracy is held
# to: twice the largest change measured when the whole toy set was retrained on other kernel paths
# (docs/log/reproducible-v1.md), at least 0.01. Every other method must agree to rounding anywhere.
AMPLIFYING = {
    "visual_ft": 0.45,
    "linear_probe": 0.55,
    "prompt": 0.2,
    "robust_upl_ce": 0.03,
    "robust_upl_gce": 0.01,
    "cls_tuning": 0.02,
    "full_prompt": 0.02,
    "upl": 0.01,
    "joapr": 0.01,
    "nlprompt_mae": 0.01,
}


def within_bound(method: str, cls: str, d_acc: float) -> bool:
    """Whether a retrained run of ``method`` in class ``cls``, its test accuracy changed by
    ``d_acc``, agrees with its shipped run as well as its method can (``AMPLIFYING``)."""
    if cls != "moved":
        return True
    return method in AMPLIFYING and abs(d_acc) <= AMPLIFYING[method]


FIGURE_SUFFIXES = (".png", ".pdf")


def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not all(isinstance(x, int | float) for x in (a, b)):
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= max(ROUNDING_ABS, ROUNDING_REL * max(abs(a), abs(b)))


def classify(theirs: dict, ours: dict) -> tuple[str, str]:
    """How a retrained run's metrics ``ours`` compare with the shipped ``theirs``: ``"identical"``
    (every metric but ``PROVENANCE``, every digit), ``"rounding"`` (test accuracy equal, the rest
    within ``ROUNDING_REL``/``ROUNDING_ABS``) or ``"moved"``; and the metrics that differ."""
    a = {k: v for k, v in theirs.items() if k not in PROVENANCE}
    b = {k: v for k, v in ours.items() if k not in PROVENANCE}
    differ = sorted(k for k in set(a) | set(b) if json.dumps(a.get(k)) != json.dumps(b.get(k)))
    if not differ:
        return "identical", ""
    what = ", ".join(differ[:4]) + (" ..." if len(differ) > 4 else "")
    same_acc = a.get("test_acc") == b.get("test_acc")
    if same_acc and all(k in a and k in b and _close(a[k], b[k]) for k in differ):
        return "rounding", what
    return "moved", what


def config_from_dict(d: dict) -> RunConfig:
    """The config a stored ``config.json`` holds."""
    return RunConfig.from_dict(d)


def planned(param_set: str = SHIPPED_SET) -> dict[str, RunConfig]:
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


def _method(run: Path) -> str:
    record = json.loads((run / store.CONFIG_FILE).read_text())
    try:
        c = config_from_dict(record)
        return (
            ensemble.method_of(c) if c.noise_kind in PSEUDO_KINDS else c.method
        )  # a UPL member's: its ensemble's
    except (ValueError, TypeError):
        return str(record.get("method", "?"))


def _difference(a: Path, b: Path) -> tuple[str, str, float]:
    """How two finished run folders of one run id compare: the class (``classify``; "moved" when
    the configs or extra files differ too), what differs, and the change in test accuracy."""
    ma, mb = (json.loads((d / store.METRICS_FILE).read_text()) for d in (a, b))
    d_acc = float(ma.get("test_acc", math.nan)) - float(mb.get("test_acc", math.nan))  # ours - shipped
    ca, cb = (identity_part(json.loads((d / store.CONFIG_FILE).read_text())) for d in (a, b))
    if ca != cb:
        return "moved", "config", d_acc
    cls, what = classify(mb, ma)
    extra = sorted(
        {p.name for d in (a, b) for p in d.iterdir()}
        - {store.CONFIG_FILE, store.METRICS_FILE, store.DONE_FILE}
    )
    for name in extra:
        if not ((a / name).is_file() and (b / name).is_file()):
            return "moved", name, d_acc
        if (a / name).read_bytes() != (b / name).read_bytes() and cls == "identical":
            cls, what = "rounding", name  # a trained context saved as floats: its metrics decide
    return cls, what, d_acc


def compare_runs(store_root: Path, shipped: Path | None = None, ids=None) -> dict:
    """Compare the runs ``ids`` (default: the toy set's) of ``store_root/toy`` with the shipped ones,
    in ``CLASSES``: identical, within float rounding, moved (with the largest change in test accuracy)."""
    shipped = shipped or paths.shipped_results_dir()
    mine = _finished(Path(store_root) / shipped.name)
    theirs = _finished(shipped)
    ids = list(planned()) if ids is None else list(ids)
    out = {"runs": len(ids), **{c: [] for c in CLASSES}, "missing": [], "not_shipped": [], "beyond_bound": []}
    for rid in ids:
        if rid not in mine:
            out["missing"].append(rid)
        elif rid not in theirs:
            out["not_shipped"].append(rid)
        else:
            cls, what, d_acc = _difference(mine[rid], theirs[rid])
            out[cls].append((rid, what, d_acc))
            if cls == "moved":
                method = _method(theirs[rid])
                if not within_bound(method, cls, d_acc):
                    out["beyond_bound"].append((rid, method, d_acc))
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


def report(runs: dict, figures: dict | None, verdicts: dict | None = None) -> str:
    n = runs["runs"]
    lines = [
        f"runs against the shipped results (results/toy/), {n} in all: {len(runs['identical'])} identical, "
        f"{len(runs['rounding'])} within float rounding (test accuracy equal, every other metric within "
        f"rel {ROUNDING_REL:g} / abs {ROUNDING_ABS:g}), {len(runs['moved'])} moved"
    ]
    if runs["moved"]:
        moved = sorted(runs["moved"], key=lambda t: -abs(t[2]) if not math.isnan(t[2]) else 0)
        shown = [f"{rid} ({what}; test accuracy {d:+.4f})" for rid, what, d in moved[:3]]
        lines.append(f"  moved, largest first: {', '.join(shown)}")
        beyond = runs.get("beyond_bound", [])
        lines.append(
            f"  {len(runs['moved']) - len(beyond)} of the {len(runs['moved'])} moved are of methods that amplify "
            f"rounding, within their measured bound (shipped.AMPLIFYING)"
            + (
                f"; beyond it: {', '.join(f'{r} ({m}, {d:+.4f})' for r, m, d in beyond[:5])}"
                if beyond
                else ""
            )
        )
    for what, rows in (("missing here", runs["missing"]), ("not shipped", runs["not_shipped"])):
        if rows:
            lines.append(f"  {len(rows)} {what}, e.g. {', '.join(rows[:3])}")
    if verdicts is not None:
        lines.append(verdict_report(verdicts))
    if figures is not None:
        lines.append(
            f"{figures['identical']}/{figures['figures']} figures identical to the committed ones (figures/)"
        )
        if figures["differ"]:
            why = " (their runs moved: expected)" if runs["moved"] or runs["rounding"] else ""
            lines.append(f"  differ: {', '.join(figures['differ'])}{why}")
        if figures["missing"]:
            lines.append(f"  not drawn: {', '.join(figures['missing'])}")
    return "\n".join(lines)


def compare_verdicts(executed: Path, committed: Path | None = None) -> dict:
    """Every claim's verdict in the notebooks executed into ``executed`` (the main job's
    ``build/toy/``) against the committed notebooks': ``{"claims": N, "changed": [...]}``."""
    committed = committed or paths.REPO_ROOT / "notebooks"
    out = {"claims": 0, "changed": [], "missing": []}
    for nb in sorted(committed.glob("[0-9][0-9]_*.ipynb")):
        new = Path(executed) / nb.name
        old_rows = claims_rows(nb)
        if not new.is_file():
            out["missing"].append(nb.name)
            continue
        new_rows = claims_rows(new)
        out["claims"] += len(old_rows)
        for change in claims.compare_verdicts(old_rows, new_rows):
            out["changed"].append({"notebook": nb.stem, **change})
    return out


def claims_rows(notebook: Path) -> list[dict]:
    """Every claims row an executed notebook shows, in order."""
    return [r for block in docs.read(Path(notebook))["blocks"] for r in block["claims"]]


def verdict_report(v: dict) -> str:
    if not v["changed"]:
        line = f"every one of {v['claims']} claim verdicts unchanged against the committed notebooks"
    else:
        line = f"{len(v['changed'])} of {v['claims']} claim verdicts changed against the committed notebooks:"
        for c in v["changed"]:
            line += (
                f"\n  {c['notebook']}: {c['claim']!s:.70}: {c['old']} ({c['old_value']}) -> "
                f"{c['new']} ({c['new_value']})"
            )
    if v["missing"]:
        line += f"\n  not executed: {', '.join(v['missing'])}"
    return line


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
    c.add_argument(
        "--report-only",
        action="store_true",
        help="exit 0 whatever moved (make ship: the new runs replace the shipped ones anyway)",
    )
    c.add_argument(
        "--notebooks",
        type=Path,
        default=None,
        help="a folder of executed notebooks whose claims' verdicts to compare, e.g. build/toy",
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
        verdicts = compare_verdicts(args.notebooks) if args.notebooks else None
        runs = compare_runs(args.store)
        print(report(runs, figures, verdicts))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Bits may move on another machine; a conclusion may not. Fail on a lost run or a flipped verdict.
    lost = runs["missing"] or (verdicts is not None and (verdicts["changed"] or verdicts["missing"]))
    if lost and not args.report_only:
        return 1
    return 0
