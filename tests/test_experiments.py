"""ptnl.sections: the sections' grids, reading back exactly a grid's runs, and the plan."""

import io

import nbformat
import pytest
import yaml

from ptnl.data import on_disk
from ptnl.models.weights import weights_available
from ptnl.sections import (
    appendix,
    architectures,
    attribution,
    build,
    common,
    correlated,
    gradients,
    quickstart,
    robustness,
    unsupervised,
)
from ptnl.tools import cli, notebooks, plan
from ptnl.train import store
from ptnl.train.config import RunConfig
from ptnl.train.methods import ENSEMBLE_METHODS

TOY = dict(backbone="toy-vit", epochs=3)


def test_sec42_grid_has_every_setting_once_with_method_choices():
    cs = robustness.sec42_robustness(
        datasets=["toy-shapes", "toy-fine"],
        fig1_datasets=["toy-shapes"],
        noise_rates=[0, 0.5],
        seeds=[1, 2],
        **TOY,
    )
    # 2 datasets x 5 (method, loss) x 2 rates x 2 seeds + visual FT on 1 dataset x 2 x 2
    assert len(cs) == 2 * 5 * 2 * 2 + 4
    assert len({c.run_id for c in cs}) == len(cs)
    by = {(c.method, c.loss) for c in cs}
    assert by == {
        ("prompt", "ce"),
        ("prompt", "gce"),
        ("linear_probe", "ce"),
        (common.SGD_LINEAR, "ce"),
        (common.SGD_LINEAR, "gce"),
        ("visual_ft", "ce"),
    }
    for c in cs:
        if c.method == "visual_ft":
            assert c.feature_mode == "exact" and c.dataset == "toy-shapes"
        elif c.method == "linear_probe":
            assert c.feature_mode == common.LINEAR_PROBE_FEATURE_MODE
        else:
            assert c.feature_mode == "views"
        assert c.loss_params == ({"q": 0.5} if c.loss == "gce" else {})


def test_untrained_methods_ignore_noise_and_zeroshot_ignores_seed():
    cs = quickstart.quickstart(dataset="toy-shapes", noise_rates=[0, 0.25, 0.5], seeds=[1, 2, 3], **TOY)
    zs = [c for c in cs if c.method == "zeroshot"]
    assert len(zs) == 1 and zs[0].noise_rate == 0 and zs[0].seed == 1
    assert len(cs) == 1 + 3 * 3
    rp = common.config("toy-shapes", "toy-vit", "random_prompt", loss="gce", noise_rate=0.5, seed=7)
    assert (rp.noise_rate, rp.loss, rp.loss_params, rp.seed) == (0.0, "ce", {}, 7)


def test_appendix_shares_runs_with_table1_instead_of_duplicating():
    cs = appendix.appendix(
        datasets=["toy-shapes"], noise_rates=[0, 0.5], seeds=[1], random_prompt_draws=3, **TOY
    )
    ids = [c.run_id for c in cs]
    assert len(ids) == len(set(ids))
    # prompt x 4 losses, linear probe, linear head CE/GCE, Tables 1-2's six methods; prompt and the
    # linear head (= Classifier-R) with CE are in both lists and run once.
    n_methods = (
        len(appendix.ROBUST_LOSSES)
        + 3
        + len(set(attribution.TABLE1_METHODS + attribution.TABLE2_METHODS))
        - 2
    )
    assert len(cs) == 3 + 1 + n_methods * 2  # 3 random prompts, 1 zero-shot
    assert [c.method for c in cs].count("zeroshot") == 1


def test_gradient_section_records_ratios_and_needs_noise():
    cs = gradients.sec44_gradients(datasets=["toy-shapes"], noise_rate=0.5, seeds=[1, 2], **TOY)
    assert all(c.grad_ratio and c.noise_rate == 0.5 for c in cs)
    assert {c.method for c in cs} == {"prompt", common.SGD_LINEAR}
    with pytest.raises(ValueError, match="noise_rate > 0"):
        gradients.sec44_gradients(datasets=["toy-shapes"], noise_rate=0.0, seeds=[1], **TOY)


def test_sec45_and_sec46_grids():
    cs = architectures.sec45_architectures(
        backbones=["toy-rn", "toy-vit"],
        datasets=["toy-shapes"],
        table3_datasets=["toy-fine"],
        n_ctxs=[0, 4, 16],
        noise_rates=[0, 0.5],
        seeds=[1],
        **TOY,
    )
    assert sorted({c.n_ctx for c in cs if c.dataset == "toy-shapes" and c.method == "prompt"}) == [4, 16]
    ctx0 = [c for c in cs if c.n_ctx == 0]  # Ctx-0: nothing to learn, evaluated once untrained
    assert len(ctx0) == 1 and ctx0[0].method == "random_prompt" and ctx0[0].noise_rate == 0
    assert {c.backbone for c in cs if c.dataset == "toy-fine"} == {"toy-rn", "toy-vit"}
    cs = correlated.sec46_correlated(
        datasets=["toy-shapes"], confusion_datasets=["toy-fine"], noise_rate=0.5, seeds=[1, 2], **TOY
    )
    assert {c.noise_kind for c in cs if c.method != "random_prompt"} == {"symmetric", "confusion"}
    assert len(cs) == 2 + 2 * 2 * 2
    assert {c.confusion_from for c in cs} == {"matrix"}
    cs = correlated.sec46_correlated(
        datasets=["toy-shapes"],
        confusion_datasets=["toy-fine"],
        noise_rate=0.5,
        seeds=[1],
        confusion_from="sample",
        **TOY,
    )
    assert {(c.noise_kind, c.confusion_from) for c in cs if c.method != "random_prompt"} == {
        ("symmetric", "matrix"),
        ("confusion", "sample"),
    }


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(seeds=1), "seeds must be a list"),
        (dict(noise_rates=[50]), "noise_rate"),
        (dict(datasets=[]), "datasets is empty"),
        (dict(epochs=0), "epochs must be >= 1"),
        (dict(backbone="toy-vit", datasets=["Imagenette"]), "unknown dataset"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(bad, match):
    params = dict(datasets=["toy-shapes"], noise_rates=[0, 0.5], seeds=[1], **TOY)
    params.update(bad)
    with pytest.raises(ValueError, match=match):
        attribution.sec43_attribution(**params)


def test_build_ignores_parameters_the_section_does_not_take():
    params = dict(
        datasets=["toy-shapes"],
        noise_rate=0.5,
        seeds=[1],
        device="cpu",
        save_figures=False,
        experiment="x",
        **TOY,
    )
    assert build("04_noisy_gradients", params) == gradients.sec44_gradients(
        datasets=["toy-shapes"], noise_rate=0.5, seeds=[1], **TOY
    )


def _finish(cfg, experiment, acc):
    store.finish_run(cfg, experiment, {"test_acc": acc, "train_loss": [1.0, 0.5]})


def test_results_returns_exactly_the_grids_finished_runs(fresh_store):
    cs = quickstart.quickstart(dataset="toy-shapes", noise_rates=[0, 0.5], seeds=[1], **TOY)
    other = RunConfig(dataset="toy-fine", backbone="toy-vit", epochs=3)
    for c in cs[:2]:
        _finish(c, "exp", 0.5)
    _finish(other, "exp", 0.9)
    df = common.results(cs, "exp")
    assert set(df["run_id"]) == {c.run_id for c in cs[:2]}
    assert set(df["variant"]) == {"zeroshot", "prompt"}
    s = common.status(cs, "exp")
    assert (s["runs"], s["done"], s["pending"]) == (3, 2, 1)
    assert common.results(cs, "never-ran").empty
    assert len(common.results([*cs[:2], cs[0]], "exp")) == 2  # a run listed twice is one row
    # a sweep's metrics, where given, are the rows (none read from the store; None: not done)
    swept = common.results(cs, "never-ran", metrics=[{"test_acc": 0.7}, None, {"test_acc": 0.8}])
    assert dict(zip(swept["run_id"], swept["test_acc"])) == {cs[0].run_id: 0.7, cs[2].run_id: 0.8}
    assert list(swept["run_id"]) == sorted(swept["run_id"])


def test_missing_dataset_and_weights_are_reported(fresh_store, monkeypatch, tmp_path):
    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "no-data"))
    cs = [common.config("DTD", "RN50", "prompt", epochs=2), common.config("toy-shapes", "toy-vit", epochs=2)]
    s = common.status(cs, "exp")
    assert s["missing_datasets"] == ["DTD"]
    assert "MISSING datasets" in common.describe(cs, "exp")
    assert on_disk("toy-shapes")
    (tmp_path / "no-data" / "dtd").mkdir(parents=True)
    (tmp_path / "no-data" / "dtd" / "split_zhou_DescribableTextures.json").write_text("{}")
    assert on_disk("DTD")
    assert weights_available("toy-vit", None)
    assert not weights_available("RN50", str(tmp_path / "nope.pt"))


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def plan_dirs(fresh_store, tmp_path, monkeypatch):
    """Empty notebooks/ and params/ folders that ptnl.tools.notebooks reads instead of the repo's."""
    for name, attr in (("notebooks", "NOTEBOOKS_DIR"), ("params", "PARAMS_DIR")):
        (tmp_path / name).mkdir()
        monkeypatch.setattr(notebooks, attr, tmp_path / name)
    return tmp_path


def test_plan_counts_runs_per_notebook_and_shared_runs_once(plan_dirs):
    tmp_path = plan_dirs
    _notebook(
        tmp_path / "notebooks" / "04_noisy_gradients.ipynb",
        "backbone = 'toy-vit'\ndatasets = ['toy-shapes']\nnoise_rate = 0.5\nseeds = [1, 2]\nepochs = 3\n"
        "experiment = 'toy'\n",
    )
    _notebook(
        tmp_path / "notebooks" / "00_quickstart.ipynb",
        "backbone = 'toy-vit'\ndataset = 'toy-shapes'\nnoise_rates = [0.0, 0.5]\nseeds = [1, 2]\nepochs = 3\n"
        "experiment = 'toy'\n",
    )
    (tmp_path / "params" / "paper.yaml").write_text(
        yaml.safe_dump(
            {
                "common": {"seeds": [1], "experiment": "p"},
                "04_noisy_gradients": {"datasets": ["toy-shapes", "toy-fine"]},
            }
        )
    )
    out = io.StringIO()
    rows = plan.plan("paper", file=out)
    assert [(r["notebook"], r["runs"]) for r in rows] == [("00_quickstart", 3), ("04_noisy_gradients", 4)]
    text = out.getvalue()
    assert "total (shared runs once)" in text and "7 runs" in text and "weights missing" in text
    # a runner override applies where a notebook declares it (00 has no `datasets`)
    rows = plan.plan("paper", overrides={"datasets": ["toy-fine"], "seeds": [1, 2, 3]}, file=io.StringIO())
    assert [(r["notebook"], r["runs"], r["datasets"]) for r in rows] == [
        ("00_quickstart", 7, ["toy-shapes"]),
        ("04_noisy_gradients", 6, ["toy-fine"]),
    ]


def test_plan_counts_notebook_07s_upl_ensembles(plan_dirs):
    tmp_path = plan_dirs
    _notebook(
        tmp_path / "notebooks" / "07_unsupervised.ipynb",
        "backbone = 'toy-rn'\ndatasets = ['toy-shapes', 'toy-fine']\nn_prompts = 2\nseeds = [1]\nepochs = 3\n"
        "experiment = 'toy'\n",
    )
    (tmp_path / "params" / "paper.yaml").write_text(yaml.safe_dump({"common": {"experiment": "p"}}))
    out = io.StringIO()
    [row] = plan.plan("paper", file=out)
    n_methods = len(ENSEMBLE_METHODS)
    # per dataset: one zero-shot run (Table 5's 0-shot column) + n_prompts members per method
    assert row["notebook"] == "07_unsupervised" and row["runs"] == 2 * (1 + 2 * n_methods)
    assert row["backbones"] == ["toy-rn"] and row["pending"] == row["runs"]
    assert "not counted" not in out.getvalue()


def test_pretrained_reaches_every_run_and_maps_per_backbone(tmp_path):
    f = str(tmp_path / "rn50.pt")
    cs = attribution.sec43_attribution(
        datasets=["toy-shapes"], noise_rates=[0], seeds=[1], pretrained=f, **TOY
    )
    assert {c.pretrained for c in cs} == {f}
    mapping = {"toy-rn": f, "toy-vit": None}
    cs = architectures.sec45_architectures(
        backbone="toy-rn",
        backbones=["toy-rn", "toy-vit"],
        datasets=["toy-shapes"],
        table3_datasets=["toy-shapes"],
        n_ctxs=[4],
        noise_rates=[0],
        seeds=[1],
        epochs=3,
        pretrained=mapping,
    )
    assert {(c.backbone, c.pretrained) for c in cs} == {("toy-rn", f), ("toy-vit", None)}
    with pytest.raises(ValueError, match="one file, but this notebook uses toy-rn, toy-vit.*mapping"):
        common.pretrained_by_backbone(f, ["toy-rn", "toy-vit"])
    with pytest.raises(ValueError, match="unknown backbone 'RN-50'.*did you mean 'RN50'"):
        common.pretrained_by_backbone({"RN-50": f}, ["toy-rn"])
    # a common-section mapping may name backbones other notebooks use
    assert common.pretrained_by_backbone({"RN50": f, "ViT-B/32": f}, ["ViT-B-32"]) == {"ViT-B-32": f}
    ens = unsupervised.sec5_unsupervised(
        backbone="toy-rn", datasets=["toy-shapes"], n_prompts=1, epochs=3, pretrained=f
    )
    assert {m.pretrained for e in ens for m in e.members} == {f}


def test_plan_honours_pretrained_and_reports_a_corrupt_split(plan_dirs, monkeypatch):
    tmp_path = plan_dirs
    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "data"))
    _notebook(
        tmp_path / "notebooks" / "00_quickstart.ipynb",
        "backbone = 'RN50'\npretrained = 'default'\ndataset = 'DTD'\nnoise_rates = [0.0]\nseeds = [1]\n"
        "epochs = 3\nexperiment = 'paper'\n",
    )
    (tmp_path / "params" / "paper.yaml").write_text(yaml.safe_dump({"common": {"experiment": "paper"}}))
    from fakedata import write_coop

    write_coop(tmp_path / "data", "DTD")  # images and split, then the split file is broken
    (tmp_path / "data" / "dtd" / "split_zhou_DescribableTextures.json").write_text("{not json")
    out = io.StringIO()
    [row] = plan.plan("paper", overrides={"pretrained": str(tmp_path / "RN50.pt")}, file=out)
    assert row["missing_weights"] == [f"RN50 ({tmp_path / 'RN50.pt'})"]
    assert "DTD: corrupt" in out.getvalue() and "split_zhou_DescribableTextures.json" in out.getvalue()
    with pytest.raises(ValueError, match="'pretrained' must be a string or a mapping or null"):
        plan.plan("paper", overrides={"pretrained": 3}, file=io.StringIO())

    assert cli.main(["plan", "--set", "paper", "-p", "pretrainde", "x.pt"]) == 2


def test_plan_names_the_notebook_of_an_error_and_those_an_override_passes_over(plan_dirs, capsys):
    tmp_path = plan_dirs
    _notebook(
        tmp_path / "notebooks" / "04_noisy_gradients.ipynb",
        "backbone = 'toy-vit'\ndatasets = ['toy-shapes']\nnoise_rate = 0.5\nseeds = [1]\nepochs = 3\n"
        "experiment = 'toy'\n",
    )
    _notebook(
        tmp_path / "notebooks" / "05_architectures.ipynb",
        "backbone = 'toy-rn'\nbackbones = ['toy-rn', 'toy-vit']\npretrained = 'default'\n"
        "datasets = ['toy-shapes']\ntable3_datasets = ['toy-shapes']\nn_ctxs = [4]\nnoise_rates = [0.0]\n"
        "seeds = [1]\nepochs = 3\nexperiment = 'toy'\n",
    )
    (tmp_path / "params" / "paper.yaml").write_text(yaml.safe_dump({"common": {"experiment": "p"}}))
    out = io.StringIO()
    plan.plan("paper", overrides={"pretrained": {"toy-rn": None}}, file=out)
    assert "override 'pretrained': not a parameter of 04_noisy_gradients (they keep" in out.getvalue()
    with pytest.raises(
        ValueError, match="^05_architectures: pretrained='/x/rn.pt' is one file, but this notebook"
    ):
        plan.plan("paper", overrides={"pretrained": "/x/rn.pt"}, file=io.StringIO())
    # a set given by its path, on its own or over another with -f
    elsewhere = tmp_path / "mine.yaml"
    elsewhere.write_text(yaml.safe_dump({"04_noisy_gradients": {"seeds": [1, 2]}}))
    one_seed = plan.plan("paper", file=io.StringIO())[0]["runs"]
    [row, _] = plan.plan(str(elsewhere), file=io.StringIO())
    assert (row["notebook"], row["runs"], row["experiment"]) == ("04_noisy_gradients", 2 * one_seed, "toy")
    assert cli.main(["plan", "--set", "paper", "-f", str(elsewhere)]) == 0
    assert f"04_noisy_gradients           {2 * one_seed:6d} runs" in capsys.readouterr().out
    elsewhere.write_text("common: {epocs: 3}\n")
    assert cli.main(["plan", "--set", str(elsewhere)]) == 2
    assert "section 'common': unknown parameter 'epocs'; did you mean 'epochs'?" in capsys.readouterr().err


def test_an_empty_fig1_datasets_skips_figure_1():
    """`-p fig1_datasets '[]'`: no visual fine-tuning runs, and notebook 02 draws no Figure 1;
    a bad value names fig1_datasets, not `datasets`."""
    import json

    from ptnl.sections import robustness
    from ptnl.tools.notebooks import NOTEBOOKS_DIR

    kw = dict(backbone="toy-rn", datasets=["toy-shapes"], noise_rates=[0.0], seeds=[1], epochs=2)
    assert "visual_ft" in {c.method for c in robustness.sec42_robustness(fig1_datasets=["toy-shapes"], **kw)}
    runs = robustness.sec42_robustness(fig1_datasets=[], **kw)
    assert runs and "visual_ft" not in {c.method for c in runs}
    with pytest.raises(ValueError, match="fig1_datasets must be a list"):
        robustness.sec42_robustness(fig1_datasets="toy-shapes", **kw)
    cells = json.loads((NOTEBOOKS_DIR / "02_noise_robustness.ipynb").read_text())["cells"]
    [fig1] = ["".join(c["source"]) for c in cells if "fig1 = figures.noise_curves" in "".join(c["source"])]
    assert fig1.startswith("if fig1_datasets:")
