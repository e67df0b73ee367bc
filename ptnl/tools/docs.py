"""``docs/results.md`` and the README's claims table, written from the committed notebooks.

The committed notebooks are the toy set's notebooks executed on the shipped results
(``make refs``), and nbval holds every table in them to what the code computes from those results
(``make test``). This module copies what they show into Markdown: every notebook's printed tables
under the heading they appear at, its figures, and its claims tables, whose rows it reads from the
data each ``claims.show`` cell displays beside its text (``ptnl.report.claims.CLAIMS_MIME``), not
from the text. ``python -m ptnl docs`` writes both; ``--check`` only says whether they are current
(a test runs it, so a change that moves numbers cannot leave the docs behind).

``--toy`` rewrites the two command outputs ``docs/toy-world.md`` quotes (``ptnl toy sanity`` and
``ptnl fidelity``, about 4 minutes on 2 cores); they depend only on the frozen toy CLIPs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from ptnl.core import paths
from ptnl.core.files import atomic_write_bytes
from ptnl.report.claims import CLAIM_COLUMNS, CLAIMS_MIME, VERDICTS
from ptnl.sections import SECTIONS
from ptnl.tools import notebooks

RESULTS_MD = paths.REPO_ROOT / "docs" / "results.md"
TOY_WORLD_MD = paths.REPO_ROOT / "docs" / "toy-world.md"
# docs/toy-world.md's generated blocks: the command whose output each holds (the sanity check's
# last line is its JSON summary, left out).
TOY_BLOCKS = {"toy-table": (["toy", "sanity"], 1), "toy-fidelity": (["fidelity"], 0)}
README = paths.REPO_ROOT / "README.md"
BEGIN, END = "<!-- claims table: written by `make docs` -->", "<!-- end of claims table -->"
IGNORE = "NBVAL_IGNORE_OUTPUT"
SAVED = re.compile(r"^saved (\S+\.png) \S+\.pdf$")
FIGURE_REPR = re.compile(r"^<Figure size [^>]*>$")


def _text(output: dict) -> str:
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        return "".join(output.get("text", ""))
    data = output.get("data", {})
    return "".join(data.get("text/plain", "")) if "text/plain" in data else ""


def _holds(value, threshold: str) -> bool | None:
    """Whether ``value`` passes a claims table's threshold (``"> 0"``, ``"< -5"``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):  # n/a, or a check with no paper value
        return None
    op, bound = threshold.split()
    return value > float(bound) if op == ">" else value < float(bound)


def read(notebook: Path) -> dict:
    """What one executed notebook shows: its title, and blocks in order, each a heading with its
    printed text, figures and claims rows."""
    nb = json.loads(Path(notebook).read_text())
    title, heading, blocks = notebook.stem, "", []
    for cell in nb["cells"]:
        source = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            for line in source.splitlines():
                if line.startswith("# ") and title == notebook.stem:
                    title = line[2:].strip()
                elif line.startswith("#"):
                    heading = line.lstrip("#").strip()
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if (
            cell["cell_type"] != "code"
            or IGNORE in source
            or {"parameters", "injected-parameters"} & set(tags)
        ):
            continue
        block = {"heading": heading, "text": [], "figures": [], "claims": []}
        for out in cell.get("outputs", []):
            claims = out.get("data", {}).get(CLAIMS_MIME)
            if claims is not None:
                block["claims"] += claims["rows"]
            text = _text(out).rstrip("\n")
            lines = []
            for line in text.splitlines():
                m = SAVED.match(line)
                if m:
                    block["figures"].append(Path(m.group(1)).name)
                elif not FIGURE_REPR.match(line):
                    lines.append(line)
            if any(s.strip() for s in lines):
                block["text"].append("\n".join(lines))
        if block["text"] or block["figures"]:
            blocks.append(block)
    return {"stem": notebook.stem, "title": title, "blocks": blocks}


def _paper_holds(r: dict) -> bool | None:
    """Whether the paper's value passes the claim (its point verdict), None where it has none."""
    if "paper (point)" in r:
        return {"yes": True, "no": False}.get(r["paper (point)"])
    return _holds(r["paper"], r["threshold"])  # a table from before the three verdicts


def _counts(rows: list[dict]) -> tuple[str, str]:
    """Our verdicts as "supported / refuted / inconclusive of n" (claims measured at all), and how
    many of the claims the paper's numbers reach pass on its point values."""
    verdicts = [r.get("verdict") for r in rows if r.get("verdict") in VERDICTS]
    ours = " / ".join(str(verdicts.count(v)) for v in VERDICTS) + f" of {len(verdicts)}"
    paper = [h for r in rows if (h := _paper_holds(r)) is not None]
    theirs = f"{sum(paper)} of {len(paper)}" if paper else "no numbers"
    return ours, theirs


def claims_table(read_notebooks: list[dict], link: str) -> str:
    """One row per section: its claims' verdicts on the toy set (supported / refuted /
    inconclusive, ``ptnl.report.claims``), and how many the paper's numbers support (point values)."""
    lines = [
        "| Section | Toy set: supported / refuted / inconclusive | Paper's numbers support (point) | Notebook |",
        "|---|---|---|---|",
    ]
    for nb in read_notebooks:
        rows = [r for b in nb["blocks"] for r in b["claims"]]
        if not rows:
            continue
        ours, paper = _counts(rows)
        section = SECTIONS[nb["stem"]].title if nb["stem"] in SECTIONS else nb["title"]
        lines.append(
            f"| {section} | {ours} | {paper} | [{nb['stem'][:2]}]({link}notebooks/{nb['stem']}.ipynb) |"
        )
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "n/a"
    return str(v).replace("|", "\\|")


def results_md(read_notebooks: list[dict]) -> str:
    out = [
        "# Results of the toy set",
        "",
        "Written by `make docs` from the committed notebooks, which are the toy set's notebooks executed on",
        "the shipped results (`results/toy/`); `make test` re-executes them and holds every table here to",
        "what the code computes from those runs. The paper's numbers are its own, shown beside ours",
        "(`ptnl/report/reference.py` says which table each comes from). Means and ± are over seeds.",
        "",
        "Each claim of ours has a verdict: *supported* when its 95 % interval over seeds (a bootstrap of",
        "the seeds) lies wholly on the claim's side of the threshold, *refuted* when it lies wholly on",
        "the other side, *inconclusive* when it straddles the threshold, when fewer than three seeds are",
        "behind it, or when one dataset or cell carries a mean (`ptnl/report/claims.py` states the rule);",
        "*why* says which. The paper's numbers have no seeds: they are judged on their values alone",
        "(*paper (point)*).",
        "",
        "## Claims, per section",
        "",
        claims_table(read_notebooks, "../"),
        "",
    ]
    for nb in read_notebooks:
        out += [
            f"## {nb['title']}",
            "",
            f"Notebook: [`notebooks/{nb['stem']}.ipynb`](../notebooks/{nb['stem']}.ipynb)",
            "",
        ]
        last = None
        for b in nb["blocks"]:
            if b["heading"] and b["heading"] != last:
                out += [f"### {b['heading']}", ""]
                last = b["heading"]
            if b["claims"]:
                out += [
                    "| " + " | ".join(c[0].upper() + c[1:] for c in CLAIM_COLUMNS) + " |",
                    "|" + "---|" * len(CLAIM_COLUMNS),
                ]
                for r in b["claims"]:
                    out.append("| " + " | ".join(_cell(r.get(c)) for c in CLAIM_COLUMNS) + " |")
                out.append("")
            else:
                for text in b["text"]:
                    out += ["```text", text, "```", ""]
            for fig in b["figures"]:
                out += [f"![{fig}](../figures/{fig})", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def readme(text: str, table: str) -> str:
    """The README with its claims table replaced (between ``BEGIN`` and ``END``)."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{README} has no claims table markers; put {BEGIN!r} and {END!r} where it goes")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def build() -> dict[Path, str]:
    """Every file this writes, with its new text."""
    read_notebooks = [read(nb) for nb in notebooks.committed_notebooks()]
    return {
        RESULTS_MD: results_md(read_notebooks),
        README: readme(README.read_text(), claims_table(read_notebooks, "")),
    }


def toy_world(text: str) -> str:
    """``docs/toy-world.md`` with each generated block replaced by its command's output, run now."""
    for name, (cmd, drop) in TOY_BLOCKS.items():
        begin, end = f"<!-- generated: {name} -->\n", "<!-- /generated -->"
        if begin not in text:
            raise ValueError(f"{TOY_WORLD_MD} has no block {begin.strip()!r}")
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        out = subprocess.run([sys.executable, "-m", "ptnl", *cmd], check=True, capture_output=True, text=True)
        lines = out.stdout.rstrip("\n").splitlines()
        body = "\n".join(lines[: len(lines) - drop])
        text = f"{head}{begin}```text\n{body}\n```\n{end}{tail}"
    return text


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.description, ap.formatter_class = __doc__, argparse.RawDescriptionHelpFormatter
    ap.add_argument(
        "--check", action="store_true", help="only check that the files are current (exit 1 if not)"
    )
    ap.add_argument(
        "--toy", action="store_true", help="also rerun the commands docs/toy-world.md quotes (~4 min)"
    )


def command(args: argparse.Namespace) -> int:
    try:
        files = build()
        if args.toy:
            files[TOY_WORLD_MD] = toy_world(TOY_WORLD_MD.read_text())
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(
                f"{p.relative_to(paths.REPO_ROOT)} is not what the committed notebooks show: run `make docs`"
            )
        return 1 if stale else 0
    for p in stale:
        atomic_write_bytes(p, files[p].encode())
        print(f"wrote {p.relative_to(paths.REPO_ROOT)}")
    if not stale:
        print("docs/results.md and the README's claims table are current")
    return 0
