"""Notebook parameters declared once, in the sections: the committed parameters cells are generated
from the declarations, the runner's checks read them, and a notebook's grid takes them as one dict."""

import ast
import inspect
import json
import shutil

import pytest

from ptnl.core import paths
from ptnl.sections import SECTIONS
from ptnl.sections.common import Section
from ptnl.sections.parameters import PRETRAINED_TYPES, SHARED, Parameter, Parameters, literal
from ptnl.tools import cells, notebooks
from ptnl.tools.cli import main

COMMITTED = sorted((paths.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# What a notebook's cells use beside its grid: the sweep's, the store's and the figures' choices.
NOT_GRID = {"device", "group_size", "workers", "experiment", "save_figures"}


# -- the cells are generated ---------------------------------------------------------------------


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_the_committed_parameters_cell_is_the_generated_one(path):
    """Byte for byte: a parameter changed in a section and not in its notebook (or the other way
    round) fails here; `python -m ptnl notebooks params` writes the cells again."""
    assert notebooks.section_of(path) is SECTIONS[path.stem], "every committed notebook has a section"
    assert cells.committed_cell(path) == SECTIONS[path.stem].parameters.cell_source(), (
        f"{path.name}: run `python -m ptnl notebooks params`\n{cells.cell_diff(path)}"
    )


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_papermill_reads_the_declarations_back_from_the_cell(path, tmp_path):
    """What papermill sees in the cell (names, defaults, comments) is what the section declares."""
    declared = SECTIONS[path.stem].parameters
    copy = tmp_path / path.name  # a copy elsewhere: declared by its own cell, as papermill reads it
    shutil.copy(path, copy)
    read = notebooks.notebook_parameters(copy)
    assert notebooks.section_of(copy) is None and read == notebooks.cell_parameters(copy)
    assert list(read) == list(declared)
    for name, p in declared.items():
        assert read[name].default == p.default and type(read[name].default) is type(p.default)
        assert read[name].comment == ("" if p.comment_above else p.comment)


def test_a_cell_line_is_name_literal_comment():
    assert Parameter("backbone", "toy-rn").line() == 'backbone = "toy-rn"'
    assert Parameter("seeds", [1, 2], "two seeds").line() == "seeds = [1, 2]  # two seeds"
    assert Parameter("p", {"a": [0.5]}, "rates", comment_above=True).line() == '# rates\np = {"a": [0.5]}'
    assert Parameter("t", [None, 100.0]).line() == "t = [None, 100.0]"
    cell = Parameters([Parameter("a", True), Parameter("b", None, "none yet")]).cell_source()
    assert cell == "a = True\nb = None  # none yet"


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        50,
        0.0,
        0.125,
        100.0,
        "toy-rn",
        'a "quoted" \\ string',
        "çà",
        [],
        [1, [2.5, None]],
        {"symmetric": [0.5], "x": {"y": "z"}},
    ],  # fmt: skip
)
def test_literals_read_back_as_the_value(value):
    text = literal(value)
    assert ast.literal_eval(text) == value and type(ast.literal_eval(text)) is type(value)


def test_a_default_the_cell_cannot_write_is_an_error():
    for bad in ((1, 2), {1, 2}, float("nan"), object()):
        with pytest.raises((TypeError, ValueError)):
            Parameter("x", bad)
    with pytest.raises(ValueError, match="not a Python identifier"):
        Parameter("no-dash", 1)


def test_the_params_command_checks_and_writes_the_cells(tmp_path, monkeypatch, capsys):
    """`--check` names a stale cell with a diff and exits 1; writing restores the committed file
    exactly (outputs, execution counts, ids, metadata untouched)."""
    monkeypatch.setattr(notebooks, "PACKAGE_NOTEBOOKS", tmp_path)
    original = paths.REPO_ROOT / "notebooks" / "04_noisy_gradients.ipynb"
    nb = tmp_path / original.name
    committed = original.read_text()
    book = json.loads(committed)
    cell = cells.parameters_cell(book, nb.name)
    cell["source"] = [line.replace("epochs = 50", "epochs = 40") for line in cell["source"]]
    nb.write_text(json.dumps(book, indent=1, ensure_ascii=False) + "\n")
    assert main(["notebooks", "params", "--check", str(nb)]) == 1
    err = capsys.readouterr().err
    assert "-epochs = 40\n+epochs = 50" in err and "04_noisy_gradients.ipynb differ" in err
    assert main(["notebooks", "params", str(nb)]) == 0
    assert nb.read_text() == committed
    assert "parameters cell written" in capsys.readouterr().out
    assert main(["notebooks", "params", "--check", str(nb)]) == 0
    assert main(["notebooks", "params", str(nb)]) == 0 and "up to date" in capsys.readouterr().out


def test_the_params_check_passes_on_the_committed_notebooks(capsys):
    assert main(["notebooks", "params", "--check"]) == 0
    assert f"{len(COMMITTED)} parameters cells match" in capsys.readouterr().out


def test_a_notebook_without_a_section_has_no_generated_cell(tmp_path):
    copy = tmp_path / "00_quickstart.ipynb"
    shutil.copy(paths.REPO_ROOT / "notebooks" / copy.name, copy)
    assert notebooks.section_of(copy) is None
    with pytest.raises(ValueError, match="not a companion notebook"):
        cells.generated_cell(copy)


# -- declared once -------------------------------------------------------------------------------


def test_shared_parameters_are_declared_once_and_sections_override_only_default_or_comment():
    for section in SECTIONS.values():
        for name, p in section.parameters.items():
            if name in SHARED:
                assert p.allowed == SHARED[name].allowed, (section.stem, name)
                assert (p.types, p.comment_above) == (SHARED[name].types, SHARED[name].comment_above)
    # a parameter most notebooks share is one object, not a copy retyped per section
    users = [s.parameters["epochs"] for s in SECTIONS.values()]
    assert len(users) == len(SECTIONS) and all(p is SHARED["epochs"] for p in users)
    with pytest.raises(ValueError, match="override its default or comment"):
        SHARED.pick(Parameter("seeds", 1))
    with pytest.raises(KeyError, match="no shared parameter 'seed'"):
        SHARED.pick("seed")
    with pytest.raises(ValueError, match="declared twice"):
        SHARED.pick("seeds", "seeds")


def test_types_come_from_the_default():
    assert Parameter("b", True).allowed == (bool,)
    assert Parameter("n", 4).allowed == (int,) and not Parameter("n", 4).accepts(True)
    assert Parameter("r", 0.5).allowed == (int, float) and Parameter("r", 0.5).accepts(1)
    assert Parameter("s", "x").allowed == (str,) and not Parameter("s", "x").accepts(None)
    assert Parameter("l", []).accepts([1]) and not Parameter("l", []).accepts("[1]")
    assert Parameter("d", {}).accepts({"a": 1}) and not Parameter("d", {}).accepts([])
    assert Parameter("w", None).allowed == () and Parameter("w", None).accepts(3)  # None: any value
    assert SHARED["pretrained"].allowed == PRETRAINED_TYPES
    assert SECTIONS["02_noise_robustness"].parameters["resnet50_weights"].allowed == (str, type(None))


def test_defaults_are_copies():
    params = SECTIONS["02_noise_robustness"].parameters
    d = params.defaults()
    d["datasets"].append("toy-scatter")
    assert params.defaults()["datasets"] == ["toy-shapes", "toy-fine"]


# -- one dict into the grid ----------------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(SECTIONS))
def test_the_grid_takes_what_the_notebook_declares(stem):
    """`runs(params)` drops the names its grid does not take: those must be the notebook's own
    (device, workers ...), never a grid argument spelled differently from its parameter."""
    section = SECTIONS[stem]
    taken = set(inspect.signature(section.grid).parameters)
    assert set(section.parameters) - taken <= NOT_GRID, "declared, but the grid never sees it"
    required = {n for n, p in inspect.signature(section.grid).parameters.items() if p.default is p.empty}
    assert required <= set(section.parameters)


@pytest.mark.parametrize("stem", ["00_quickstart", "02_noise_robustness", "07_unsupervised", "09_toy_lab"])
def test_runs_takes_the_parameters_dict_or_keywords(stem):
    section = SECTIONS[stem]
    params = {**section.parameters.defaults(), "seeds": [1], "epochs": 2}
    grid_keywords = {k: v for k, v in params.items() if k in inspect.signature(section.grid).parameters}

    def ids(items):  # the run ids the store will hold (notebook 07's grid is of ensembles)
        return [c.run_id for c in (section.stored(items) if section.stored else items)]

    want = ids(section.grid(**grid_keywords))
    assert ids(section.runs(params)) == want  # device, experiment ... ignored
    assert ids(section.runs(**grid_keywords)) == want  # the grid's keywords, as before
    assert ids(section.runs({**params, "epochs": 50}, epochs=2)) == want  # keywords win
    assert [c.run_id for c in section.build(params)] == want


def test_a_section_must_declare_what_its_grid_requires():
    def grid(backbone, datasets, shots=16):
        return []

    with pytest.raises(ValueError, match="the grid takes datasets, which its parameters do not declare"):
        Section("99_x", "x", grid, SHARED.pick("backbone"))
    Section("99_x", "x", grid, SHARED.pick("backbone", "datasets"))


def test_check_parameters_returns_the_notebooks_values():
    declared = SECTIONS["00_quickstart"].parameters
    namespace = {**declared.defaults(), "seeds": [4], "other": 1}
    got = notebooks.check_parameters("00_quickstart", namespace)
    assert got == {**declared.defaults(), "seeds": [4]} and list(got) == list(declared)
    with pytest.raises(ValueError, match="^00_quickstart.ipynb: parameter 'seeds' must be a list, got 4\\.$"):
        notebooks.check_parameters("00_quickstart", {**namespace, "seeds": 4})
    del namespace["shots"]
    with pytest.raises(ValueError, match="parameters shots are not defined: run its parameters cell first"):
        notebooks.check_parameters("00_quickstart", namespace)


def test_overrides_go_through_the_declarations(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(notebooks, "run", lambda nb, s, overrides, out: calls.append(overrides) or nb)
    nb = str(paths.REPO_ROOT / "notebooks" / "05_architectures.ipynb")
    assert main(["notebooks", "run", nb, "--set", "smoke", "-p", "n_ctx", "[4]"]) == 2
    assert "did you mean 'n_ctxs'" in capsys.readouterr().err
    assert main(["notebooks", "run", nb, "--set", "smoke", "-p", "n_ctxs", "[4]"]) == 0 and calls == [
        {"n_ctxs": [4]}
    ]
