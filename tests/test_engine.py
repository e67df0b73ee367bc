import math

import numpy as np
import pytest
import torch

from ptnl.tools.speed import register_tiny_clip, synthetic_dataset
from ptnl.train import engine, loop, methods, optim, scores, store
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.methods import base


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return register_tiny_clip("ptnl-tiny-engine", tmp_path_factory.mktemp("cfg"))


@pytest.fixture
def ds(use_dataset, fresh_store):
    return use_dataset(synthetic_dataset(n_classes=4, train_per_class=6, test_per_class=3))


def module_of(c, r):
    """The module ``c``'s method builds for run ``r``, initialised from the seed's "init" stream."""
    return methods.init_module(methods.get(c.method), c, r.bundle, r.dataset, r.device)


def cfg(tiny, **kw):
    base = dict(
        dataset="toy-synthetic", backbone=tiny, pretrained=None, shots=4, epochs=3, batch_size=8, n_ctx=4
    )
    return RunConfig(**{**base, **kw})


def test_view_schedule_uses_every_view_once_per_cycle():
    g = torch.Generator().manual_seed(0)
    s = F.view_schedule(n=5, n_views=4, epochs=10, g=g)
    assert s.shape == (10, 5)
    for start in (0, 4):
        for i in range(5):
            assert sorted(s[start : start + 4, i].tolist()) == [0, 1, 2, 3]
    assert s.max() < 4
    assert torch.equal(s, F.view_schedule(5, 4, 10, torch.Generator().manual_seed(0)))


def test_epoch_batches_drop_last_as_dassl():
    g = torch.Generator().manual_seed(0)
    b = F.epoch_batches(70, 32, g)
    assert [len(x) for x in b] == [32, 32]
    assert len(set(torch.cat(b).tolist())) == 64
    assert [len(x) for x in F.epoch_batches(20, 32, g)] == [20]  # fewer than a batch: keep all


def test_per_sample_grad_norms_equal_one_backward_per_sample():
    torch.manual_seed(0)
    w = torch.randn(5, 3, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    x, y = torch.randn(7, 3), torch.randint(0, 5, (7,))
    losses = torch.nn.functional.cross_entropy(torch.tanh(x @ w.T) * 3 + b, y, reduction="none")
    got = optim.per_sample_grad_norms(losses, [w, b])
    want = []
    for i in range(7):
        gw, gb = torch.autograd.grad(losses[i], [w, b], retain_graph=True)
        want.append(torch.sqrt(gw.pow(2).sum() + gb.pow(2).sum()))
    torch.testing.assert_close(got, torch.stack(want))


def test_prompt_run_metrics_and_determinism(tiny, ds):
    c = cfg(tiny, noise_rate=0.25, grad_ratio=True, feature_mode="center")
    m = engine.run(c)
    assert m["train_label_acc"] == 0.75 and m["n_train"] == 16 and m["n_noisy"] == 4
    assert len(m["train_loss"]) == 3 and m["lr"][0] == 1e-5 and m["lr"][1] == 0.002
    assert all(r > 0 and math.isfinite(r) for r in m["grad_norm_ratio"])
    assert 0 <= m["test_acc"] <= 1 and m["feature_mode"] == "center" and m["weights_id"] == "random"
    again = engine.run(c)
    assert again["train_loss"] == m["train_loss"] and again["test_acc"] == m["test_acc"]
    assert engine.run(c.replace(seed=2))["train_loss"] != m["train_loss"]


def test_grad_ratio_matches_explicit_per_sample_chain(tiny, ds, monkeypatch):
    """Epoch-1 ratio recomputed by hand: one forward/backward per sample through the text tower."""
    c = cfg(tiny, noise_rate=0.5, grad_ratio=True, feature_mode="center", epochs=1, batch_size=16)
    m = engine.run(c)
    r = engine.prepare(c)
    module = module_of(c, r)
    feats = F.train_bank(r)[0]
    batch = F.epoch_batches(r.n_train, c.batch_size, F.generator("order", c.seed))[0]
    norms = []
    for i in batch.tolist():
        logits = module(feats[i : i + 1], module.class_embeddings())
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(r.labels.noisy[i : i + 1]))
        (g,) = torch.autograd.grad(loss, module.trainable_parameters())
        norms.append(g.norm().item())
    norms, noisy = np.array(norms), r.labels.is_noisy[batch.numpy()]
    assert noisy.any() and (~noisy).any()
    assert m["grad_norm_ratio"][0] == pytest.approx(norms[noisy].mean() / norms[~noisy].mean(), rel=1e-4)


def test_no_noise_gives_nan_ratio(tiny, ds):
    m = engine.run(cfg(tiny, grad_ratio=True, feature_mode="center", epochs=1))
    assert math.isnan(m["grad_norm_ratio"][0]) and m["train_label_acc"] == 1.0


def test_training_reduces_the_loss(tiny, ds):
    c = cfg(tiny, method="classifier_r", epochs=6, lr=0.1, warmup_epochs=0, feature_mode="center", shots=6)
    trained = engine.run(c.replace(batch_size=4))["train_loss"]
    frozen = engine.run(c.replace(batch_size=4, lr=0.0))["train_loss"]
    assert frozen[-1] == pytest.approx(frozen[0], rel=0.2)
    assert trained[-1] < 0.5 * frozen[-1]


class _Lookup(torch.nn.Module):
    """Predicts, for each feature, the label stored for its nearest training feature."""

    def __init__(self, bank, labels):
        super().__init__()
        self.bank, self.labels = bank, torch.as_tensor(labels)

    def class_embeddings(self):
        return None

    def forward(self, f, emb=None):
        nearest = torch.cdist(f.float(), self.bank.float()).argmin(-1)
        return torch.nn.functional.one_hot(self.labels[nearest], 4).float()


def test_label_agreement_counts_wrong_labels_apart(tiny, ds):
    """A memoriser of the noisy labels fits all of them; one of the true labels fits none of the
    wrong ones; a real module's numbers are recomputed by hand from the feature bank."""
    c = cfg(tiny, method="classifier_r", noise_rate=0.5, feature_mode="center", shots=6)
    r = engine.prepare(c)
    bank = F.train_bank(r)[0]
    memoriser = loop.label_agreement(_Lookup(bank, r.labels.noisy), r)
    assert memoriser == {"train_fit_noisy": 1.0, "train_fit_clean": 1.0}
    truthful = loop.label_agreement(_Lookup(bank, r.labels.true), r)
    assert truthful == {"train_fit_noisy": 0.0, "train_fit_clean": 1.0}
    module = module_of(c, r)
    got = loop.label_agreement(module, r)
    right = module(bank).argmax(-1).numpy() == r.labels.noisy
    assert got["train_fit_noisy"] == pytest.approx(right[r.labels.is_noisy].mean())
    assert got["train_fit_clean"] == pytest.approx(right[~r.labels.is_noisy].mean())
    m = engine.run(c.replace(epochs=1))
    assert 0 <= m["train_fit_noisy"] <= 1 and 0 <= m["train_fit_clean"] <= 1
    assert engine.run(c.replace(noise_rate=0.0, epochs=1))["train_fit_noisy"] is None


def test_label_agreement_in_exact_mode_scores_centre_crops(tiny, ds):
    """Online crops leave no bank behind, so an exact-mode run is scored on its centre crops,
    whatever bank a caller passes."""
    c = cfg(tiny, method="classifier_r", noise_rate=0.5, feature_mode="exact", shots=6)
    r = engine.prepare(c)
    [centre] = F.cached_features(r.bundle, r.dataset, "train", r.train_idx, ["center"], r.device, r.precision)
    memoriser = _Lookup(centre, r.labels.noisy)
    assert loop.label_agreement(memoriser, r) == {"train_fit_noisy": 1.0, "train_fit_clean": 1.0}
    decoy = torch.randn(3, *centre.shape)  # ignored in exact mode
    assert loop.label_agreement(memoriser, r, bank=decoy) == {"train_fit_noisy": 1.0, "train_fit_clean": 1.0}
    module = module_of(c, r)
    right = module(centre).argmax(-1).numpy() == r.labels.noisy
    got = loop.label_agreement(module, r)
    assert got["train_fit_noisy"] == pytest.approx(right[r.labels.is_noisy].mean())
    assert got["train_fit_clean"] == pytest.approx(right[~r.labels.is_noisy].mean())


def test_classifier_r_free_rows_are_unnormalised(tiny, ds):
    c = cfg(tiny, method="classifier_r_free", feature_mode="center", lr=0.5, warmup_epochs=0)
    r = engine.prepare(c)
    free = module_of(c, r)
    cos = module_of(c.replace(method="classifier_r"), r)
    torch.testing.assert_close(free.class_embeddings(), cos.class_embeddings())  # same start
    loop.fit([r], [free], [F.feature_source(r)])
    norms = free.class_embeddings().norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))
    assert not free.normalize_weight and cos.normalize_weight


def test_group_equals_sequential_runs(tiny, ds):
    configs = [
        cfg(tiny, seed=1, n_views=2),
        cfg(tiny, seed=2, n_views=2, noise_rate=0.25),
        cfg(tiny, seed=1, n_views=2, loss="gce", lr=0.01, grad_ratio=True, noise_rate=0.5),
    ]
    group = engine.run_group(configs)
    for c, g in zip(configs, group):
        s = engine.run(c)
        np.testing.assert_allclose(g["train_loss"], s["train_loss"], rtol=1e-5, atol=1e-6)
        assert g["test_acc"] == s["test_acc"] and g["group_size"] == 3 and s["group_size"] == 1
        assert g["train_fit_clean"] == s["train_fit_clean"] and g["train_fit_noisy"] == s["train_fit_noisy"]
        if c.grad_ratio:
            np.testing.assert_allclose(g["grad_norm_ratio"], s["grad_norm_ratio"], rtol=1e-4)
    with pytest.raises(ValueError, match="differ only in"):
        engine.run_group([cfg(tiny), cfg(tiny, shots=2)])
    with pytest.raises(ValueError, match="cached features"):
        engine.run_group([cfg(tiny, method="linear_probe"), cfg(tiny, method="linear_probe", seed=2)])
    with pytest.raises(ValueError, match="cached features"):
        engine.run_group([cfg(tiny, feature_mode="exact"), cfg(tiny, feature_mode="exact", seed=2)])
    # below the store too: only runs of one groupable method train together
    prompt = engine.prepare(cfg(tiny, feature_mode="center"))
    head = engine.prepare(cfg(tiny, method="classifier_r", feature_mode="center"))
    for runs in (
        [head, head],
        [prompt, engine.prepare(cfg(tiny, method="cls_tuning", feature_mode="center"))],
    ):
        with pytest.raises(ValueError, match="one groupable method"):
            engine.train(runs)


def test_a_group_of_one_is_a_run_of_any_method(tiny, ds):
    c = cfg(tiny, method="classifier_r", feature_mode="center", epochs=1, noise_rate=0.25)
    [g] = engine.run_group([c])
    s = engine.run(c)
    assert {k: v for k, v in g.items() if k != "seconds"} == {k: v for k, v in s.items() if k != "seconds"}
    metrics, files = engine.train([engine.prepare(c)])
    assert metrics[0]["test_acc"] == s["test_acc"] and files == [{}]


def test_store_round_trip_skips_finished_runs(tiny, ds, monkeypatch):
    c = cfg(tiny, epochs=1, feature_mode="center")
    m = engine.run(c, "exp")
    assert store.is_done(c, "exp")
    monkeypatch.setattr(engine, "train_configs", lambda *a, **k: pytest.fail("a done run was redone"))
    assert engine.run(c, "exp")["test_acc"] == m["test_acc"]
    df = store.collect("exp")
    assert df.loc[0, "run_id"] == c.run_id and df.loc[0, "feature_mode"] == "center"


def test_exact_mode_encodes_the_exact_batches(tiny, ds, monkeypatch):
    c = cfg(tiny, feature_mode="exact", epochs=2)
    seen = []
    real = F.exact_batch
    monkeypatch.setattr(F, "exact_batch", lambda *a, **k: seen.append(a[2:]) or real(*a, **k))
    engine.run(c)
    # 16 samples, batch 8: 2 steps x 2 epochs, each with its own (images, seed, epoch)
    assert [(len(idx), s, e) for idx, s, e in seen] == [(8, 1, 1), (8, 1, 1), (8, 1, 2), (8, 1, 2)]


def test_every_method_runs(tiny, ds):
    for method in (
        "zeroshot",
        "random_prompt",
        "classifier_r",
        "classifier_c",
        "tenc_ft",
        "cls_tuning",
        "full_prompt",
    ):
        m = engine.run(cfg(tiny, method=method, epochs=1, feature_mode="center", noise_rate=0.25))
        assert 0 <= m["test_acc"] <= 1, method
        assert ("train_loss" in m) == (method not in ("zeroshot", "random_prompt")), method


@pytest.mark.slow
def test_linear_probe_and_visual_ft_run(tiny, ds):
    m = engine.run(cfg(tiny, method="linear_probe", feature_mode="center"))
    assert 0 <= m["test_acc"] <= 1 and m["probe_C"] > 0
    m = engine.run(cfg(tiny, method="visual_ft", feature_mode="exact", epochs=1))
    assert len(m["train_loss"]) == 1 and m["visual_weights_id"].endswith(":random")


def test_confusion_noise_reads_zero_shot_probabilities(tiny, ds, monkeypatch):
    c = cfg(tiny, noise_kind="confusion", noise_rate=0.5)
    calls = []
    real = scores.zeroshot_probs
    monkeypatch.setattr(scores, "zeroshot_probs", lambda *a: calls.append(1) or real(*a))
    r = engine.prepare(c)
    p = real(r.bundle, r.dataset, r.train_idx, r.device, r.precision)
    assert calls == [1] and p.shape == (16, 4)
    torch.testing.assert_close(p.sum(1), torch.ones(16))
    assert r.labels.n_noisy == 8
    # "matrix": one wrong class per true class; "sample": each image's own top wrong class.
    from ptnl.data.noise import add_noise

    true = r.labels.true
    for how in ("matrix", "sample"):
        got = engine.prepare(c.replace(confusion_from=how)).labels
        want = add_noise(true, 4, "confusion", 0.5, c.seed, scores=p, confusion_from=how)
        assert np.array_equal(got.noisy, want.noisy), how
    matrix = engine.prepare(c).labels
    for k in range(4):
        assert len(set(matrix.noisy[matrix.is_noisy & (true == k)])) <= 1


def test_exact_mode_matches_the_plain_coop_reference(tiny, ds):
    """The benchmark's plain CoOp loop (full-length prompts, no truncation, no shared prefix) and
    ptnl's exact mode see the same crops, order, init and learning rates: same numbers."""
    from ptnl.tools.speed import CoOpReference, reference_fit

    c = cfg(tiny, feature_mode="exact", epochs=3, noise_rate=0.25, lr=0.05, warmup_epochs=0)
    r = engine.prepare(c)
    m = module_of(c, r)
    ref = CoOpReference(r.bundle, r.dataset.classnames, m.prompt_learner.ctx)
    assert ref.suffix.shape[1] + 1 + c.n_ctx == r.bundle.context_length  # the reference runs full length
    [hist] = loop.fit([r], [m], [F.feature_source(r)])
    steps = reference_fit(r, ref)
    per_epoch = np.array(steps).reshape(c.epochs, -1).mean(1)  # 16 samples, batch 8: 2 steps an epoch
    np.testing.assert_allclose(hist["train_loss"], per_epoch, rtol=1e-5)
    torch.testing.assert_close(m.prompt_learner.ctx, ref.ctx, rtol=1e-4, atol=1e-5)  # ctx ~ 0.02
    assert not torch.allclose(ref.ctx, module_of(c, r).prompt_learner.ctx)


def test_speed_benchmark_measures_and_reports(tiny, fresh_store, tmp_path):
    """One in-process measurement per row kind, then the ratios and the markdown table."""
    from ptnl.tools import speed

    rows = [speed.measure(tiny, mode, steps=1, n_classes=5) for mode in ("reference", "exact", "views")]
    assert all(r["step_s"] > 0 and r["peak_rss_mb"] > 0 for r in rows)
    assert rows[2]["cache_s"] > 0 and len(rows[0]["ctx"]) == 16 * 64
    group = dict(rows[2], mode="group16", step_s=rows[2]["step_s"] * 4)
    res = {"device": "cpu", "steps": 1, "n_classes": 5, "torch": "x", "threads": 1, "rows": [*rows, group]}
    speed._derive(res)
    ref, exact, views, group = res["rows"]
    assert exact["max_abs_diff_loss"] < 1e-5 and exact["max_abs_diff_ctx"] < 1e-6
    assert views["speedup_vs_reference"] == pytest.approx(ref["step_s"] / views["step_s"])
    assert group["speedup_vs_sequential"] == pytest.approx(16 / 4) and group["meets_target"]
    table = speed.markdown(res)
    assert table.count("\n|") == 6 and "4.0x vs 16 sequential" in table


@pytest.mark.slow
def test_speed_benchmark_cli_smoke(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "ptnl",
        "bench",
        "--smoke",
        "--steps",
        "1",
        "--modes",
        "reference,exact,views",
    ]
    res = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "| ptnl-tiny | 37 | exact |" in res.stdout
    assert [r["mode"] for r in json.loads(out.read_text())["rows"]] == ["reference", "exact", "views"]


def test_half_sgd_is_sgd_on_fp16_parameters():
    # CoOp's PREC=fp16: torch's SGD run directly on fp16 parameters with fp16 gradients.
    g = torch.Generator().manual_seed(0)
    start = torch.randn(6, 5, generator=g) * 0.02
    grads = [torch.randn(6, 5, generator=g) * s for s in (1e-1, 1e-3, 1e-5, 1e-2)]
    coop = torch.nn.Parameter(start.half())
    ref = torch.optim.SGD([coop], lr=0.002, momentum=0.9, weight_decay=5e-4)
    ours = torch.nn.Parameter(start.clone())
    opt = optim.HalfSGD([ours], lr=0.002, momentum=0.9, weight_decay=5e-4)
    assert torch.equal(ours.detach(), start.half().float())  # born fp16
    for grad in grads:
        coop.grad, ours.grad = grad.half(), grad
        ref.step()
        opt.step()
        assert torch.equal(ours.detach(), coop.detach().float())
    assert opt.stalled[0] < 0.1 and opt.stalled[2] > 0  # a 1e-5 gradient moves little in fp16


def test_half_sgd_loses_updates_below_half_an_fp16_spacing():
    p = torch.nn.Parameter(torch.full((4,), 0.02))  # fp16 spacing at 0.02 is 2**-16
    opt = optim.HalfSGD([p], lr=1.0, momentum=0.0, weight_decay=0.0)
    start = p.detach().clone()
    p.grad = torch.full((4,), 2.0**-18)
    opt.step()
    assert torch.equal(p.detach(), start) and opt.stalled == [1.0]
    p.grad = torch.full((4,), 2.0**-16)
    opt.step()
    assert (p.detach() < start).all() and opt.stalled[-1] == 0.0


def test_coop_fp16_runs_keep_fp16_values_and_report_stalls(tiny, ds, monkeypatch):
    c = cfg(tiny, precision="coop-fp16", feature_mode="center", noise_rate=0.25)
    assert c.run_id != cfg(tiny, feature_mode="center", noise_rate=0.25).run_id
    assert engine.resolve_precision("coop-fp16", torch.device("cpu")) == "fp32"
    assert engine.resolve_precision("coop-fp16", torch.device("cuda")) == "fp16"
    trained = []
    real_fit = loop.fit
    monkeypatch.setattr(base, "fit", lambda runs, mods, *a: trained.extend(mods) or real_fit(runs, mods, *a))
    m = engine.run(c)
    assert m["precision"] == "fp32" and m["update_precision"] == "fp16"
    assert len(m["stalled_updates"]) == 3 and all(0 <= s <= 1 for s in m["stalled_updates"])
    for p in trained[0].trainable_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, p.half().float())
    plain = engine.run(c.replace(precision="auto"))
    assert "update_precision" not in plain and "stalled_updates" not in plain
    for method in ("classifier_r", "tenc_ft"):
        assert len(engine.run(c.replace(method=method, epochs=1))["stalled_updates"]) == 1
