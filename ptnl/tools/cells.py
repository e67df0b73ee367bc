"""The companion notebooks' ``parameters`` cells, written from their sections' declarations
(``ptnl.sections.parameters``): ``python -m ptnl notebooks params [--check]``."""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.tools.notebooks import PARAMETERS_TAG, committed_notebooks, section_of


def parameters_cell(nb: dict, name: str) -> dict:
    """The one cell of notebook JSON ``nb`` tagged ``parameters`` (papermill needs exactly one)."""
    cells = [c for c in nb["cells"] if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{name}: {len(cells)} cells tagged {PARAMETERS_TAG!r}; papermill needs exactly one")
    return cells[0]


def generated_cell(notebook: str | Path) -> str:
    """The source of ``notebook``'s parameters cell, generated from its section's declarations."""
    section = section_of(notebook)
    if section is None:
        raise ValueError(
            f"{Path(notebook).name}: not a companion notebook (notebooks/<stem>.ipynb of a section in "
            f"ptnl.sections.SECTIONS): its parameters cell is its own"
        )
    return section.parameters.cell_source()


def committed_cell(notebook: str | Path) -> str:
    """The source of ``notebook``'s parameters cell as the file holds it."""
    return "".join(parameters_cell(json.loads(Path(notebook).read_text()), Path(notebook).name)["source"])


def cell_diff(notebook: str | Path) -> str:
    """A unified diff from the committed parameters cell to the generated one ("" when equal)."""
    want = generated_cell(notebook)
    have = committed_cell(notebook)
    if have == want:
        return ""
    name = Path(notebook).name
    return "".join(
        difflib.unified_diff(
            [line + "\n" for line in have.split("\n")],
            [line + "\n" for line in want.split("\n")],
            f"{name} (committed)",
            f"{name} (generated from its section)",
        )
    )


def write_parameter_cell(notebook: str | Path) -> bool:
    """Write ``notebook``'s parameters cell from its section's declarations, touching nothing else
    (outputs, execution counts, ids, metadata); True when it changed."""
    notebook = Path(notebook)
    source = generated_cell(notebook)
    nb = json.loads(notebook.read_text())
    cell = parameters_cell(nb, notebook.name)
    if "".join(cell["source"]) == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")  # as ``strip`` writes it
    return True


def companion_notebooks() -> list[Path]:
    """The committed notebooks that have a section (their parameters cells are generated)."""
    return [nb for nb in committed_notebooks() if section_of(nb) is not None]


def params_command(notebooks: list[Path], check: bool = False) -> int:
    """``notebooks params``: write (or with ``check`` compare) the parameters cells."""
    notebooks = [Path(nb) for nb in notebooks] or companion_notebooks()
    if check:
        diffs = [(nb, cell_diff(nb)) for nb in notebooks]
        stale = [nb for nb, d in diffs if d]
        for _, d in diffs:
            if d:
                print(d, end="", file=sys.stderr)
        if stale:
            print(
                f"error: the parameters cells of {', '.join(nb.name for nb in stale)} differ from their sections' "
                "declarations; write them with `python -m ptnl notebooks params`",
                file=sys.stderr,
            )
            return 1
        print(f"{len(notebooks)} parameters cells match their sections' declarations")
        return 0
    for nb in notebooks:
        changed = write_parameter_cell(nb)
        shown = (
            nb.resolve().relative_to(paths.REPO_ROOT) if nb.resolve().is_relative_to(paths.REPO_ROOT) else nb
        )
        print(f"{shown}: parameters cell {'written' if changed else 'up to date'}")
    return 0
