"""What the notebooks of a parameter set will run, printed before ``make paper`` starts.

``plan(param_set)`` builds every notebook's grid from its parameters as the notebook runner would
give them (its defaults, then the set, then the runner's overrides), and prints per notebook how
many runs there are and how many are already done, then which datasets and weights are missing on
disk for the runs still to do. A run that two notebooks share is counted once in the total.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.sections import SECTIONS, build
from ptnl.sections.common import status
from ptnl.tools import notebooks
from ptnl.train import store


def notebook_params(notebook: Path, param_set: str) -> dict:
    """Every parameter of ``notebook`` as ``ptnl.tools.notebooks.run`` would give it: its defaults, then the set."""
    params = {}
    for name, source in notebooks.notebook_parameters(notebook).items():
        try:
            params[name] = ast.literal_eval(source)
        except (ValueError, SyntaxError):
            params[name] = source
    params.update(notebooks.load_param_set(param_set, notebook))
    return params


def plan(param_set: str = "paper", overrides: dict | None = None, file=None) -> list[dict]:
    """Print what the notebooks of ``param_set`` will run; returns one status dict per notebook.

    ``overrides`` (``-p NAME VALUE`` of the notebook runner) apply to the notebooks that declare them.
    """
    file = file or sys.stdout
    rows, everything = [], {}
    for nb in sorted(notebooks.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        if nb.stem not in SECTIONS:
            print(f"{nb.stem:28s} (no run plan in ptnl.sections.SECTIONS: not counted)", file=file)
            continue
        params = notebook_params(nb, param_set)
        mine = {k: v for k, v in (overrides or {}).items() if k in params}
        notebooks.check_values(mine, notebooks.notebook_parameters(nb), "override")
        params.update(mine)
        configs = build(nb.stem, params)
        experiment = params.get("experiment", param_set)
        s = status(configs, experiment)
        rows.append({"notebook": nb.stem, "experiment": experiment, **s})
        for c in configs:
            everything[(experiment, c.run_id)] = c
        print(
            f"{nb.stem:28s} {s['runs']:6d} runs ({s['done']} done, {s['pending']} to run)  "
            f"backbones {', '.join(s['backbones'])}",
            file=file,
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
    return rows
