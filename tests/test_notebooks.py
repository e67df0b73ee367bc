"""The notebook runner: parameter sets, checked overrides, and the committed notebooks' structure."""

import json
from concurrent.futures import ThreadPoolExecutor

import nbformat
import pytest
import yaml

from ptnl.core import paths
from ptnl.sections import SECTIONS
from ptnl.sections.parameters import Parameter, Parameters
from ptnl.tools import notebooks, schedule
from ptnl.tools.cli import main


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
    _notebook(tmp_path / "notebooks" / "02_other.ipynb", "device = 'cpu'\nsave_figures = True\n")
    (tmp_path / "params" / "smoke.yaml").write_text(
        yaml.safe_dump({"common": {"backbone": "toy-vit", "device": "cpu"}, "01_demo": {"epochs": 2}})
    )
    return nb


def test_param_set_merges_common_and_section(layout):
    # `device` is in common but not declared by this notebook (02_other declares it): not passed.
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


SETS = sorted((paths.REPO_ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("file", SETS, ids=[f.stem for f in SETS])
def test_param_sets_fit_the_notebooks(file):
    """Every name of every set in params/ is a parameter its notebook declares (under `common`:
    some notebook), every value has the declared type: checked against the sections' declarations."""
    if not COMMITTED:
        pytest.skip("no notebooks yet")
    spec = yaml.safe_load(file.read_text())
    declared_somewhere = set()
    for nb in COMMITTED:
        declared = notebooks.notebook_parameters(nb)
        assert declared is SECTIONS[nb.stem].parameters  # the section's declaration, not the cell's text
        declared_somewhere |= set(declared)
        values = notebooks.load_param_set(file.stem, nb)  # raises on an unknown name or a mistyped value
        assert set(values) <= set(declared)
        assert all(declared[k].accepts(v) for k, v in values.items())
        assert set(spec.get(nb.stem) or {}) <= set(values)
    assert set(spec.get("common") or {}) <= declared_somewhere


@pytest.mark.parametrize(
    "text, match",
    [
        ("common: {epochs: '50'}\n", "parameter 'epochs' must be an integer, got '50'"),
        ("common: {seeds: 1}\n", "parameter 'seeds' must be a list, got 1"),
        (
            "02_noise_robustness: {fig1_dataset: [toy-fine]}\n",
            "unknown parameter 'fig1_dataset'; did you mean 'fig1_datasets'",
        ),
        (
            "02_noise_robustness: {resnet50_weights: 3}\n",
            "parameter 'resnet50_weights' must be a string or null, got 3",
        ),
        ("07_unsupervised: {n_prompts: 2.0}\n", "parameter 'n_prompts' must be an integer, got 2.0"),
    ],
)
def test_a_set_is_held_to_the_sections_declarations(tmp_path, text, match):
    file = tmp_path / "mine.yaml"
    file.write_text(text)
    stem = next(iter(yaml.safe_load(text)))
    nb = paths.REPO_ROOT / "notebooks" / f"{'02_noise_robustness' if stem == 'common' else stem}.ipynb"
    with pytest.raises(ValueError, match=match) as e:
        notebooks.load_param_set(str(file), nb)
    assert "\n" not in str(e.value)


def test_common_name_no_notebook_declares_is_an_error(layout, tmp_path):
    (tmp_path / "params" / "typo.yaml").write_text("common: {epoch: 3}\n")
    with pytest.raises(
        ValueError, match="section 'common': unknown parameter 'epoch'; did you mean 'epochs'"
    ):
        notebooks.load_param_set("typo", layout)


def test_broken_yaml_names_the_parameter():
    with pytest.raises(ValueError, match="-p seeds: '\\[1, 2' is not valid YAML") as e:
        notebooks.parse_overrides([["seeds", "[1, 2"]])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("save_figures", "maybe", "'save_figures' must be true or false, got 'maybe'"),
        ("seeds", "[1, 2]", "must be a list.*-y 'seeds: \\[a, b\\]'"),
        ("epochs", True, "'epochs' must be an integer, got True"),
        ("epochs", 2.5, "'epochs' must be an integer"),
        ("backbone", 3, "'backbone' must be a string"),
    ],
)
def test_values_must_have_their_parameters_type(name, value, match):
    declared = Parameters(
        [
            Parameter("save_figures", True),
            Parameter("seeds", [1, 2, 3]),
            Parameter("epochs", 50),
            Parameter("backbone", "toy-rn"),
            Parameter("lr", 0.1),
        ]
    )
    with pytest.raises(ValueError, match=match):
        notebooks.check_values({name: value}, declared, "override")
    notebooks.check_values({"lr": 1, "save_figures": False, "seeds": [1]}, declared, "override")  # fine
    pretrained = SECTIONS["00_quickstart"].parameters
    for value in ({"RN50": "/x.pt"}, None, "/x.pt", "default"):
        notebooks.check_values({"pretrained": value}, pretrained, "override")
    with pytest.raises(ValueError, match="'pretrained' must be a string or a mapping or null, got 3"):
        notebooks.check_values({"pretrained": 3}, pretrained, "override")


def test_an_override_goes_to_the_notebooks_that_declare_it(layout, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        notebooks, "run", lambda nb, s, overrides, out: calls.append((nb.name, overrides)) or nb
    )
    nbs = [str(p) for p in sorted(layout.parent.glob("*.ipynb"))]
    assert main(["notebooks", "run", *nbs, "--set", "smoke", "-p", "device", "cuda"]) == 0
    assert [c[0] for c in calls] == ["01_demo.ipynb", "02_other.ipynb"]
    assert main(["notebooks", "run", *nbs, "--set", "smoke", "-p", "devise", "cuda"]) == 2
    assert "did you mean 'device'" in capsys.readouterr().err


@pytest.mark.slow
def test_notebook_errors_reach_the_user_in_one_line(layout, tmp_path):
    """A kernel: a mistyped injected name stops the first cell; a ptnl error is one line, and the
    runner names the failed copy."""
    import papermill

    nb = layout
    book = nbformat.read(nb, as_version=4)
    book.cells.insert(
        1,
        nbformat.v4.new_code_cell(
            f"from ptnl.tools.notebooks import check_parameters\ncheck_parameters({str(nb)!r}, globals())"
        ),
    )
    book.cells.append(
        nbformat.v4.new_code_cell(
            "from ptnl.train.config import RunConfig\nRunConfig(dataset='toy-shapes', shots=0)"
        )
    )
    nbformat.write(book, nb)
    with pytest.raises(papermill.PapermillExecutionError) as e:
        papermill.execute_notebook(
            str(nb),
            str(tmp_path / "out.ipynb"),
            parameters={"epoch": 3},
            kernel_name="python3",
            progress_bar=False,
        )
    assert e.value.exec_count == 3 and "did you mean 'epochs'" in e.value.evalue
    with pytest.raises(notebooks.NotebookFailed) as e:
        notebooks.run(nb, "smoke", {"epochs": 1}, tmp_path / "build" / nb.name)
    msg = str(e.value)
    assert "ValueError: shots must be >= 1" in msg and "Traceback" not in msg
    failed = tmp_path / "build" / "01_demo.failed.ipynb"
    assert str(failed) in msg and failed.is_file() and not (tmp_path / "build" / nb.name).exists()
    outputs = [o for c in nbformat.read(failed, as_version=4).cells for o in c.get("outputs", [])]
    assert [o["traceback"] for o in outputs if o["output_type"] == "error"] == [
        ["ValueError: shots must be >= 1, got 0"]
    ]


@pytest.mark.slow
def test_every_notebook_runs_end_to_end_with_the_smoke_set(tmp_path, monkeypatch):
    """The smoke set (few epochs, shots and seeds) trains every notebook's runs into an empty store
    and executes every cell, figures included: the code paths the shipped results do not exercise."""
    monkeypatch.delenv("PTNL_NO_TRAIN", raising=False)
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("PTNL_FIGURES", str(tmp_path / "figures"))
    # As the main job does: every notebook's runs in one schedule over two workers, then the notebooks.
    done = schedule.train(COMMITTED, "smoke", {"save_figures": True}, workers=2)
    assert done["runs"] > 100 and schedule.batches(COMMITTED, "smoke") == []
    # Nothing left to train, so two kernels execute side by side, one a core.
    with ThreadPoolExecutor(2) as pool:
        outs = list(
            pool.map(
                lambda nb: notebooks.run(nb, "smoke", {"save_figures": True}, tmp_path / "build" / nb.name),
                COMMITTED,
            )
        )
    for nb, out in zip(COMMITTED, outs):
        cells = nbformat.read(out, as_version=4).cells
        assert not [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"], nb.name
    assert len(list((tmp_path / "figures" / "smoke").glob("*.png"))) == len(
        list(paths.shipped_figures_dir().glob("*.png"))
    )


def test_a_param_set_file_works_as_set_or_file(layout, tmp_path, monkeypatch, capsys):
    """A params-set file anywhere (an unedited copy of one in params/ too) is taken by `--set PATH`
    and by `-f PATH`, with the checks and messages of a set inside params/."""
    copy = tmp_path / "elsewhere" / "copy-of-smoke.yaml"
    copy.parent.mkdir()
    copy.write_text((tmp_path / "params" / "smoke.yaml").read_text())
    assert notebooks.load_param_set(str(copy), layout) == {"backbone": "toy-vit", "epochs": 2}
    calls = []
    monkeypatch.setattr(
        notebooks, "run", lambda nb, s, overrides, out: calls.append((nb.name, s, overrides)) or nb
    )
    assert main(["notebooks", "run", str(layout), "--set", str(copy)]) == 0
    assert (
        main(["notebooks", "run", str(layout), "--set", "smoke", "-f", str(copy), "-p", "seeds", "[4]"]) == 0
    )
    (_, s1, o1), (_, s2, o2) = calls
    assert notebooks.load_param_set(s1, layout) == {"backbone": "toy-vit", "epochs": 2} and o1 == {}
    assert notebooks.load_param_set(s2, layout) == {"backbone": "toy-vit", "epochs": 2} and o2 == {
        "seeds": [4]
    }
    copy.write_text("common: {epocs: 3}\n")
    for argv in (["--set", str(copy)], ["--set", "smoke", "-f", str(copy)]):
        assert main(["notebooks", "run", str(layout), *argv]) == 2
        err = capsys.readouterr().err
        assert f"{copy} section 'common': unknown parameter 'epocs'; did you mean 'epochs'?" in err
    with pytest.raises(FileNotFoundError, match=f"no parameter set file {tmp_path / 'nope.yaml'}"):
        notebooks.load_param_set(str(tmp_path / "nope.yaml"), layout)
    # a flat file of name: value overrides still works as papermill's -f does
    flat = tmp_path / "flat.yaml"
    flat.write_text("epochs: 5\n")
    assert main(["notebooks", "run", str(layout), "--set", "smoke", "-f", str(flat)]) == 0
    assert calls[-1][1:] == ("smoke", {"epochs": 5})


def test_later_param_set_files_win(layout, tmp_path):
    more = tmp_path / "more.yaml"
    more.write_text("common: {seeds: [7]}\n01_demo: {epochs: 9}\n")
    assert notebooks.load_param_set(["smoke", str(more)], layout) == {
        "backbone": "toy-vit",
        "epochs": 9,
        "seeds": [7],
    }


def test_unknown_parameter_messages_are_sentences(layout):
    declared = notebooks.notebook_parameters(layout)
    with pytest.raises(ValueError) as e:
        notebooks.check_names({"zzz": 1}, declared, "override")
    assert (
        str(e.value)
        == "override: unknown parameter 'zzz'. Parameters of this notebook: backbone, seeds, epochs"
    )
    with pytest.raises(ValueError) as e:
        notebooks.check_names({"epoch": 1}, declared, "override")
    assert "unknown parameter 'epoch'; did you mean 'epochs'? Parameters of this notebook" in str(e.value)


@pytest.mark.parametrize("path", COMMITTED, ids=[p.name for p in COMMITTED])
def test_a_notebook_whose_grid_takes_pretrained_declares_and_passes_it(path):
    """`-p pretrained FILE` reaches every notebook whose runs take weights (notebook 10 included):
    declared by its section and handed to its grid, never dropped for `default`."""
    import inspect

    section = SECTIONS[path.stem]
    if "pretrained" not in inspect.signature(section.grid).parameters:
        pytest.skip("its runs take no pretrained weights")
    assert "pretrained" in notebooks.notebook_parameters(path)
    params = {**section.parameters.defaults(), "pretrained": None}
    assert {c.pretrained for c in section.build(params)} == {None}
    code = _code(path)
    assert f'params = check_parameters("{path.stem}", globals())' in code
    assert "section.SECTION.runs(params)" in code


def _code(path) -> str:
    """The notebook's code, its parameters and papermill's injected cells left out."""
    return "".join(
        "".join(c["source"])
        for c in json.loads(path.read_text())["cells"]
        if c["cell_type"] == "code"
        and not set(c["metadata"].get("tags", [])) & {"parameters", "injected-parameters"}
    )


def test_notebook_10_takes_pretrained_from_the_command_line(monkeypatch):
    from ptnl.sections import build
    from ptnl.tools.plan import notebook_params

    nb = paths.REPO_ROOT / "notebooks" / "10_beyond.ipynb"
    calls = []
    monkeypatch.setattr(notebooks, "run", lambda nb, s, overrides, out: calls.append(overrides) or nb)
    assert main(["notebooks", "run", str(nb), "--set", "smoke", "-p", "pretrained", "null"]) == 0
    assert calls == [{"pretrained": None}]
    params = {**notebook_params(nb, "smoke"), **calls[0]}
    assert {c.pretrained for c in build("10_beyond", params)} == {None}
    assert notebook_params(nb, "paper")["pretrained"] == "default"  # the paper set's common value
