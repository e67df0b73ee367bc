"""The notebook runner: parameter sets, checked overrides, and the committed notebooks' structure."""

import json

import nbformat
import pytest
import yaml

from ptnl import notebooks, paths


def _notebook(path, source="backbone = 'toy-rn'\nseeds = [1, 2, 3]\nepochs = 50\n"):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(backbone, seeds, epochs)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def layout(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params").mkdir()
    monkeypatch.setattr(notebooks, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    monkeypatch.setattr(notebooks, "PARAMS_DIR", tmp_path / "params")
    nb = _notebook(tmp_path / "notebooks" / "01_demo.ipynb")
    (tmp_path / "params" / "smoke.yaml").write_text(
        yaml.safe_dump({"common": {"backbone": "toy-vit", "device": "cpu"}, "01_demo": {"epochs": 2}})
    )
    return nb


def test_param_set_merges_common_and_section(layout):
    # `device` is in common but not declared by this notebook: it is simply not passed.
    assert notebooks.load_param_set("smoke", layout) == {"backbone": "toy-vit", "epochs": 2}


def test_overrides_are_parsed_as_yaml():
    got = notebooks.parse_overrides([["seeds", "[1, 2]"], ["csc", "true"], ["backbone", "RN50"]])
    assert got == {"seeds": [1, 2], "csc": True, "backbone": "RN50"}


def test_mistyped_parameter_names_the_closest(layout):
    with pytest.raises(ValueError, match="did you mean 'epochs'"):
        notebooks.check_names({"epoch": 3}, notebooks.notebook_parameters(layout), "override")


def test_unknown_set_lists_known_ones(layout):
    with pytest.raises(FileNotFoundError, match="smoke"):
        notebooks.load_param_set("nope", layout)


def test_section_for_a_missing_notebook_is_an_error(layout, tmp_path):
    (tmp_path / "params" / "bad.yaml").write_text("99_gone: {epochs: 1}\n")
    with pytest.raises(ValueError, match="99_gone"):
        notebooks.load_param_set("bad", layout)


COMMITTED = sorted((paths.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_notebook_structure(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "papermill needs exactly one cell tagged 'parameters'"
    assert all(c["execution_count"] is not None for c in code if c["outputs"]), "nbval needs execution counts"
    assert "papermill" not in nb["metadata"], "strip with `make refs` (papermill metadata left in)"


@pytest.mark.parametrize("name", ["smoke", "toy", "paper"])
def test_param_sets_fit_the_notebooks(name):
    file = paths.REPO_ROOT / "params" / f"{name}.yaml"
    if not COMMITTED:
        pytest.skip("no notebooks yet")
    assert file.is_file()
    for nb in COMMITTED:
        notebooks.load_param_set(name, nb)  # raises on any unknown name
