"""UPL and Robust UPL (Section 5): members are prompt-tuning runs on zero-shot pseudo-labels,
trained and stored as any run; the ensemble averages their logits (``ptnl.train.ensemble``)."""

import json
import types

import numpy as np
import pytest
import torch

from ptnl.data.labels import KINDS, PSEUDO_KINDS
from ptnl.models.toy import TOY_BACKBONES
from ptnl.sections import unsupervised
from ptnl.tools.speed import register_tiny_clip, synthetic_dataset
from ptnl.train import engine, ensemble, methods, scores, store
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.methods import base, prompt
from ptnl.train.methods.prompt import PROMPT_FILE
from ptnl.train.sweep import sweep

# -- the config --------------------------------------------------------------------------------------


def test_a_member_is_a_prompt_run_on_pseudo_labels():
    c = ensemble.config("robust_upl_gce", "toy-shapes", "toy-vit", seed=3, selection_seed=2, epochs=5)
    assert type(c) is RunConfig and c.method == "prompt" and c.noise_kind == "pseudo_random"
    assert c.loss == "gce" and c.loss_params == {"q": 0.5} and c.noise_rate == 0.0
    assert (c.seed, c.selection_seed, c.fill, c.epochs, c.shots) == (3, 2, "all", 5, 16)
    assert ensemble.method_of(c) == "robust_upl_gce"
    d = c.to_dict()
    assert d["noise_kind"] == "pseudo_random" and d["selection_seed"] == 2 and "selection" not in d
    assert RunConfig.from_dict(json.loads(json.dumps(d))) == c
    assert RunConfig.from_dict(d).run_id == c.run_id
    plain = c.replace(noise_kind="symmetric", selection_seed=None)
    assert c.run_id != plain.run_id  # never collides with prompt tuning on a K-shot draw
    for other in (c.replace(seed=4), c.replace(fill="replace"), c.replace(selection_seed=3)):
        assert other.run_id != c.run_id
    u = ensemble.config("upl", "toy-shapes", "toy-vit")
    assert (u.noise_kind, u.loss, u.loss_params, u.selection_seed) == ("pseudo_topk", "ce", {}, 1)
    assert (
        ensemble.method_of(u) == "upl"
        and ensemble.method_of(c.replace(loss="ce", loss_params={})) == "robust_upl_ce"
    )
    assert ensemble.method_of(c.replace(loss="sce", loss_params={})) == "robust_upl_sce"  # another loss
    assert ensemble.method_of(u.replace(loss="gce")) == "upl_gce"
    with pytest.raises(ValueError, match="noise_rate"):
        c.replace(noise_rate=0.5)
    with pytest.raises(ValueError, match="fill must be one of"):
        c.replace(fill="repeat")
    for not_a_member in (RunConfig("toy-shapes"), c.replace(method="cls_tuning")):
        with pytest.raises(ValueError, match="not an ensemble member"):
            ensemble.method_of(not_a_member)
    with pytest.raises(ValueError, match="unknown RunConfig key 'selection'"):
        RunConfig.from_dict({**d, "selection": "random"})
    with pytest.raises(ValueError, match="unknown UPL method"):
        ensemble.config("cupl", "toy-shapes", "toy-vit")


def test_sec5_builds_ensembles_of_distinct_seeds_sharing_a_selection():
    ens = unsupervised.sec5_unsupervised(
        "toy-vit", ["toy-shapes", "toy-fine"], n_prompts=4, seeds=[1, 2], epochs=3
    )
    assert len(ens) == 2 * 3 * 2 and len(ensemble.members(ens)) == 48
    pick = {(x.method, x.repeat, x.dataset): x for x in ens}
    e = pick["robust_upl_ce", 2, "toy-fine"]
    assert [c.seed for c in e.members] == [5, 6, 7, 8] and {c.selection_seed for c in e.members} == {2}
    assert {ensemble.method_of(c) for c in e.members} == {"robust_upl_ce"} and e.dataset == "toy-fine"
    # one training set per ensemble: its members differ in seed only, and train in one group
    assert len({engine.group_key(c) for c in e.members}) == 1
    assert engine.group_key(e.members[0]) == engine.group_key(
        pick["robust_upl_gce", 2, "toy-fine"].members[0]
    )
    for other in (
        pick["robust_upl_ce", 1, "toy-fine"],
        pick["upl", 2, "toy-fine"],
        pick["robust_upl_ce", 2, "toy-shapes"],
    ):
        assert engine.group_key(other.members[0]) != engine.group_key(e.members[0])
    assert ensemble.member_seeds(2, 4) == [5, 6, 7, 8] and ensemble.member_seeds(1, 4) == [1, 2, 3, 4]
    zcs = unsupervised.zeroshot_configs(ens)
    assert [c.dataset for c in zcs] == ["toy-shapes", "toy-fine"] and {c.method for c in zcs} == {"zeroshot"}
    assert unsupervised.SECTION.stored(ens) == zcs + ensemble.members(ens)
    with pytest.raises(ValueError, match="n_prompts"):
        unsupervised.sec5_unsupervised("toy-vit", ["toy-shapes"], n_prompts=0)


# -- training, store and ensemble on a tiny random CLIP ----------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return register_tiny_clip("ptnl-tiny-upl", tmp_path_factory.mktemp("cfg"))


@pytest.fixture
def ds(use_dataset, fresh_store):
    return use_dataset(synthetic_dataset(n_classes=4, train_per_class=10, test_per_class=3))


def small(tiny, method, seed=1, **kw):
    c = ensemble.config(method, "toy-synthetic", tiny, seed=seed, shots=3, epochs=2, **kw)
    return c.replace(pretrained=None, n_ctx=4, batch_size=4)


def members(cs, experiment="exp"):
    """Train ``cs`` as notebook 07 does: a sweep, members of an ensemble four to a group."""
    return sweep(cs, experiment, group_size=4, progress=False)


def test_members_train_through_the_store_and_are_not_redone(tiny, ds, monkeypatch):
    cs = [small(tiny, "upl", seed=s) for s in (1, 2)] + [small(tiny, "robust_upl_gce", seed=1)]
    ms = members(cs)
    for c, m in zip(cs, ms):
        d = store.run_dir(c, "exp")
        assert {p.name for p in d.iterdir()} == {"config.json", "metrics.json", "done", PROMPT_FILE}
        assert json.loads((d / "config.json").read_text()) == c.to_dict()
        assert ensemble.is_done(c, "exp")
        assert "method" not in m and len(m["train_loss"]) == 2 and 0 <= m["test_acc"] <= 1
        assert sum(m["class_counts"]) == m["n_train"] and sum(m["predicted_counts"]) == len(ds.train)
    assert ms[0]["group_size"] == ms[1]["group_size"] == 2 and ms[2]["group_size"] == 1  # UPL's together
    monkeypatch.setattr(base, "fit", lambda *a, **k: pytest.fail("a finished member was retrained"))
    assert members(cs) == ms
    df = store.collect("exp")
    assert df["noise_kind"].tolist().count("pseudo_topk") == 2 and set(df["method"]) == {"prompt"}


def test_pseudo_label_accuracy_is_zero_shot_accuracy_on_the_selected_subset(tiny, ds):
    c = small(tiny, "robust_upl_ce", fill="replace")
    [m] = members([c])
    r = engine.prepare(c)
    # zero-shot recomputed independently, on the selected images and on the whole train split
    zc = RunConfig("toy-synthetic", backbone=tiny, pretrained=None, method="zeroshot")
    zs = methods.init_module(methods.get("zeroshot"), zc, r.bundle, ds, "cpu")
    every = F.cached_features(
        r.bundle, ds, "train", np.arange(len(ds.train)), ["center"], r.device, r.precision
    )[0]
    with torch.no_grad():
        pred_all = zs(every).argmax(-1).numpy()
    pred = pred_all[r.train_idx]
    assert np.array_equal(pred, r.labels.noisy)  # the labels trained on are the zero-shot predictions
    assert np.array_equal(r.labels.true, ds.train.labels[r.train_idx])
    assert m["pseudo_label_acc"] == pytest.approx((pred == ds.train.labels[r.train_idx]).mean())
    assert m["zeroshot_train_acc"] == pytest.approx((pred_all == ds.train.labels).mean())
    assert m["n_train"] == 3 * (4 - m["n_empty_classes"])  # fill="replace": K per predicted class
    assert m["n_unique"] == len(set(r.train_idx.tolist()))
    assert {k: m[k] for k in r.label_info} == r.label_info  # what the label kind records, recorded


def test_ensemble_averages_member_logits(tiny, ds):
    cs = [small(tiny, "robust_upl_ce", seed=s) for s in (1, 2, 3)]
    ms = members(cs)
    zs = [ensemble.member_logits(c, "exp") for c in cs]
    y = torch.as_tensor(ds.test.labels)
    for z, m in zip(zs, ms):  # the stored context reproduces each member's own accuracy
        assert z.shape == (len(ds.test), 4) and (z.argmax(-1) == y).double().mean().item() == m["test_acc"]
    e = ensemble.ensemble(cs, "exp")
    torch.testing.assert_close(ensemble.average_logits(zs), torch.stack(zs).mean(0))
    assert e["test_acc"] == (torch.stack(zs).mean(0).argmax(-1) == y).double().mean().item()
    assert e["member_test_acc"] == [m["test_acc"] for m in ms] and e["n_prompts"] == 3
    assert e["method"] == "robust_upl_ce" and e["pseudo_label_acc"] == ms[0]["pseudo_label_acc"]
    assert ensemble.ensemble(ensemble.Ensemble("robust_upl_ce", 1, tuple(cs)), "exp") == e
    with pytest.raises(ValueError, match="differ only in seed"):
        ensemble.ensemble([cs[0], small(tiny, "robust_upl_gce")], "exp")
    with pytest.raises(FileNotFoundError, match="sweep its members"):
        ensemble.ensemble([small(tiny, "robust_upl_ce", seed=9)], "exp")
    (store.run_dir(cs[0], "exp") / PROMPT_FILE).unlink()  # done, but its context is gone
    assert store.is_done(cs[0], "exp") and not ensemble.is_done(cs[0], "exp")
    with pytest.raises(FileNotFoundError, match="is not trained"):
        ensemble.member_logits(cs[0], "exp")


def test_average_logits_is_not_probability_averaging_or_voting():
    z = [torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]])]
    assert ensemble.average_logits(z).argmax(-1).item() == 0
    assert torch.stack(z).softmax(-1).mean(0).argmax(-1).item() == 1  # what averaging probabilities gives
    torch.testing.assert_close(ensemble.average_logits(z), torch.tensor([[1.0, 2 / 3]]))
    with pytest.raises(ValueError, match="at least one"):
        ensemble.average_logits([])


def test_seeds_reproduce(tiny, ds, tmp_path, monkeypatch):
    cs = [small(tiny, "robust_upl_gce", seed=s) for s in (1, 2)]
    a = members(cs)
    za = [ensemble.member_logits(c, "exp") for c in cs]
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "again"))
    b = members(cs)
    assert [m["train_loss"] for m in a] == [m["train_loss"] for m in b]
    assert all(torch.equal(x, ensemble.member_logits(c, "exp")) for x, c in zip(za, cs))
    assert a[0]["train_loss"] != a[1]["train_loss"]  # the two seeds are different prompts
    other = small(tiny, "robust_upl_gce", seed=1, selection_seed=2)
    idx = [engine.prepare(c).train_idx for c in (*cs, other)]
    assert np.array_equal(idx[0], idx[1])  # members share their training set
    assert not np.array_equal(idx[0], idx[2])  # another selection_seed draws other images


def test_a_member_trained_alone_equals_it_trained_in_a_group_of_four(tiny, ds, tmp_path, monkeypatch):
    """Four members (three seeds of Robust UPL with GCE, one with CE) trained in one batched
    group and each alone: the same numbers to float rounding, each with its context stored."""
    cs = [small(tiny, "robust_upl_gce", seed=s) for s in (1, 2, 3)] + [small(tiny, "robust_upl_ce", seed=1)]
    group = engine.run_group(cs, "exp")
    grouped = [ensemble.member_logits(c, "exp") for c in cs]
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "alone"))
    for c, g, zg in zip(cs, group, grouped):
        s = engine.run(c, "exp")
        assert g["group_size"] == 4 and s["group_size"] == 1
        assert g["test_acc"] == pytest.approx(s["test_acc"], abs=1e-12)
        np.testing.assert_allclose(g["train_loss"], s["train_loss"], rtol=1e-5, atol=1e-6)
        assert g["train_fit_clean"] == pytest.approx(s["train_fit_clean"], abs=1e-12)
        for k in ("pseudo_label_acc", "n_train", "class_counts", "predicted_counts"):
            assert g[k] == s[k], k
        assert ensemble.is_done(c, "exp") and (store.run_dir(c, "exp") / PROMPT_FILE).is_file()
        torch.testing.assert_close(ensemble.member_logits(c, "exp"), zg, rtol=1e-4, atol=1e-5)
    assert group[0]["train_loss"] != group[3]["train_loss"]  # seed 1 with GCE and with CE: two runs


def test_the_prompt_family_keeps_the_context_of_pseudo_label_runs_only(tiny, ds):
    member = small(tiny, "upl")
    plain = member.replace(noise_kind="symmetric", selection_seed=None, noise_rate=0.25)
    for c in (
        member,
        member.replace(method="cls_tuning"),
        member.replace(method="classifier_r"),  # another family on pseudo-labels: nothing beside
        plain,
        plain.replace(method="cls_tuning"),
    ):
        engine.run(c, "exp")
        kept = (store.run_dir(c, "exp") / PROMPT_FILE).is_file()
        assert kept == (c.noise_kind in PSEUDO_KINDS and c.method != "classifier_r"), (c.method, c.noise_kind)
    # what is kept: the trained parameters only, the trained context of the run
    r = engine.prepare(member)
    module = methods.init_module(methods.get("prompt"), member, r.bundle, r.dataset, r.device)
    for kind in KINDS:
        files = prompt.FAMILY.files(types.SimpleNamespace(cfg=types.SimpleNamespace(noise_kind=kind)), module)
        assert (PROMPT_FILE in files) == (kind in PSEUDO_KINDS) and set(files) <= {PROMPT_FILE}, kind
    stored = torch.load(store.run_dir(member, "exp") / PROMPT_FILE, weights_only=True)
    init = module.prompt_learner.ctx.detach()
    assert list(stored) == ["prompt_learner.ctx"]
    assert stored["prompt_learner.ctx"].shape == init.shape == (4, 64)  # n_ctx x the text width
    assert not torch.equal(stored["prompt_learner.ctx"], init)  # the trained context, not the init


# -- the toy world -----------------------------------------------------------------------------------


@pytest.mark.slow  # renders and encodes the 512 train images of toy-shapes (~10 s on 2 busy cores)
def test_toy_world_upl_set_is_cleaner_than_robust_upl_set(fresh_store):
    # toy-rn first: notebook 07's backbone, and the toy CLIP whose zero-shot is further above
    # chance on toy-shapes (6.1x, toy-vit's 3.1x: docs/log/toy-world-v2.md, addendum 7).
    trained = [b for b in ("toy-rn", "toy-vit") if TOY_BACKBONES[b].checkpoint.is_file()]
    if not trained:
        pytest.skip("no toy checkpoint trained yet (python -m ptnl toy pretrain --backbone toy-rn)")
    backbone = trained[0]
    r_upl = engine.prepare(ensemble.config("upl", "toy-shapes", backbone), device="cpu")
    r_rob = engine.prepare(ensemble.config("robust_upl_ce", "toy-shapes", backbone), device="cpu")
    pl_ = scores.pseudo_label(r_upl.bundle, r_upl.dataset, "cpu")
    true = r_upl.dataset.train.labels
    # the zero-shot pass itself: its accuracy on the train split is well above chance (8 classes)
    assert (pl_.pred == true).mean() > 0.25
    for r in (r_upl, r_rob):
        assert np.array_equal(r.labels.noisy, pl_.pred[r.train_idx])
        assert np.array_equal(r.labels.true, true[r.train_idx])
        assert r.label_info["zeroshot_train_acc"] == pytest.approx((pl_.pred == true).mean())
    acc_upl, acc_rob = 1 - r_upl.labels.is_noisy.mean(), 1 - r_rob.labels.is_noisy.mean()
    assert acc_upl > acc_rob  # confident pseudo-labels are cleaner than random ones
    assert acc_upl > (pl_.pred == true).mean()  # and cleaner than the split's average
