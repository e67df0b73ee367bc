"""The noisy-label prompt learners after the paper (NLPrompt, JoAPR) and the clean-sample selectors."""

import json

import numpy as np
import pytest
import torch

from ptnl.models import selectors as S
from ptnl.train import engine, methods
from ptnl.train.config import RunConfig

ROBUST = ("nlprompt_mae", "nlprompt", "nlprompt_ot_ce", "joapr")


def _cfg(method, **kw):
    base = dict(dataset="toy-shapes", backbone="toy-rn", method=method, shots=4, epochs=4, noise_rate=0.5)
    return RunConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def runs():
    return {m: engine.run(_cfg(m)) for m in (*ROBUST, "select_zeroshot", "select_prompt")}


@pytest.mark.parametrize("method", ROBUST)
def test_robust_method_is_deterministic_and_learns(method, runs):
    again = engine.run(_cfg(method))
    a, b = runs[method], again
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert a["test_acc"] > 2.0 / 8  # twice chance on the 8 toy shapes
    assert len(a["train_loss"]) == 4 and all(np.isfinite(a["train_loss"]))


@pytest.mark.parametrize("method", ["nlprompt", "nlprompt_ot_ce", "joapr"])
def test_robust_selection_beats_chance(method, runs):
    m = runs[method]
    assert m["selection_noise_auroc"] > 0.5  # better than flagging at random
    assert 0 < m["clean_share"][-1] < 1
    assert ("selection_wrong_to_right" in m) == (method == "joapr")  # only JoAPR relabels


def test_selectors_report_every_detector(runs):
    for method in ("select_zeroshot", "select_prompt"):
        m = runs[method]
        for name in S.SELECTORS:
            assert 0.5 < m[f"{name}_noise_auroc"] <= 1.0
            assert 0.0 <= m[f"{name}_noise_recall"] <= 1.0
        assert m["ot_wrong_to_right"] >= 0 and "small_loss_wrong_to_right" not in m


def test_each_learners_own_loop_gives_its_runs_scores(runs):
    """The families hand each method to its own loop: called directly on the prepared run, each
    loop gives exactly the scores the engine stored (the engine adds only the context metrics)."""
    from ptnl.train.methods import joapr, nlprompt, selectors

    loops = {
        "nlprompt_mae": nlprompt.FAMILY.learn,
        "nlprompt": nlprompt.FAMILY.learn,
        "nlprompt_ot_ce": nlprompt.FAMILY.learn,
        "joapr": joapr.train_joapr,
        "select_zeroshot": selectors.train_selectors,
        "select_prompt": selectors.train_selectors,
    }
    for name, loop in loops.items():
        r = engine.prepare(_cfg(name))
        got = loop(methods.get(name), r)
        stored = runs[name]
        assert json.dumps(got, sort_keys=True) == json.dumps({k: stored[k] for k in got}, sort_keys=True), (
            name
        )
        assert set(stored) - set(got) == set(engine.context_metrics(r, 0.0)), name


def test_recipe_rules():
    with pytest.raises(ValueError, match="its own losses"):
        _cfg("nlprompt", loss="gce")
    with pytest.raises(ValueError, match="views"):
        _cfg("joapr", feature_mode="exact")
    assert methods.get("joapr").recipe["temperature"] == 2.0
    assert not methods.get("nlprompt").groupable and not methods.get("nlprompt").gradient_trained


def test_detection_metrics_by_hand():
    true = np.array([0, 0, 1, 1, 2, 2])
    given = np.array([0, 1, 1, 1, 0, 2])  # samples 1 and 4 are wrong
    sel = S.Selected(
        np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.7]), np.array([1, 0, 1, 0, 1, 1], bool), true.copy()
    )
    d = S.detection(sel, true, given)
    assert d["noise_precision"] == 0.5 and d["noise_recall"] == 0.5  # flags 1 and 3: one right
    assert d["noise_auroc"] == pytest.approx(7 / 8)  # noise scores 0.9 and 0.7 beat 3 and 4 of 4 clean
    assert d["clean_kept"] == 0.75 and d["wrong_to_right"] == 2 and d["right_to_wrong"] == 0
    assert S.auroc([1, 1, 1], [True, False, False]) == 0.5  # ties count half


def test_small_loss_and_gmm():
    loss = np.array([0.1, 0.2, 3.0, 0.1, 2.5, 0.3])
    given = np.array([0, 0, 0, 1, 1, 1])
    assert S.small_loss(loss, given, 2, forget=1 / 3).clean.tolist() == [1, 1, 0, 1, 0, 1]
    assert S.gmm_loss(loss, seed=1).clean.tolist() == [1, 1, 0, 1, 0, 1]
    assert S.gmm_loss(np.ones(4)).clean.all()  # nothing to split


def test_sinkhorn_marginals_and_ot_labels():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(40, 4, generator=g), 1)
    plan = S.sinkhorn(-torch.log_softmax(p, 1))
    assert torch.allclose(plan.sum(1), torch.full((40,), 1 / 40, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(plan.sum(0), torch.full((4,), 1 / 4, dtype=torch.float64), atol=1e-3)
    # Equal class mass: with every sample scored towards class 0, OT still spreads them out.
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]] * 8) + 0.01 * torch.eye(4).repeat(2, 1)
    sel = S.ot_labels(skewed / skewed.sum(1, keepdim=True), np.zeros(8, np.int64))
    assert np.bincount(sel.labels, minlength=4).tolist() == [2, 2, 2, 2]


def test_sinkhorn_is_pots():
    """The plan POT's ot.sinkhorn gives NLPrompt's call (tests/data/pot_sinkhorn.json, written by
    POT itself, which ptnl does not depend on)."""
    import json
    import pathlib

    ref = json.loads((pathlib.Path(__file__).parent / "data" / "pot_sinkhorn.json").read_text())
    p = torch.tensor(ref["probs"], dtype=torch.float64)
    plan = S.sinkhorn(-torch.log_softmax(p, 1))
    assert torch.allclose(plan, torch.tensor(ref["plan"], dtype=torch.float64), rtol=1e-9, atol=1e-15)


def test_joapr_takes_its_readmes_settings_where_it_gives_them():
    from ptnl.train.methods.joapr import joapr_recipe

    def get(**kw):
        r = joapr_recipe(RunConfig(**{"dataset": "toy-shapes", "method": "joapr", **kw}))
        return r["warmup"], r["alpha1"], r["alpha2"]

    assert get(noise_rate=0.5) == (1, 0.5, 0.5)  # the toy world: rn50.yaml's
    assert get(dataset="FGVCAircraft", noise_kind="ptnl", noise_rate=0.75) == (150, 0.5, 1.0)
    assert get(dataset="UCF101", noise_kind="ptnl", noise_rate=0.5) == (20, 0.5, 1.0)
    assert get(dataset="UCF101", noise_kind="nlprompt_asym", noise_rate=0.5) == (1, 0.5, 1.0)  # Pairflip
    assert get(dataset="EuroSAT", noise_kind="nlprompt_sym", noise_rate=0.75) == (1, 0.1, 1.0)
    assert get(dataset="DTD", noise_rate=0.0) == (1, 0.5, 0.5)  # no clean column in the table
