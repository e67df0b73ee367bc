"""What the notebooks of a parameter set will run, printed before ``make paper`` starts.

``plan(param_set)`` builds every notebook's grid from its parameters as the notebook runner would
give them (its defaults, then the set, then the runner's overrides), and prints per notebook how
many runs there are and how many are already done, then which datasets and weights are missing on
disk for the runs still to do. A run that two notebooks share is counted once in the total.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.sections import SECTIONS, build
from ptnl.sections.common import status
from ptnl.tools import notebooks
from ptnl.train import store


def notebook_params(notebook: Path, param_set) -> dict:
    """Every parameter of ``notebook`` as ``ptnl.tools.notebooks.run`` would give it: its declared
    defaults (``notebooks.notebook_parameters``), then the set (``param_set`` as
    ``notebooks.load_param_set`` takes it: a name, a file, a list)."""
    params = notebooks.notebook_parameters(notebook).defaults()
    params.update(notebooks.load_param_set(param_set, notebook))
    return params


def set_name(param_set) -> str:
    """A parameter set's name: its file's stem (the first one's, for a list of sets)."""
    first = param_set[0] if isinstance(param_set, list | tuple) else param_set
    return Path(os.fspath(first)).stem


def plan(param_set="paper", overrides: dict | None = None, file=None) -> list[dict]:
    """Print what the notebooks of ``param_set`` will run; returns one status dict per notebook.

    ``overrides`` (``-p NAME VALUE`` of the notebook runner) apply to the notebooks that declare
    them; the notebooks that do not are named. An error names the notebook it comes from.
    """
    file = file or sys.stdout
    rows, everything, passed_over = [], {}, {}
    model = cost_model()
    for nb in sorted(notebooks.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        if nb.stem not in SECTIONS:
            print(f"{nb.stem:28s} (no run plan in ptnl.sections.SECTIONS: not counted)", file=file)
            continue
        params = notebook_params(nb, param_set)
        mine = {k: v for k, v in (overrides or {}).items() if k in params}
        for name in set(overrides or {}) - set(mine):
            passed_over.setdefault(name, []).append(nb.stem)
        try:
            notebooks.check_values(mine, notebooks.notebook_parameters(nb), "override")
            params.update(mine)
            configs = build(nb.stem, params)
        except (ValueError, FileNotFoundError) as e:
            raise (ValueError if isinstance(e, ValueError) else FileNotFoundError)(f"{nb.stem}: {e}") from e
        experiment = params.get("experiment", set_name(param_set))
        s = status(configs, experiment)
        rows.append({"notebook": nb.stem, "experiment": experiment, **s})
        for c in configs:
            everything[(experiment, c.run_id)] = c
        toy = [c for c in configs if _is_toy(c) and not store.is_done(c, experiment)]
        hours = f"  ~{estimate_seconds(toy, model)['total'] / 3600:.1f} h on one core" if toy else ""
        print(
            f"{nb.stem:28s} {s['runs']:6d} runs ({s['done']} done, {s['pending']} to run)  "
            f"backbones {', '.join(s['backbones'])}{hours}",
            file=file,
        )
    for name, stems in sorted(passed_over.items()):
        print(
            f"override {name!r}: not a parameter of {', '.join(stems)} (they keep their own value)", file=file
        )
    unique = list(everything.items())
    pending = [c for (exp, _), c in unique if not store.is_done(c, exp)]
    print(
        f"{'total (shared runs once)':28s} {len(unique):6d} runs ({len(unique) - len(pending)} done, "
        f"{len(pending)} to run)",
        file=file,
    )
    missing_d = sorted({d for r in rows for d in r["missing_datasets"]})
    missing_w = sorted({w for r in rows for w in r["missing_weights"]})
    problems = {d: p for r in rows for d, p in r["dataset_problems"].items()}
    print(f"datasets missing under {paths.data_root()}: {', '.join(missing_d) or 'none'}", file=file)
    for d, problem in sorted(problems.items()):
        print(f"  {d}: {problem}", file=file)
    print(f"weights missing: {', '.join(missing_w) or 'none'}", file=file)
    toy_pending = [c for c in pending if _is_toy(c)]
    if toy_pending:
        print(describe_estimate(estimate_seconds(toy_pending, model)), file=file)
    return rows


# ------------------------------------------------------------------------------ time estimate


# Per run, seconds = a + b * work, fitted per method to the shipped toy runs' own times (their
# ``seconds`` metric: a group's time shared out, feature encoding included where the run built
# the cache). work = classes x SGD steps for prompt learners (the text tower runs over every class
# at every step), SGD steps for linear heads, 1 for the rest. Runs that record per-sample
# gradients (grad_ratio, notebook 04) cost more per step and are left out of the fit.
def _is_toy(c) -> bool:
    return c.backbone.startswith("toy-")


def _work(c) -> float | None:
    from ptnl.train import methods

    m = methods.get(c.method)
    n_classes = _n_classes(c.dataset)
    if n_classes is None:
        return None
    steps = max(n_classes * c.shots // c.batch_size, 1) * c.epochs
    if m.family.work == "text":  # every step runs the text tower over all classes
        return float(n_classes * steps)
    if m.family.work == "head":
        return float(steps)
    return 1.0


@functools.cache
def _n_classes(dataset: str) -> int | None:
    from ptnl.data import load_dataset

    try:
        return load_dataset(dataset).n_classes if dataset.startswith("toy-") else None
    except (ValueError, FileNotFoundError):
        return None


def cost_model(root: Path | None = None) -> dict[str, tuple[float, float, int]]:
    """Per method, (a, b, number of runs) of ``seconds = a + b * work`` fitted by least squares to
    the finished toy runs under ``root`` (default: the shipped ones, results/toy/)."""
    import json

    import numpy as np

    from ptnl.train.config import RunConfig

    root = root or paths.shipped_results_dir()
    data: dict[str, list[tuple[float, float]]] = {}
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not (d / store.DONE_FILE).is_file():
            continue
        d_ = json.loads((d / store.CONFIG_FILE).read_text())
        try:
            c = RunConfig.from_dict(d_)
        except (ValueError, TypeError):  # a record of another ptnl version: no timing to learn from
            continue
        work = _work(c)
        if work is not None and not c.grad_ratio:  # per-sample gradients: another cost, rare
            seconds = json.loads((d / store.METRICS_FILE).read_text())["seconds"]
            data.setdefault(c.method, []).append((work, seconds))
    out = {}
    for method, pts in data.items():
        w, t = np.array(pts).T
        if len(pts) < 2 or np.ptp(w) == 0:
            out[method] = (float(t.mean()), 0.0, len(pts))
            continue
        b, a = np.polyfit(w, t, 1)
        if a < 0:  # no negative overhead: the line through the origin instead
            a, b = 0.0, float(w @ t / (w @ w))
        out[method] = (float(a), float(max(b, 0.0)), len(pts))
    return out


def estimate_seconds(configs, model: dict | None = None) -> dict:
    """Estimated seconds of ``configs`` (toy runs) on this machine at one thread per run:
    ``total``, ``runs`` estimated, ``unknown`` (methods the shipped runs never timed), ``fitted_on``."""
    model = cost_model() if model is None else model
    total, unknown, n = 0.0, set(), 0
    for c in configs:
        work = _work(c)
        if c.method not in model or work is None:
            unknown.add(c.method)
            continue
        a, b, _ = model[c.method]
        total += a + b * work
        n += 1
    return {
        "total": total,
        "runs": n,
        "unknown": sorted(unknown),
        "fitted_on": sum(v[2] for v in model.values()),
    }


def describe_estimate(e: dict) -> str:
    h = e["total"] / 3600
    line = (
        f"estimated time of {e['runs']} pending toy runs: {h:.1f} h at one thread per run, "
        f"{h / 2:.1f} h with workers: 2 on two cores (a per-method fit to the times of the "
        f"{e['fitted_on']} shipped toy runs, results/toy/)"
    )
    if e["unknown"]:
        line += f"; no estimate for methods {', '.join(e['unknown'])}"
    return line
