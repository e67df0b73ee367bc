"""The method registry: every method declared once, and everything else reads it."""

import pytest

from ptnl.report import figures
from ptnl.train import methods, robust, trainers
from ptnl.train.config import RunConfig


def test_every_family_has_a_trainer_and_every_run_method_builds_a_config():
    families = {m.trainer for m in methods.METHODS.values()}
    # upl trains through engine.train_group; the robust learners' loops are ptnl.train.robust's
    assert families - {"upl"} == set(trainers.TRAINERS) | set(robust.TRAINERS)
    assert not set(trainers.TRAINERS) & set(robust.TRAINERS)
    for name in methods.RUN_METHODS:
        m = methods.get(name)
        c = RunConfig(dataset="toy-shapes", method=name, feature_mode=m.feature_mode or "views")
        assert c.method == name


def test_upl_methods_are_not_run_methods():
    assert set(methods.UPL_METHODS) == {"upl", "robust_upl_ce", "robust_upl_gce"}
    with pytest.raises(ValueError, match="unknown method 'upl'"):
        RunConfig(dataset="toy-shapes", method="upl")


def test_method_rules_live_in_the_registry():
    with pytest.raises(ValueError, match="nothing to learn"):
        RunConfig(dataset="toy-shapes", method="prompt", n_ctx=0)
    with pytest.raises(ValueError, match="feature_mode='exact'"):
        RunConfig(dataset="toy-shapes", method="visual_ft")
    with pytest.raises(ValueError, match="grad_ratio"):
        RunConfig(dataset="toy-shapes", method="linear_probe", grad_ratio=True)
    assert methods.PROMPT_METHODS == ("prompt", "cls_tuning", "full_prompt")
    assert methods.UNTRAINED_METHODS == ("zeroshot", "random_prompt")


def test_labels_and_colours_come_from_the_registry():
    assert figures.label("prompt_gce") == "prompt tuning (GCE)"
    assert figures.label("classifier_r_gce") == "Classifier-R (GCE)"
    assert figures.label("no_such_variant") == "no_such_variant"
    colors = figures.colors_for(["prompt", "linear_probe_gce", "prompt_mae"])
    assert colors["prompt"] == methods.get("prompt").color
    assert colors["linear_probe_gce"] == methods.get("linear_probe").losses["gce"]
    assert colors["prompt_mae"] not in (colors["prompt"], colors["linear_probe_gce"])  # the palette's next
