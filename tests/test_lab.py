"""The toy lab (notebook 09): its task family, its early checkpoints (shrunk on disk, resolved by
name), the temperature factor of RunConfig and the heads, the grid, the cell table and its claims."""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from ptnl.core import paths
from ptnl.data import load_dataset
from ptnl.data.toy import OBJECTS_CLASS_COUNTS, world
from ptnl.data.toy import tasks as toy_tasks
from ptnl.models import checkpoints
from ptnl.models import weights as W
from ptnl.models.toy import lab as toy_lab
from ptnl.report import claims
from ptnl.sections import lab
from ptnl.train.config import RunConfig, run_identity

EMB = "token_embedding.weight"


# ------------------------------------------------------------------------------- the task family


def _family():
    return [toy_tasks.TASKS[f"toy-objects-{c}"] for c in OBJECTS_CLASS_COUNTS]


def test_objects_family_is_nested_and_balanced():
    assert OBJECTS_CLASS_COUNTS == (8, 16, 32, 64)
    family = _family()
    assert [len(t.classes) for t in family] == [8, 16, 32, 64]
    for small, big in zip(family, family[1:]):
        assert big.classnames[: len(small.classnames)] == small.classnames
    assert len(set(family[-1].classnames)) == 64  # all 8 x 8 colour-shape pairs, once each
    for c, task in zip(OBJECTS_CLASS_COUNTS, family):
        assert task.template == "a photo of a {}."
        assert len(set(task.classnames)) == c
        colours = collections.Counter(a.colour for _, a in task.classes)
        shapes = collections.Counter(a.shape for _, a in task.classes)
        assert colours == {k: c // 8 for k in world.COLOURS}
        assert shapes == {s: c // 8 for s in world.SHAPES}
        for name, a in task.classes:  # the name says exactly what the class fixes
            assert name == f"{a.colour} {a.shape}" and a.count == 1 and a.kind == "scene"


def test_objects_task_loads_class_balanced():
    ds = load_dataset("toy-objects-16")
    assert ds.name == "toy-objects-16" and ds.n_classes == 16 and ds.split_source == "toy"
    assert ds.classnames == toy_tasks.TASKS["toy-objects-16"].classnames
    assert ds.template == "a photo of a {}." and ds.prompts()[0] == f"a photo of a {ds.classnames[0]}."
    for split, (_, per_class) in toy_tasks.SPLITS.items():
        labels = getattr(ds, split).labels
        assert len(labels) == 16 * per_class
        assert np.array_equal(np.bincount(labels, minlength=16), np.full(16, per_class))
    attrs, _ = toy_tasks.task_attrs(ds.test.refs[5])
    assert f"{attrs.colour} {attrs.shape}" == ds.classnames[ds.test.labels[5]]


def test_task_streams_never_overlap():
    family = _family()
    assert len({t.stream for t in family}) == len(family)
    offsets = [off for off, _ in toy_tasks.SPLITS.values()]
    assert sorted(offsets) == [0, 1, 2]
    used = collections.Counter(t.stream + off for t in toy_tasks.TASKS.values() for off in offsets)
    assert [s for s, n in used.items() if n > 1] == []
    assert 0 not in used  # pretraining's stream
    # the same index of two lab tasks is two different pictures
    a, _ = toy_tasks.task_attrs("toy-objects-8/test/00003")
    b, _ = toy_tasks.task_attrs("toy-objects-16/test/00003")
    assert a.shape == b.shape and a.colour == b.colour  # class 3 of both: the same class
    x = np.asarray(toy_tasks.load_image("toy-objects-8/test/00003"))
    y = np.asarray(toy_tasks.load_image("toy-objects-16/test/00003"))
    assert not np.array_equal(x, y)


# ------------------------------------------------------------------------------- lab checkpoints


def _random_state():
    g = torch.Generator().manual_seed(0)
    return {
        EMB: torch.randn(100, 8, generator=g).half(),
        "positional_embedding": torch.randn(4, 8, generator=g).half(),
        "logit_scale": torch.tensor(math.log(30.0)).half(),
    }


def test_shrink_then_expand_gives_kept_rows_and_zeros():
    state = _random_state()
    shrunk = toy_lab.shrink_state(state, EMB, [7, 0, 5, 5])
    assert EMB not in shrunk
    assert shrunk[EMB + ".rows"].tolist() == [0, 5, 7]
    assert shrunk[EMB + ".values"].shape == (3, 8) and shrunk[EMB + ".full_shape"].tolist() == [100, 8]
    full = toy_lab.expand_state(shrunk)
    assert set(full) == set(state)
    assert full[EMB].shape == (100, 8) and full[EMB].dtype == torch.float16
    kept = [0, 5, 7]
    assert torch.equal(full[EMB][kept], state[EMB][kept])
    others = [i for i in range(100) if i not in kept]
    assert torch.count_nonzero(full[EMB][others]) == 0
    for k in ("positional_embedding", "logit_scale"):
        assert torch.equal(full[k], state[k])
    plain = toy_lab.expand_state(state)
    assert set(plain) == set(state) and all(torch.equal(plain[k], state[k]) for k in state)


def test_lab_checkpoint_names():
    p = toy_lab.lab_checkpoint("toy-rn", "step1500")
    assert p.as_posix().endswith("lab/toy-rn-step1500.safetensors")
    assert p.parent.parent == paths.toy_checkpoint_dir()
    for bad in ("stepX", "1500", "step", "default", "step-5"):
        with pytest.raises(ValueError, match="step<k>"):
            toy_lab.lab_checkpoint("toy-rn", bad)
    assert toy_lab.is_lab_name("step1500") and toy_lab.is_lab_name("step5")
    for bad in ("stepX", "1500", "default", None, 1500, "step1500 "):
        assert not toy_lab.is_lab_name(bad)


@pytest.fixture
def lab_dir(tmp_path, monkeypatch):
    """An empty toy checkpoint folder of the test's own, as ``ptnl.models.toy.lab`` sees it."""
    monkeypatch.setattr(toy_lab, "toy_checkpoint_dir", lambda: tmp_path)
    (tmp_path / toy_lab.LAB_DIR).mkdir()
    return tmp_path / toy_lab.LAB_DIR


def test_missing_lab_checkpoint_says_how_to_make_it(lab_dir):
    with pytest.raises(FileNotFoundError, match="--save-at") as e:
        W.resolve_weights("toy-rn", "step999999")
    assert "present: none" in str(e.value) and "toy-rn-step999999.safetensors" in str(e.value)
    assert W.weights_identity("toy-rn", "step999999").startswith("file-missing:")
    assert not W.weights_available("toy-rn", "step999999")
    with pytest.raises(ValueError, match="step<k>"):
        W.resolve_weights("toy-rn", "nonsense")


def test_a_lab_checkpoint_resolves_and_reads_expanded(lab_dir):
    from safetensors.torch import save_file

    state = _random_state()
    path = lab_dir / "toy-rn-step7.safetensors"
    save_file(toy_lab.shrink_state(state, EMB, [3, 1, 99]), str(path))
    assert toy_lab.lab_checkpoints("toy-rn") == ["step7"] and toy_lab.lab_checkpoints("toy-vit") == []

    got = checkpoints.read_state_dict(path)
    assert set(got) == set(state)
    assert got[EMB].shape == (100, 8)
    assert torch.equal(got[EMB][[1, 3, 99]], state[EMB][[1, 3, 99]])
    assert torch.count_nonzero(got[EMB]) == torch.count_nonzero(state[EMB][[1, 3, 99]])
    assert torch.equal(got["logit_scale"], state["logit_scale"])

    w = W.resolve_weights("toy-rn", "step7")
    assert w.kind == "toy" and w.path == path
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert W.weights_identity("toy-rn", "step7") == f"toy:{sha}"
    with pytest.raises(FileNotFoundError, match="present: step7"):
        W.resolve_weights("toy-rn", "step8")


# ------------------------------------------------------------------------------- temperature


def test_every_field_but_the_file_names_is_hashed():
    c = RunConfig(dataset="DTD")
    assert c.temperature is None and "temperature" in c.to_dict()
    assert json.loads(c.canonical_json())["temperature"] is None
    assert set(json.loads(c.canonical_json())) == set(c.to_dict()) - {
        "pretrained",
        "noise_file",
        "visual_weights",
    }
    assert c.run_id == run_identity(c.canonical_json(), c.backbone, c.pretrained, c.dataset)


def test_set_temperature_is_hashed_and_coerced():
    c = RunConfig(dataset="DTD")
    hot = c.replace(temperature=100.0)
    assert hot.run_id != c.run_id and hot.replace(temperature=50.0).run_id != hot.run_id
    assert json.loads(hot.canonical_json())["temperature"] == 100.0
    as_int = c.replace(temperature=100)
    assert isinstance(as_int.temperature, float) and as_int.temperature == 100.0
    assert as_int.run_id == hot.run_id
    for d in (c, hot):
        back = RunConfig.from_dict(d.identity_dict())
        assert back == d and back.run_id == d.run_id


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), -float("inf")])
def test_bad_temperatures_raise(bad):
    with pytest.raises(ValueError, match="temperature"):
        RunConfig(dataset="DTD", temperature=bad)


def test_temperature_needs_a_clip_head():
    with pytest.raises(ValueError, match="temperature"):
        RunConfig(dataset="DTD", method="linear_probe", feature_mode="center", temperature=10.0)
    RunConfig(dataset="DTD", method="linear_probe", feature_mode="center")  # without it: fine
    for method in ("prompt", "cls_tuning", "classifier_r", "zeroshot"):
        assert RunConfig(dataset="DTD", method=method, temperature=10.0).temperature == 10.0


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    from ptnl.models.clip import load_clip
    from ptnl.tools.speed import register_tiny_clip

    return load_clip(register_tiny_clip("ptnl-tiny-lab", tmp_path_factory.mktemp("cfg")), pretrained=None)


@pytest.mark.parametrize("method", ["prompt", "classifier_r", "zeroshot"])
def test_module_logits_use_the_run_temperature(tiny_bundle, method):
    from ptnl.tools.speed import synthetic_dataset
    from ptnl.train import methods

    def build_module(cfg):
        return methods.init_module(methods.get(cfg.method), cfg, tiny_bundle, ds, "cpu")

    ds = synthetic_dataset(n_classes=3, train_per_class=2, test_per_class=1)
    own = tiny_bundle.model.logit_scale.detach().float().exp().item()
    assert own != pytest.approx(7.5)
    before = tiny_bundle.model.logit_scale.detach().clone()
    base = dict(dataset="toy-synthetic", backbone="ptnl-tiny-lab", pretrained=None, method=method, n_ctx=4)
    for temperature, want in ((7.5, 7.5), (None, own)):
        cfg = RunConfig(**base, temperature=temperature)
        m = build_module(cfg)
        assert float(m.logit_scale) == pytest.approx(want, rel=1e-6)
        assert torch.equal(tiny_bundle.model.logit_scale, before)  # the CLIP's own scale is untouched
    # the logits scale with it: T * cos, so their ratio at two temperatures is the ratio of T
    x = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    logits = {}
    for t in (7.5, 15.0):
        m = build_module(RunConfig(**base, temperature=t))
        with torch.no_grad():
            logits[t] = m(x).float()
    torch.testing.assert_close(logits[15.0], 2 * logits[7.5])


# ------------------------------------------------------------------------------- the grid


def _grid(**kw):
    args = dict(
        backbone="toy-rn",
        class_counts=[8, 32],
        shot_counts=[4, 16],
        checkpoints=["step500", "default"],
        class_names=["fixed", "learned"],
        temperatures=[None],
        noise_rate=0.5,
        seeds=[1, 2],
        epochs=50,
    )
    return lab.lab_runs(**{**args, **kw})


def test_lab_runs_grid(lab_dir):
    runs = _grid()
    assert len(runs) == 100 and len({c.run_id for c in runs}) == 100
    trained = [c for c in runs if c.method != "zeroshot"]
    zs = [c for c in runs if c.method == "zeroshot"]
    assert len(trained) == 96 and len(zs) == 4
    assert collections.Counter(c.method for c in trained) == {
        "prompt": 32,
        "cls_tuning": 32,
        "classifier_r": 32,
    }
    assert collections.Counter(c.noise_rate for c in trained) == {0.0: 48, 0.5: 48}
    assert {c.dataset for c in runs} == {"toy-objects-8", "toy-objects-32"}
    assert {c.shots for c in trained} == {4, 16} and {c.seed for c in trained} == {1, 2}
    assert {(c.dataset, c.pretrained) for c in zs} == {
        (f"toy-objects-{n}", p) for n in (8, 32) for p in ("step500", "default")
    }
    assert all(c.shots == 16 and c.noise_rate == 0.0 for c in zs)
    assert all(c.backbone == "toy-rn" and c.epochs == 50 and c.temperature is None for c in runs)
    hot = _grid(temperatures=[None, 100])
    assert len(hot) == 96 * 2 + 4 and {c.temperature for c in hot} == {None, 100.0}


@pytest.mark.parametrize(
    "bad",
    [dict(backbone="RN50"), dict(class_names=["fixd"]), dict(class_counts=[8, 12]), dict(noise_rate=0.0)],
)
def test_lab_runs_rejects(lab_dir, bad):
    with pytest.raises(ValueError):
        _grid(**bad)


# ------------------------------------------------------------------------------- the cell table


def _runs(n_classes, pretrained, shots, heads, zero_shot, seeds=(1, 2), rate=0.5):
    """store.collect-shaped rows of one cell: heads = {method: [(clean, noisy, wrong fit), ...] per
    seed} (fractions), and the zero-shot run of the task and checkpoint (``zero_shot`` None: none)."""
    dataset = f"toy-objects-{n_classes}"
    base = dict(dataset=dataset, loss="ce", pretrained=pretrained, temperature=None)
    rows = []
    for method, per_seed in heads.items():
        for seed, (clean, noisy, fit) in zip(seeds, per_seed):
            for r, acc, f in ((0.0, clean, 0.0), (rate, noisy, fit)):
                run_id = f"{dataset}-{pretrained}-{shots}-{method}-{r}-{seed}"
                rows.append(
                    dict(
                        run_id=run_id,
                        method=method,
                        noise_rate=r,
                        seed=seed,
                        shots=shots,
                        test_acc=acc,
                        train_fit_noisy=f,
                        **base,
                    )
                )
    if zero_shot is not None:
        rows.append(
            dict(
                run_id=f"{dataset}-{pretrained}-zs",
                method="zeroshot",
                noise_rate=0.0,
                seed=1,
                shots=16,
                test_acc=zero_shot,
                train_fit_noisy=np.nan,
                **base,
            )
        )
    return rows


def test_cell_table_outcomes():
    a = _runs(
        8,
        "default",
        16,
        {"prompt": [(0.92, 0.80, 0.3), (0.88, 0.80, 0.3)], "classifier_r": [(0.8, 0.4, 0.9)] * 2},
        zero_shot=0.85,
    )
    b = _runs(  # Classifier-R loses nothing here: no ratio
        16, "default", 16, {"prompt": [(0.9, 0.85, 0.2)] * 2, "classifier_r": [(0.7, 0.7, 0.5)] * 2}, 0.6
    )
    t = lab.cell_table(pd.DataFrame(a + b))
    assert len(t) == 2 and list(t["n_classes"]) == [8, 16]
    assert set(t["class_names"]) == {"fixed"} and set(t["temperature"]) == {"ckpt"}
    assert set(t["checkpoint"]) == {"default"} and set(t["steps"]) == {lab.SHIPPED_STEPS}
    r = t.iloc[0]
    want = dict(
        clean=90,
        noisy=80,
        drop=10,
        ref_clean=80,
        ref_noisy=40,
        ref_drop=40,
        ratio=0.25,
        gain_zero_shot=5,
        zero_shot=85,
        wrong_fit=30,
        ref_wrong_fit=90,
        n_seeds=2,
        shots=16,
    )
    for k, v in want.items():
        assert r[k] == pytest.approx(v), k
    # seed 1 drops 12 points, seed 2 drops 8: every resample lies between them
    for name, lo, hi in (("drop", 8, 12), ("ratio", 0.2, 0.3), ("gain_zero_shot", 3, 7)):
        assert np.isfinite(r[f"{name}_lo"]) and np.isfinite(r[f"{name}_hi"])
        assert lo - 1e-9 <= r[f"{name}_lo"] < r[name] < r[f"{name}_hi"] <= hi + 1e-9, name
    r = t.iloc[1]
    assert r["drop"] == pytest.approx(5) and r["ref_drop"] == pytest.approx(0)
    assert np.isnan(r["ratio"]) and np.isnan(r["ratio_lo"]) and np.isnan(r["ratio_hi"])
    assert r["drop_lo"] == pytest.approx(5) and r["drop_hi"] == pytest.approx(5)
    assert r["gain_zero_shot"] == pytest.approx(30)
    assert lab.cell_table(pd.DataFrame(a + b), seed=0).equals(t)  # the bootstrap is seeded

    one = lab.cell_table(
        pd.DataFrame(
            _runs(
                8,
                "default",
                16,
                {"prompt": [(0.9, 0.8, 0.3)], "classifier_r": [(0.8, 0.4, 0.9)]},
                0.85,
                seeds=(1,),
            )
        )
    )
    r = one.iloc[0]
    assert r["n_seeds"] == 1 and r["drop"] == pytest.approx(10) and r["ratio"] == pytest.approx(0.25)
    for name in lab.INTERVALS:
        assert np.isnan(r[f"{name}_lo"]) and np.isnan(r[f"{name}_hi"])
    assert "no finished cells" in lab.show_cells(lab.cell_table(pd.DataFrame(columns=a[0].keys())))


def _claims_grid():
    rows = []
    for n in (8, 32):
        for shots in (4, 16):
            for ckpt, noisy in (("step500", 0.58), ("default", 0.78)):  # ratio 32/40 = 0.8 and 12/40 = 0.3
                heads = {  # three seeds alike: intervals of no width, verdicts by the values
                    "prompt": [(0.9, noisy, 0.3)] * 3,
                    "cls_tuning": [(0.9, noisy - 0.1, 0.5)] * 3,
                    "classifier_r": [(0.8, 0.4, 0.9)] * 3,
                }
                rows += _runs(
                    n, ckpt, shots, heads, 0.85 if shots == 4 else None, seeds=(1, 2, 3)
                )  # one zero-shot per task and checkpoint
    return pd.DataFrame(rows)


def test_lab_claims_on_a_known_table():
    t = lab.cell_table(_claims_grid())
    assert len(t) == 2 * 2 * 2 * 2  # classes x shots x checkpoints x class names
    fixed = t[t["class_names"] == "fixed"]
    assert np.allclose(fixed[fixed["checkpoint"] == "step500"]["ratio"], 0.8)
    assert np.allclose(fixed[fixed["checkpoint"] == "default"]["ratio"], 0.3)
    assert np.allclose(t["zero_shot"], 85.0)
    c = claims.evaluate(lab.lab_claims(t), t).set_index(claims.CLAIM_COLUMNS[0])
    by = {text.split(" ")[0]: row for text, row in c.iterrows()}
    assert list(by) == ["H1", "H2", "H3", "H4", "H5", "H6", "H7"]
    assert by["H1"]["ours"] == pytest.approx(0.5) and by["H1"]["verdict"] == "supported"
    assert by["H1"]["datasets"] == "4/4" and by["H1"]["ours 95% CI"] == "[0.50, 0.50]"
    assert by["H2"]["ours"] == pytest.approx(10) and by["H2"]["verdict"] == "supported"
    assert by["H2"]["datasets"] == "8/8"
    for h in ("H3", "H4"):  # no level of classes or shots changes the ratio here
        assert by[h]["ours"] == pytest.approx(0) and by[h]["verdict"] == "refuted"
    assert by["H5"]["ours"] == pytest.approx(60) and by["H5"]["verdict"] == "supported"
    assert by["H6"]["ours"] == pytest.approx(0.3) and by["H6"]["verdict"] == "supported"
    assert by["H6"]["datasets"] == "1/1"
    assert math.isnan(by["H7"]["ours"]) and by["H7"]["verdict"] == "n/a"  # one temperature only
    assert all(math.isnan(v) for v in c["paper"])
    two = lab.cell_table(_claims_grid().query("seed < 3"))  # two seeds: no usable interval
    c = claims.evaluate(lab.lab_claims(two), two)
    assert set(c["verdict"]) == {"inconclusive", "n/a"} and set(c["why"]) == {"2 seeds: no interval", ""}


def test_claim_over_worst():
    s = pd.Series([1.0, 3.0, -2.0, np.nan])
    mean, worst_gt, worst_lt = (
        claims.claim("m", "", lambda _: s, 0.0, decimals=2),
        claims.claim("w>", "", lambda _: s, 0.0, ">", decimals=2, over="worst"),
        claims.claim("w<", "", lambda _: s, 0.0, "<", decimals=2, over="worst"),
    )
    c = claims.evaluate([mean, worst_gt, worst_lt], pd.DataFrame({"x": [1]}))
    assert list(c["ours"]) == [pytest.approx(0.67), -2.0, 3.0]
    # no seeds behind these values: point verdicts; without its 3 the mean is -0.5: carried by one cell
    assert list(c["verdict"]) == ["inconclusive", "refuted", "refuted"]
    assert c["why"].iloc[0] == f"{claims.POINT}; {claims.CARRIED}"
    assert list(c["datasets"]) == ["2/3", "2/3", "1/3"]
    with pytest.raises(ValueError, match="over"):
        claims.claim("x", "", lambda _: s, 0.0, over="best")


# ------------------------------------------------------------------------------- pretraining


def test_steps_list():
    from ptnl.tools.toy.snapshots import _steps_list

    assert _steps_list("500,1500") == (500, 1500)
    assert _steps_list("1500,500,500") == (500, 1500)
    assert _steps_list("3000") == (3000,)
    for bad in ("a,b", "0", "500,-1", "", ","):
        with pytest.raises(argparse.ArgumentTypeError):
            _steps_list(bad)


def test_reachable_tokens():
    from ptnl.models.prompts import PLACEHOLDER
    from ptnl.tools.toy.pretrain import build_model
    from ptnl.tools.toy.snapshots import reachable_tokens

    tok = build_model("toy-rn", 0)[1]
    keep = reachable_tokens(tok, np.array([[1, 2]]))
    assert keep == sorted(set(keep))
    ids = set(keep)
    assert {1, 2, tok.sot_token_id, tok.eot_token_id} <= ids

    def words(text):
        t = tok([text])[0].tolist()
        return [i for i in t if i not in (0, tok.sot_token_id, tok.eot_token_id)]

    red_circle = words("red circle")
    assert len(red_circle) == 2 and set(red_circle) <= ids
    assert set(words(PLACEHOLDER)) <= ids
    assert set(words("a photo of a pink crescent.")) <= ids  # toy-objects-64's last class
    assert not set(words("zebra")) <= ids  # no toy text ever says it
    assert 50 < len(ids) < 1000


@pytest.mark.slow  # about a minute: 20 pretraining steps and two calibrations on the toy tasks
def test_pretrain_saves_shrunk_lab_snapshots(tmp_path):
    from safetensors import safe_open

    from ptnl.tools.toy.sanity import load_toy_model

    env = {**os.environ, "PTNL_CACHE": str(tmp_path / "cache"), "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "ptnl", "toy", "snapshots", "--backbone", "toy-rn", "--n-images", "256"]
    cmd += ["--steps", "20", "--save-at", "5,10", "--stop-at", "10", "--out-dir", str(tmp_path)]
    cmd += ["--no-eval", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, cwd=paths.REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "toy-rn.safetensors").exists() and not (tmp_path / "toy-rn.json").exists()
    lab_out = tmp_path / "lab"
    assert sorted(p.name for p in lab_out.iterdir()) == [
        "toy-rn-step10.json",
        "toy-rn-step10.safetensors",
        "toy-rn-step5.json",
        "toy-rn-step5.safetensors",
    ]
    for k in (5, 10):
        ckpt = lab_out / f"toy-rn-step{k}.safetensors"
        meta = json.loads(ckpt.with_suffix(".json").read_text())
        assert meta["step"] == k and meta["schedule_steps"] == 20
        assert meta["training"]["stopped_at"] == 10 and meta["training"]["n_images"] == 256
        assert meta["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert "zero_shot_test_acc" not in meta
        with safe_open(str(ckpt), framework="pt") as f:
            keys = set(f.keys())
            scale = f.get_tensor("logit_scale")
            rows = f.get_tensor(EMB + ".rows")
        assert EMB + ".rows" in keys and EMB + ".values" in keys and EMB not in keys
        assert len(rows) == meta["token_embedding_rows_kept"] < 1000
        assert scale.dtype == torch.float16
        assert float(scale.float().exp()) == pytest.approx(meta["temperature"]["shipped"], rel=0.01)
        model, _, _ = load_toy_model("toy-rn", ckpt)
        emb = model.token_embedding.weight
        assert emb.shape[0] == 49408
        assert int((emb.abs().sum(1) > 0).sum()) == len(rows)
        assert float(model.logit_scale.detach().exp()) == pytest.approx(
            meta["temperature"]["shipped"], rel=0.01
        )
    a = checkpoints.read_state_dict(lab_out / "toy-rn-step5.safetensors")
    b = checkpoints.read_state_dict(lab_out / "toy-rn-step10.safetensors")
    assert not torch.equal(a["text_projection"], b["text_projection"])  # 5 more steps moved it
