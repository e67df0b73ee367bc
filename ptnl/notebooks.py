"""Run the companion notebooks with papermill, with parameter sets and checked overrides.

``python -m ptnl.notebooks run notebooks/02_noise_robustness.ipynb --set toy -p backbone toy-vit``

Parameter sets live in ``params/<set>.yaml``: a ``common`` section applied to every notebook that
declares those parameters, and one section per notebook (keyed by its file stem, e.g.
``02_noise_robustness``) that overrides it. Overrides given as ``-p NAME VALUE`` (papermill's shape) or ``-f file.yaml`` are parsed as YAML
(``-p seeds "[1, 2]"`` is a list, ``-p csc true`` a bool): papermill's own ``-p`` guesses types and
turns lists into strings. Every name is checked against the notebook's ``parameters`` cell: a
mistyped name is an error naming the closest valid one, never a silently ignored variable.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path

import yaml

from ptnl import paths

PARAMS_DIR = paths.REPO_ROOT / "params"
NOTEBOOKS_DIR = paths.REPO_ROOT / "notebooks"
KERNEL = "python3"


def notebook_parameters(notebook: Path) -> dict:
    """Names and default values (as source text) of the notebook's ``parameters`` cell."""
    import papermill

    return {name: spec["default"] for name, spec in papermill.inspect_notebook(str(notebook)).items()}


def load_param_set(name: str, notebook: Path) -> dict:
    """The values a parameter set gives one notebook (``common`` ∩ declared, then its own section)."""
    file = PARAMS_DIR / f"{name}.yaml"
    if not file.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no parameter set {name!r} ({file} missing); known sets: {', '.join(known)}")
    spec = yaml.safe_load(file.read_text()) or {}
    unknown_sections = set(spec) - {"common"} - {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")}
    if unknown_sections:
        raise ValueError(f"{file}: sections {sorted(unknown_sections)} name no notebook in {NOTEBOOKS_DIR}")
    declared = notebook_parameters(notebook)
    values = {k: v for k, v in (spec.get("common") or {}).items() if k in declared}
    own = spec.get(notebook.stem) or {}
    check_names(own, declared, f"{file} section {notebook.stem!r}")
    values.update(own)
    return values


def check_names(values: dict, declared: dict, where: str):
    for name in values:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{where}: unknown parameter {name!r}{hint} Parameters of this notebook: {', '.join(declared)}"
            )


def parse_overrides(pairs: list[list[str]], files: list[Path] = ()) -> dict:
    """``-p NAME VALUE`` pairs and ``-f`` YAML files, values parsed as YAML; later wins."""
    out = {}
    for file in files:
        loaded = yaml.safe_load(Path(file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file}: a parameters file must be a YAML mapping name: value")
        out.update(loaded)
    for name, value in pairs:
        out[name] = yaml.safe_load(value)
    return out


def run(
    notebook: str | Path,
    param_set: str = "toy",
    overrides: dict | None = None,
    output: str | Path | None = None,
) -> Path:
    """Execute one notebook into ``build/`` with papermill; returns the executed notebook's path."""
    import papermill

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        known = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {notebook}; notebooks: {', '.join(known)}")
    params = load_param_set(param_set, notebook)
    overrides = overrides or {}
    check_names(overrides, notebook_parameters(notebook), "override")
    params.update(overrides)
    output = Path(output) if output else paths.build_dir() / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp{output.suffix}")
    papermill.execute_notebook(
        str(notebook),
        str(tmp),
        parameters=params,
        kernel_name=KERNEL,
        # The kernel runs in the notebook's folder, exactly as nbval runs it; ptnl resolves every
        # path from the repo root, so this only matters for user code that opens relative paths.
        cwd=str(notebook.parent),
        progress_bar=not os.environ.get("TQDM_DISABLE"),
    )
    os.replace(tmp, output)
    return output


STRIP_KEYS = (
    "metadata.papermill cell.metadata.papermill cell.metadata.execution metadata.language_info.version"
)


def strip(notebook: Path):
    """Strip a notebook for git but keep outputs *and* execution counts (nbval needs both)."""
    import subprocess

    subprocess.run(
        [
            sys.executable,
            "-m",
            "nbstripout",
            "--keep-output",
            "--keep-count",
            "--extra-keys",
            STRIP_KEYS,
            str(notebook),
        ],
        check=True,
    )
    import json

    nb = json.loads(notebook.read_text())
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL}
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def refs(notebooks: list[Path], param_set: str = "smoke"):
    """Re-execute committed notebooks in place with the smoke set, then strip: the nbval references."""
    for nb in notebooks:
        nb = Path(nb).resolve()
        out = run(nb, param_set, output=nb.with_name(f".{nb.stem}.ref.ipynb"))
        os.replace(out, nb)
        strip(nb)
        print(f"reference {nb.name}: executed with --set {param_set}, stripped")


def add_param_option(parser) -> None:
    """``-p NAME VALUE`` (repeatable), the override syntax of every ptnl command that takes notebook parameters."""
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        nargs=2,
        default=[],
        metavar=("NAME", "VALUE"),
        help="override one parameter (value parsed as YAML: 3, true, [1, 2]); repeatable",
    )


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m ptnl.notebooks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks into build/")
    r.add_argument("notebooks", nargs="+", type=Path)
    r.add_argument("--set", default="toy", help="parameter set: params/<set>.yaml (default: toy)")
    add_param_option(r)
    r.add_argument(
        "-f",
        "--parameters-file",
        action="append",
        default=[],
        type=Path,
        help="YAML file of overrides (name: value); repeatable",
    )
    r.add_argument("--output-dir", type=Path, default=None, help="default: build/")
    f = sub.add_parser("refs", help="re-execute notebooks in place with the smoke set and strip them")
    f.add_argument("notebooks", nargs="+", type=Path)
    f.add_argument("--set", default="smoke")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "refs":
            refs(args.notebooks, args.set)
            return 0
        overrides = parse_overrides(args.param, args.parameters_file)
        for nb in args.notebooks:
            out = run(nb, args.set, overrides, args.output_dir / nb.name if args.output_dir else None)
            print(f"executed {nb} -> {out}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
