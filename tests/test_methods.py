"""The method registry: every method declared once, in its family's module, and everything else reads it."""

import types

import pytest

from ptnl.models.losses import GCE_Q
from ptnl.report import figures
from ptnl.train import methods
from ptnl.train.config import RunConfig
from ptnl.train.methods import base, finetune, joapr, learner, selectors

# Which family trains each method, and the module that declares it.
FAMILIES = {
    "prompt": ("prompt", "prompt"),
    "cls_tuning": ("prompt", "prompt"),
    "full_prompt": ("prompt", "prompt"),
    "classifier_r": ("classifier", "classifier"),
    "classifier_r_free": ("classifier", "classifier"),
    "classifier_c": ("classifier", "classifier"),
    "tenc_ft": ("tenc_ft", "finetune"),
    "visual_ft": ("visual_ft", "finetune"),
    "linear_probe": ("linear_probe", "linear_probe"),
    "zeroshot": ("untrained", "untrained"),
    "random_prompt": ("untrained", "untrained"),
    "nlprompt_mae": ("nlprompt", "nlprompt"),
    "nlprompt": ("nlprompt", "nlprompt"),
    "nlprompt_ot_ce": ("nlprompt", "nlprompt"),
    "joapr": ("joapr", "joapr"),
    "select_zeroshot": ("selectors", "selectors"),
    "select_prompt": ("selectors", "selectors"),
}


def test_every_method_has_a_family_that_trains_it_and_every_run_method_builds_a_config():
    assert set(methods.RUN_METHODS) == set(FAMILIES) == set(methods.METHODS)
    for name in methods.RUN_METHODS:
        m = methods.get(name)
        family, module = FAMILIES[name]
        assert m.name == name and m.family.name == family, name
        assert type(m.family).__module__ == f"ptnl.train.methods.{module}", name
        assert isinstance(m.family, base.Family) and type(m.family).train is not base.Family.train, name
        if isinstance(m.family, learner.LearnerFamily):  # its own epoch loop
            assert type(m.family).learn is not learner.LearnerFamily.learn, name
        c = RunConfig(dataset="toy-shapes", method=name, feature_mode=m.feature_mode or "views")
        assert c.method == name
    families = {id(m.family): m.family for m in methods.METHODS.values()}.values()
    assert len({f.name for f in families}) == len(families)  # one family object per name
    with pytest.raises(ValueError, match="unknown method 'coop'; choose one of .*random_prompt"):
        methods.get("coop")


def test_family_traits_are_the_methods():
    get = methods.get
    assert [n for n in methods.RUN_METHODS if get(n).groupable] == ["prompt", "cls_tuning", "full_prompt"]
    assert {n for n in methods.RUN_METHODS if not get(n).uses_labels} == {"zeroshot", "random_prompt"}
    assert {n for n in methods.RUN_METHODS if not get(n).family.scales_logits} == {
        "linear_probe",
        "visual_ft",
    }
    assert {n: get(n).feature_mode for n in methods.RUN_METHODS if get(n).feature_mode} == {
        "linear_probe": "center",
        "visual_ft": "exact",
    }
    trained = {n for n in methods.RUN_METHODS if get(n).gradient_trained}
    assert trained == {
        *methods.PROMPT_METHODS,
        "classifier_r",
        "classifier_r_free",
        "classifier_c",
        "tenc_ft",
        "visual_ft",
    }
    assert {
        n: get(n).family.work for n in ("prompt", "classifier_r", "nlprompt", "joapr", "linear_probe")
    } == {
        "prompt": "text",
        "classifier_r": "head",
        "nlprompt": "text",
        "joapr": "text",
        "linear_probe": None,
    }


def test_upl_methods_are_not_run_methods():
    assert (
        set(methods.UPL_METHODS)
        == set(methods.ENSEMBLE_METHODS)
        == {"upl", "robust_upl_ce", "robust_upl_gce"}
    )
    assert {n: (m.noise_kind, m.loss) for n, m in methods.ENSEMBLE_METHODS.items()} == {
        "upl": ("pseudo_topk", "ce"),
        "robust_upl_ce": ("pseudo_random", "ce"),
        "robust_upl_gce": ("pseudo_random", "gce"),
    }
    with pytest.raises(ValueError, match="unknown method 'upl'"):
        RunConfig(dataset="toy-shapes", method="upl")


def test_method_rules_live_in_the_registry():
    with pytest.raises(ValueError, match="nothing to learn"):
        RunConfig(dataset="toy-shapes", method="prompt", n_ctx=0)
    RunConfig(dataset="toy-shapes", method="random_prompt", n_ctx=0)  # Ctx-0, untrained: fine
    RunConfig(dataset="toy-shapes", method="cls_tuning", n_ctx=0)  # learns the class tokens: fine
    with pytest.raises(ValueError, match="feature_mode='exact'"):
        RunConfig(dataset="toy-shapes", method="visual_ft")
    with pytest.raises(ValueError, match="grad_ratio"):
        RunConfig(dataset="toy-shapes", method="linear_probe", grad_ratio=True)
    with pytest.raises(ValueError, match="temperature"):
        RunConfig(dataset="toy-shapes", method="linear_probe", feature_mode="center", temperature=10.0)
    for name in ("nlprompt", "joapr"):
        with pytest.raises(ValueError, match="its own losses"):
            RunConfig(dataset="toy-shapes", method=name, loss="gce")
        with pytest.raises(ValueError, match="views"):
            RunConfig(dataset="toy-shapes", method=name, feature_mode="exact")
    with pytest.raises(ValueError, match="cached features"):
        RunConfig(dataset="toy-shapes", method="select_prompt", feature_mode="exact")
    RunConfig(dataset="toy-shapes", method="select_prompt", loss="gce")  # the selectors take the run's loss
    assert methods.PROMPT_METHODS == ("prompt", "cls_tuning", "full_prompt")
    assert methods.UNTRAINED_METHODS == ("zeroshot", "random_prompt")


def test_policy_is_the_familys():
    fields = dict(dataset="toy-shapes", noise_rate=0.5, seed=3, loss="gce", feature_mode="views")
    assert methods.policy("prompt", fields) == {**fields, "loss_params": {"q": GCE_Q}}
    assert methods.policy("prompt", {**fields, "loss_params": {"q": 0.7}})["loss_params"] == {"q": 0.7}
    assert methods.policy("linear_probe", fields)["feature_mode"] == "center"
    assert methods.policy("visual_ft", fields)["feature_mode"] == "exact"
    zs = methods.policy("zeroshot", fields)
    assert zs == {**fields, "noise_rate": 0.0, "loss": "ce", "seed": 1}  # no loss_params: untrained
    rp = methods.policy("random_prompt", fields)
    assert rp["seed"] == 3 and rp["noise_rate"] == 0.0 and "loss_params" not in rp
    assert fields["noise_rate"] == 0.5  # the caller's dict is left alone


def _runs(n):
    return [types.SimpleNamespace(name=f"run{i}") for i in range(n)]


def test_each_family_trains_its_runs_with_its_own_code(monkeypatch):
    """The families' ``train`` hands each run to the method's own loop, with the method itself,
    and stores nothing beside the metrics."""
    calls = []

    def fake(tag):
        def train(*args, **kw):  # (method, run) or (run,), then perhaps progress
            calls.append((tag, *(a for a in args if not isinstance(a, bool))))
            return {"test_acc": tag}

        return train

    monkeypatch.setattr(joapr, "train_joapr", fake("joapr"))
    monkeypatch.setattr(selectors, "train_selectors", fake("selectors"))
    monkeypatch.setattr(finetune, "train_visual", fake("visual"))
    runs = _runs(2)
    for name, tag in (("joapr", "joapr"), ("select_zeroshot", "selectors"), ("select_prompt", "selectors")):
        m = methods.get(name)
        calls.clear()
        assert m.family.train(m, runs) == ([{"test_acc": tag}] * 2, [{}, {}])
        assert calls == [(tag, m, r) for r in runs], name
    calls.clear()
    m = methods.get("visual_ft")
    assert m.family.train(m, runs) == ([{"test_acc": "visual"}] * 2, [{}, {}])
    assert calls == [("visual", r) for r in runs]


def test_labels_and_colours_come_from_the_registry():
    assert figures.label("prompt_gce") == "prompt tuning (GCE)"
    assert figures.label("classifier_r_gce") == "Classifier-R (GCE)"
    assert figures.label("robust_upl_gce") == "Robust UPL (GCE)"
    assert figures.label("no_such_variant") == "no_such_variant"
    assert methods.variant("prompt", "ce") == "prompt" and methods.variant("prompt", "gce") == "prompt_gce"
    colors = figures.colors_for(["prompt", "linear_probe_gce", "prompt_mae", "upl"])
    assert colors["prompt"] == methods.get("prompt").color
    assert colors["linear_probe_gce"] == methods.get("linear_probe").losses["gce"]
    assert colors["upl"] == methods.ENSEMBLE_METHODS["upl"].color
    assert colors["prompt_mae"] not in (colors["prompt"], colors["linear_probe_gce"])  # the palette's next
