"""The recipes of docs/architecture.md ("Adding things"), followed as its reader would follow them."""

import dataclasses
import json

import fakedata
import pytest

from ptnl.data import (
    MISSING,
    NOISY_DATASETS,
    PAPER_DATASETS,
    SPECS,
    TEMPLATES,
    dataset_names,
    disk_status,
    ensemble_templates,
    identity,
    load_dataset,
    on_disk,
    template,
)
from ptnl.data import disk as D
from ptnl.data.specs import Spec

# A dataset in CoOp's layout: its images under birds/images/, CoOp's split file in birds/.
BIRDS = Spec(
    "Birds",
    "birds",
    "split_zhou_Birds.json",
    ("birds/images",),
    "https://example.org/birds/images.tar.gz",
    "https://example.org/birds/split_zhou_Birds.json",
    None,  # no torchvision route
    ("bird", "cub"),
    template="a photo of a {}, a type of bird.",
    sizes=(200, 5994, 5794),
)


def _write_birds(root):
    """A tiny copy of Birds on disk: two classes, CoOp's split file ([path, label, classname])."""
    split = {"train": [], "val": [], "test": []}
    for y, cls in enumerate(["blue_jay", "cardinal"]):
        for part, n in (("train", 3), ("val", 1), ("test", 2)):
            for i in range(n):
                ref = f"{cls}/{part}_{i}.jpg"
                fakedata.touch_jpeg(root / "birds" / "images" / ref)
                split[part].append([ref, y, cls])
    split_file = root / "birds" / "split_zhou_Birds.json"
    split_file.write_text(json.dumps(split))
    return split_file


def test_add_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setitem(SPECS, BIRDS.name, BIRDS)  # the one entry, as if it were in data/specs.py
    root = tmp_path / "data"
    monkeypatch.setenv("PTNL_DATA", str(root))
    assert "Birds" in dataset_names()
    assert identity("Birds") == MISSING and disk_status("cub").state == "missing"  # known, not on disk yet

    split_file = _write_birds(root)
    ds = load_dataset("bird")  # by an alias, from $PTNL_DATA
    assert ds.name == "Birds" and ds.split_source == "coop-split"
    assert ds.root == str(root / "birds" / "images") and list(ds.classnames) == ["blue_jay", "cardinal"]
    assert (len(ds.train), len(ds.val), len(ds.test)) == (6, 2, 4)
    assert ds.train.load_image(0).mode == "RGB"

    # its template, wherever templates are looked up
    assert ds.template == template("Birds") == TEMPLATES["Birds"] == BIRDS.template
    assert ds.prompts() == [f"a photo of a {c}, a type of bird." for c in ("blue jay", "cardinal")]
    assert ensemble_templates("Birds")[-1] == BIRDS.template

    # disk.py checks its files: the split file and image folder, and the files it declares
    assert on_disk("Birds") and disk_status("Birds").state == "ok"
    ident = identity("Birds")
    assert ident.startswith("coop-split:")
    raw = json.loads(split_file.read_text())
    split_file.write_text(json.dumps({**raw, "test": raw["test"][:-1]}))
    assert identity("Birds") not in (ident, MISSING)  # the split file is watched
    split_file.write_text(json.dumps(raw))
    assert identity("Birds") == ident
    (root / "birds" / "images" / "blue_jay" / "train_0.jpg").unlink()  # the first train image
    state, msg = disk_status("Birds")
    assert state == "missing" and "train_0.jpg" in msg
    fakedata.touch_jpeg(root / "birds" / "images" / "blue_jay" / "train_0.jpg")
    extra = root / "birds" / "attributes.txt"
    monkeypatch.setitem(SPECS, "Birds", dataclasses.replace(BIRDS, files=("birds/attributes.txt",)))
    assert identity("Birds") == ident
    loads = []
    real = D.load_dataset
    monkeypatch.setattr(D, "load_dataset", lambda *a, **k: loads.append(a) or real(*a, **k))
    assert identity("Birds") == ident and loads == []  # memoised on what it watches
    extra.write_text("wing colour\n")
    assert identity("Birds") == ident and len(loads) == 1  # a declared file changed: read again
    split_file.unlink()
    state, msg = disk_status("Birds")
    assert state == "no-split" and str(split_file) in msg and BIRDS.split_from in msg
    assert identity("Birds") == MISSING

    # the GPU check knows its size
    from ptnl.tools import gpucheck

    assert gpucheck.dataset_sizes()["Birds"] == BIRDS.sizes


def test_dataset_names_are_the_specs():
    names = dataset_names()
    assert names == (*SPECS, *NOISY_DATASETS) and len(set(names)) == len(names) == 20
    assert set(PAPER_DATASETS) <= set(names) and "toy-shapes" not in names
    with pytest.raises(ValueError, match="known datasets: OxfordPets"):
        template("Birds")


# A learner of the selector-based family, as one file: CoOp's prompt trained each epoch on the
# half of the training set with the smaller loss (the recipe "A method" of docs/architecture.md).
LEARNER_FILE = '''
"""Small-loss prompt tuning: each epoch, CE on the half of the samples with the smaller loss."""

import torch

from ptnl.models.losses import get_loss
from ptnl.train import features as F
from ptnl.train.methods import learner as L
from ptnl.train.methods.base import Method


class SmallLossFamily(L.LearnerFamily):
    name = "small_loss_prompt"

    def learn(self, method, r, progress=False):
        module, bank, source, opt = L.setup(method, r, progress)
        order = F.generator("order", r.cfg.seed)
        given = torch.as_tensor(r.labels.noisy)
        ce = get_loss("ce")
        hist = {"train_loss": [], "lr": []}
        for epoch in range(1, r.cfg.epochs + 1):
            hist["lr"].append(L.set_lr(opt, r.cfg, epoch))
            everyone = torch.arange(r.n_train)
            p = L.probs(r, module, source(epoch, everyone)).cpu()
            loss = -p.clamp(min=1e-12).log().gather(1, given[:, None]).squeeze(1)
            keep = everyone[loss <= loss.median()]
            for b in F.epoch_batches(len(keep), r.cfg.batch_size, order):
                y = given[keep[b]]
                hist["train_loss"].append(L.step(r, module, opt, source(epoch, keep[b]), lambda z, y=y: ce(z, y)))
        return L.finish(r, module, bank, hist, progress)


FAMILY = SmallLossFamily()
METHODS = (Method("small_loss_prompt", "small-loss CoOp", FAMILY, "CE on the smaller-loss half", color="#123456"),)
'''


@pytest.fixture
def learner_in_package(tmp_path, monkeypatch):
    """The learner's file dropped into ptnl/train/methods/ (a folder added to the package's path),
    the registry re-read; put back as it was afterwards."""
    import sys

    from ptnl.train import methods

    (tmp_path / "small_loss_prompt.py").write_text(LEARNER_FILE)
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    methods.register_families()
    yield methods
    monkeypatch.undo()
    sys.modules.pop("ptnl.train.methods.small_loss_prompt", None)
    methods.register_families()


def test_add_a_learner_is_one_file(learner_in_package):
    from ptnl.train import engine
    from ptnl.train.config import RunConfig

    methods = learner_in_package
    assert "small_loss_prompt" in methods.RUN_METHODS
    assert methods.label("small_loss_prompt") == "small-loss CoOp"
    assert methods.VARIANT_COLORS["small_loss_prompt"] == "#123456"
    with pytest.raises(ValueError, match="trains with its own losses"):  # the family's own rules
        RunConfig(dataset="toy-shapes", backbone="toy-rn", method="small_loss_prompt", loss="gce")
    c = RunConfig(
        dataset="toy-shapes", backbone="toy-rn", method="small_loss_prompt", noise_rate=0.5, epochs=2, shots=4
    )
    m = engine.run(c)
    assert 0.0 <= m["test_acc"] <= 1.0 and len(m["lr"]) == 2 and m["n_train"] == 4 * m["n_classes"]
    assert m["n_noisy"] == 2 * m["n_classes"]  # the engine gave it the run's labels, as any method


def test_registry_without_the_learner():
    from ptnl.train import methods

    assert "small_loss_prompt" not in methods.RUN_METHODS


def _section_notebook(path, stem):
    """A notebook as a new section's would start: a parameters cell (written from the section
    below), the check, the grid, the sweep and the results."""
    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["parameters"]},
            "source": [],
            "outputs": [],
            "execution_count": None,
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": [
                "from ptnl.tools.notebooks import check_parameters\n",
                f"params = check_parameters({stem!r}, globals())\n",
                "from ptnl.sections import SECTIONS\n",
                "from ptnl.train.sweep import sweep\n",
                f"section = SECTIONS[{stem!r}]\n",
                "configs = section.runs(params)\n",
                "metrics = sweep(configs, experiment, progress=False)\n",
                "df = section.results(configs, experiment, metrics)\n",
            ],
        },
    ]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1) + "\n")


def test_add_a_section_with_its_notebook(tmp_path, monkeypatch):
    from ptnl import sections
    from ptnl.sections.common import Section, config, shared_fields
    from ptnl.sections.parameters import SHARED, Parameter
    from ptnl.tools import cells, notebooks

    stem = "11_my_section"

    def my_grid(
        backbone, dataset, noise_rates, epochs, shots, feature_mode, pretrained="default", rate_scale=1.0
    ):
        common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
        return [
            config(dataset, method="classifier_r", noise_rate=r * rate_scale, **common) for r in noise_rates
        ]

    parameters = SHARED.pick(
        "backbone",
        "pretrained",
        "dataset",
        SHARED["noise_rates"].but(default=[0.0, 0.5]),
        SHARED["epochs"].but(default=2),
        SHARED["shots"].but(default=2),
        "feature_mode",
        Parameter("rate_scale", 1.0, "scales every noise rate"),
        SHARED["experiment"].but(default="recipe"),
    )
    section = Section(stem, "My section", my_grid, parameters=parameters)
    monkeypatch.setitem(sections.SECTIONS, stem, section)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(notebooks, "PACKAGE_NOTEBOOKS", folder)
    monkeypatch.setattr(notebooks, "NOTEBOOKS_DIR", folder)
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "results"))
    nb = folder / f"{stem}.ipynb"
    _section_notebook(nb, stem)

    assert cells.params_command([nb], check=True) == 1  # an empty cell is not the declaration
    assert cells.params_command([nb]) == 0 and cells.params_command([nb], check=True) == 0
    cell = cells.committed_cell(nb)
    assert "rate_scale = 1.0  # scales every noise rate" in cell and "epochs = 2" in cell

    # A parameter set names it like any notebook; a typo is an error naming the parameter.
    (tmp_path / "mine.yaml").write_text(
        f"{stem}:\n  dataset: toy-shapes\n  backbone: toy-rn\n  rate_scale: 0.5\n"
    )
    values = notebooks.load_param_set(str(tmp_path / "mine.yaml"), nb)
    assert values == {"dataset": "toy-shapes", "backbone": "toy-rn", "rate_scale": 0.5}
    (tmp_path / "typo.yaml").write_text(f"{stem}:\n  rate_scal: 0.5\n")
    with pytest.raises(ValueError, match="did you mean 'rate_scale'"):
        notebooks.load_param_set(str(tmp_path / "typo.yaml"), nb)

    # Its cells, run as a kernel runs them, on the set's values over the cell's defaults.
    ns: dict = {}
    for c in json.loads(nb.read_text())["cells"]:
        exec("".join(c["source"]), ns)
        if "parameters" in c["metadata"].get("tags", []):
            ns.update(values)
    assert [c.noise_rate for c in ns["configs"]] == [0.0, 0.25]
    assert len(ns["df"]) == 2 and set(ns["df"]["variant"]) == {"classifier_r"}
