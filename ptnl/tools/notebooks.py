"""Run the companion notebooks with papermill, with parameter sets and checked overrides.

``python -m ptnl notebooks run notebooks/02_noise_robustness.ipynb --set toy -p backbone toy-vit``

Parameter sets live in ``params/<set>.yaml``: a ``common`` section applied to every notebook that
declares those parameters, and one section per notebook (keyed by its file stem, e.g.
``02_noise_robustness``) that overrides it; ``--set`` also takes a set file's path, and ``-f`` a set
file (layered over ``--set``). Overrides given as ``-p NAME VALUE`` (papermill's shape) or ``-f file.yaml`` are parsed as YAML
(``-p seeds "[1, 2]"`` is a list, ``-p csc true`` a bool): papermill's own ``-p`` guesses types and
turns lists into strings. Every name is checked against the notebook's declared parameters: a
mistyped name is an error naming the closest valid one, never a silently ignored variable, and
every value against its parameter's type.

A companion notebook's parameters are declared once, in its section (``ptnl.sections.parameters``;
``ptnl.sections.SECTIONS[stem].parameters``): its ``parameters`` cell is generated from them
(``python -m ptnl notebooks params`` writes the committed cells, ``--check`` fails where one
differs), the sets in ``params/`` and every override are checked against them, and the
notebook's first cell, ``params = check_parameters(stem, globals())``, checks papermill's injected
values against them and returns the dict its grid takes (``section.SECTION.runs(params)``). Any
other notebook (a copy elsewhere, one of your own) is declared by its ``parameters`` cell, as
papermill reads it.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ptnl.core import paths

if TYPE_CHECKING:  # ptnl.sections is imported where it is used: it brings torch and tqdm (check_parameters)
    from ptnl.sections.parameters import Parameter, Parameters

PARAMS_DIR = paths.REPO_ROOT / "params"
NOTEBOOKS_DIR = paths.REPO_ROOT / "notebooks"  # where the runner looks for notebooks (and params/ sections)
PACKAGE_NOTEBOOKS = paths.REPO_ROOT / "notebooks"  # the companion notebooks, generated from their sections
KERNEL = "python3"
PARAMETERS_TAG = "parameters"


def section_of(notebook: str | Path):
    """The section ``notebook`` is the companion notebook of (``notebooks/<stem>.ipynb`` of this
    package, its stem in ``ptnl.sections.SECTIONS``), or None: a copy elsewhere, another notebook."""
    from ptnl.sections import SECTIONS

    notebook = Path(notebook)
    if notebook.stem in SECTIONS and notebook.resolve().parent == PACKAGE_NOTEBOOKS.resolve():
        return SECTIONS[notebook.stem]
    return None


def notebook_parameters(notebook: str | Path) -> Parameters:
    """The parameters ``notebook`` declares, name -> ``Parameter`` (default, comment, types): a
    companion notebook's from its section, any other notebook's from its parameters cell."""
    section = section_of(notebook)
    return section.parameters if section is not None else cell_parameters(notebook)


def cell_parameters(notebook: str | Path) -> Parameters:
    """The parameters a notebook's ``parameters`` cell declares, as papermill reads them: each
    default a literal (an expression is kept as its source text, and takes a value of any type),
    a shared parameter's types where the shared declaration names them (``pretrained``)."""
    import papermill

    from ptnl.sections.parameters import SHARED, Parameter, Parameters

    out = []
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        source = spec["default"]
        try:
            default, expression = ast.literal_eval(source), ""
        except (ValueError, SyntaxError):
            default, expression = source, source
        types = () if expression else SHARED[name].types if name in SHARED else None
        try:
            out.append(Parameter(name, default, spec.get("help") or "", types=types, source=expression))
        except (ValueError, TypeError):  # a literal the cell writer would not write (a tuple, a set)
            out.append(Parameter(name, source, spec.get("help") or "", types=(), source=source))
    return Parameters(out)


def committed_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


def declared_anywhere() -> Parameters:
    """Every parameter some committed notebook declares (the first notebook's declaration of each name)."""
    from ptnl.sections.parameters import Parameters

    out = {}
    for nb in committed_notebooks():
        for name, p in notebook_parameters(nb).items():
            out.setdefault(name, p)
    return Parameters(out.values())


def set_file(name) -> Path:
    """The file of parameter set ``name``: ``params/<name>.yaml``, or ``name`` itself when it is a
    path (``--set /path/x.yaml``, ``--set my-set.yaml``)."""
    text = os.fspath(name)
    if text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text:
        if not Path(text).expanduser().is_file():
            raise FileNotFoundError(f"no parameter set file {Path(text).expanduser()}")
        return Path(text).expanduser()
    file = PARAMS_DIR / f"{text}.yaml"
    if not file.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no parameter set {text!r} ({file} missing); known sets: {', '.join(known)}")
    return file


def is_param_set(spec) -> bool:
    """A mapping with ``common`` or ``<notebook stem>`` sections, not one of ``name: value``s."""
    return isinstance(spec, dict) and any(k == "common" or str(k)[:1].isdigit() for k in spec)


def load_param_set(name, notebook: Path) -> dict:
    """The values a parameter set gives one notebook (``common`` ∩ declared, then its own section).

    ``name``: a set in ``params/``, a path to a set file, or a list of those, later ones winning.
    A name under ``common`` that no notebook declares, or under a notebook's section that this
    notebook does not declare, is an error naming the closest parameter, never silently dropped."""
    if isinstance(name, list | tuple):  # layered: a later set's values win
        return {k: v for layer in name for k, v in load_param_set(layer, notebook).items()}
    file = set_file(name)
    spec = _read_yaml(file)
    if not isinstance(spec, dict) or not all(isinstance(v, dict | None) for v in spec.values()):
        raise ValueError(
            f"{file}: a parameter set is a mapping of sections (common, <notebook stem>) to mappings"
        )
    unknown_sections = set(spec) - {"common"} - {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")}
    if unknown_sections:
        raise ValueError(f"{file}: sections {sorted(unknown_sections)} name no notebook in {NOTEBOOKS_DIR}")
    declared = notebook_parameters(notebook)
    common = spec.get("common") or {}
    if any(k not in declared for k in common):
        check_names(common, declared_anywhere(), f"{file} section 'common'", "any notebook")
    values = {k: v for k, v in common.items() if k in declared}
    own = spec.get(notebook.stem) or {}
    check_names(own, declared, f"{file} section {notebook.stem!r}")
    values.update(own)
    check_values(values, declared, f"{file}")
    return values


def check_names(values: dict, declared: Mapping, where: str, whose: str = "this notebook"):
    for name in values:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValueError(
                f"{where}: unknown parameter {name!r}{hint} Parameters of {whose}: {', '.join(declared)}"
            )


def _type_name(types: tuple) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a mapping", type(None): "null"}  # fmt: skip
    return " or ".join(names.get(t, t.__name__) for t in types)


def check_values(values: dict, declared: Mapping[str, Parameter], where: str) -> None:
    """Each value has its parameter's declared type (``Parameter.allowed``, read off its default):
    booleans only booleans (``-p save_figures maybe`` is an error, not a truthy string), integers
    not booleans, numbers ints or floats, lists lists (papermill's ``-p`` passes a list as a
    string); ``pretrained`` a tag, a file, null or a mapping. Names not declared are not checked here."""
    for name, value in values.items():
        p = declared.get(name)
        if p is None or p.accepts(value):
            continue
        allowed = p.allowed
        hint = ""
        if list in allowed and isinstance(value, str):
            hint = (
                f" papermill's -p passes text: give lists as YAML, `papermill ... -y '{name}: [a, b]'`, or "
                f"`python -m ptnl notebooks run ... -p {name} '[a, b]'` (make NN PARAMS=\"-p {name} '[a, b]'\")."
            )
        raise ValueError(f"{where}: parameter {name!r} must be {_type_name(allowed)}, got {value!r}.{hint}")


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def read_overrides(pairs: list[list[str]], files: list[Path] = ()) -> tuple[list[Path], dict]:
    """The ``-f`` files that are parameter sets (``is_param_set``; ``load_param_set`` layers them over
    ``--set``), and the ``name: value``s of the other files and the ``-p`` pairs (``parse_overrides``)."""
    sets, flat = [], []
    for file in files:
        (sets if is_param_set(_read_yaml(file)) else flat).append(Path(file))
    return sets, parse_overrides(pairs, flat)


def _read_yaml(file):
    try:
        return yaml.safe_load(Path(file).read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{file} is not valid YAML: {_one_line(e)}") from None


def parse_overrides(pairs: list[list[str]], files: list[Path] = ()) -> dict:
    """``-p NAME VALUE`` pairs and ``-f`` YAML files of ``name: value``, values parsed as YAML; later wins."""
    out = {}
    for file in files:
        loaded = _read_yaml(file)
        if is_param_set(loaded):
            raise ValueError(f"{file} is a parameter set (common, <notebook> sections): use --set {file}")
        if not isinstance(loaded, dict):
            raise ValueError(f"{file}: a parameters file must be a YAML mapping name: value")
        out.update(loaded)
    for name, value in pairs:
        try:
            out[name] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(
                f"-p {name}: {value!r} is not valid YAML ({_one_line(e)}); quote lists as '[a, b]'"
            ) from None
    return out


class NotebookFailed(ValueError):
    """A notebook stopped with an error: its one-line message, and where the executed copy is."""


def _failure(notebook: Path, copy: Path, e) -> NotebookFailed:
    where = f" (cell {e.exec_count})" if getattr(e, "exec_count", None) else ""
    return NotebookFailed(
        f"{notebook.name}{where}: {e.ename}: {e.evalue}\n"
        f"  the executed notebook, with the error in place, is {copy}"
    )


def run(
    notebook: str | Path,
    param_set: str | list = "toy",
    overrides: dict | None = None,
    output: str | Path | None = None,
) -> Path:
    """Execute one notebook into ``build/`` with papermill; returns the executed notebook's path.

    ``param_set``: as ``load_param_set`` takes it. ``overrides`` apply where the notebook declares
    them (``main`` checks that some notebook does)."""
    import papermill

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        known = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {notebook}; notebooks: {', '.join(known)}")
    params = load_param_set(param_set, notebook)
    declared = notebook_parameters(notebook)
    mine = {k: v for k, v in (overrides or {}).items() if k in declared}
    check_values(mine, declared, "override")
    params.update(mine)
    output = Path(output) if output else paths.build_dir() / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.tmp{output.suffix}")
    failed = output.with_name(f"{output.stem}.failed{output.suffix}")
    failed.unlink(missing_ok=True)
    try:
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
    except papermill.PapermillExecutionError as e:
        os.replace(tmp, failed)
        raise _failure(notebook, failed, e) from None
    os.replace(tmp, output)
    return output


# -- inside a notebook --------------------------------------------------------------------------


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def injected_names() -> list[str]:
    """The names papermill injected into this kernel (its ``# Parameters`` cell, read back from
    IPython's input history), in order; empty outside papermill."""
    shell = _shell()
    if shell is None:
        return []
    names = []
    for source in shell.user_ns.get("In", []):
        if source.lstrip().startswith("# Parameters"):
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return list(dict.fromkeys(names))


def check_parameters(notebook: str, namespace: dict) -> dict:
    """First line of every notebook, ``params = check_parameters(stem, globals())``: the injected
    names are parameters the notebook declares and every parameter has its declared type, so a
    typo fails before anything runs (papermill itself only warns). Returns the notebook's
    parameters, name -> value from ``namespace``: what ``section.SECTION.runs(params)`` takes.
    Also makes ptnl's bad-input errors show as one line in this notebook."""
    show_errors_in_one_line()
    # The declarations' sections import tqdm: in a kernel without ipywidgets its bars are plain text,
    # which is what the notebooks want (their first cell says so too, after this line).
    warnings.filterwarnings("ignore", message="IProgress not found")
    notebook = Path(notebook) if notebook.endswith(".ipynb") else NOTEBOOKS_DIR / f"{notebook}.ipynb"
    declared = notebook_parameters(notebook)
    check_names({k: None for k in injected_names()}, declared, f"{notebook.name}", "this notebook")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise ValueError(
            f"{notebook.name}: parameters {', '.join(missing)} are not defined: run its parameters cell first"
        )
    values = {k: namespace[k] for k in declared}
    check_values(values, declared, notebook.name)
    return values


def _from_ptnl(tb) -> bool:
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and Path(last.tb_frame.f_code.co_filename).resolve().is_relative_to(
        paths.PACKAGE_DIR
    )


def show_errors_in_one_line() -> None:
    """In IPython, a ValueError or FileNotFoundError raised by ptnl itself (its checks of bad input:
    parameters, configs, missing data or weights) shows as its one-line message, not a traceback
    through the library; any other error keeps its full traceback."""
    shell = _shell()
    if shell is None:
        return

    def handler(self, etype, value, tb, tb_offset=None):
        if _from_ptnl(tb):
            stb = [f"{etype.__name__}: {value}"]
            self._showtraceback(etype, value, stb)
            return stb
        return self.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((ValueError, FileNotFoundError), handler)


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
    nb = json.loads(notebook.read_text())
    nb["metadata"]["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": KERNEL}
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"  # figures displayed as PNG images


def refs(notebooks: list[Path], param_set: str = "toy"):
    """Re-execute committed notebooks in place with the toy set, figures as images, then strip
    them: the notebooks a reader opens, and nbval's references. Run with ``$PTNL_NO_TRAIN`` set
    (``make refs``) they read the shipped results and fail where a run is missing."""
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel inherits it; a headless Agg shows no figure
    for nb in notebooks:
        nb = Path(nb).resolve()
        out = run(nb, param_set, output=nb.with_name(f".{nb.stem}.ref.ipynb"))
        os.replace(out, nb)
        strip(nb)
        print(f"{nb.name}: executed in place with --set {param_set}, stripped")


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


SET_HELP = "parameter set: params/<set>.yaml, or the path of a set file (default: {default})"
FILE_HELP = "YAML file: a parameter set (common:, <notebook>: sections; over --set) or name: value overrides"


def add_file_option(parser, help: str) -> None:
    """``-f FILE`` (repeatable): a YAML file of parameter overrides or a parameter set (``read_overrides``)."""
    parser.add_argument("-f", "--parameters-file", action="append", default=[], type=Path, help=help)


def add_arguments(ap: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``python -m ptnl notebooks``: ``run``, ``refs`` and ``params`` (their
    parsers, by name)."""
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    sub = ap.add_subparsers(dest="notebooks_cmd", required=True)
    r = sub.add_parser("run", help="execute notebooks into build/")
    r.add_argument("notebooks", nargs="+", type=Path)
    r.add_argument("--set", default="toy", help=SET_HELP.format(default="toy"))
    add_param_option(r)
    add_file_option(r, FILE_HELP)
    r.add_argument("--output-dir", type=Path, default=None, help="default: build/")
    f = sub.add_parser(
        "refs", help="re-execute notebooks in place (toy set, figures as images) and strip them"
    )
    f.add_argument("notebooks", nargs="+", type=Path)
    f.add_argument("--set", default="toy")
    g = sub.add_parser(
        "params",
        help="write the notebooks' parameters cells from their sections' declarations (--check: compare)",
    )
    g.add_argument("notebooks", nargs="*", type=Path, help="default: every companion notebook")
    g.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 (with a diff) where a cell differs"
    )
    return {"run": r, "refs": f, "params": g}


def command(args: argparse.Namespace, before_run=None) -> int:
    """Execute the notebooks (``run``) or rebuild their nbval references (``refs``); ``params``
    is ``ptnl.tools.cells``'. ``before_run(notebooks, sets, overrides)``: called once the sets and
    overrides are checked, before the first notebook executes (the schedule trains there)."""
    try:
        if args.notebooks_cmd == "refs":
            refs(args.notebooks, args.set)
            return 0
        set_files, overrides = read_overrides(args.param, args.parameters_file)
        sets = [args.set, *set_files] if set_files else args.set
        declared = {}
        for nb in args.notebooks:
            declared.update(notebook_parameters(Path(nb).resolve()))
            load_param_set(sets, Path(nb).resolve())  # a bad set fails before the first notebook runs
        check_names(overrides, declared, "override", "the notebooks run")
        if before_run is not None:
            before_run([Path(nb) for nb in args.notebooks], sets, overrides)
        for nb in args.notebooks:
            out = run(nb, sets, overrides, args.output_dir / nb.name if args.output_dir else None)
            print(f"executed {nb} -> {out}")
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted: finished runs are in the store; run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    return 0
