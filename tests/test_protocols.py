"""Noise protocols beyond ptnl's relabelling (PTNL's sampler) and noise manifests (export, re-train)."""

import math
import random

import numpy as np
import pytest

from ptnl.data import get_dataset
from ptnl.data.manifest import COLUMNS, read_manifest, write_manifest
from ptnl.data.protocols import ptnl_fewshot
from ptnl.train import engine
from ptnl.train.config import RunConfig


def _ptnl_literal(labels, shots, num_fp, seed):
    """PTNL's sampler as its utils.py walks it: paths, a dict path -> label, halves per class."""
    paths = np.array([f"img{i}" for i in range(len(labels))])
    by_class = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    tp, fp_all = {}, []
    for c in sorted(by_class):
        cut = int(math.ceil(len(by_class[c]) * 0.5))
        tp[c] = by_class[c][:cut]
        fp_all.extend(by_class[c][cut:])
    fp_set, chosen, out = set(fp_all), set(), {}
    rng, py = np.random.default_rng(seed=seed), random.Random(seed)
    for c in sorted(by_class):
        pool = fp_set.difference(tp[c], by_class[c][len(tp[c]) :], chosen)
        fp = py.choices(list(pool), k=num_fp)
        chosen.update(fp)
        cls = paths[tp[c]]
        cls = cls[rng.choice(len(cls), size=shots, replace=len(cls) < shots)]
        for i in range(num_fp):
            cls[i] = paths[fp][i]
        for p in cls:
            out[str(p)] = c
    return out


@pytest.mark.parametrize("rate", [0.0, 0.125, 0.5])
@pytest.mark.parametrize("seed", [1, 3])
def test_ptnl_sampler_is_ptnls_draw(rate, seed):
    labels = np.repeat(np.arange(6), [40, 33, 20, 9, 40, 25])  # class 3: 5 clean candidates < K
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]
    idx, nl = ptnl_fewshot(labels, 6, 16, rate, seed)
    expect = _ptnl_literal(labels, 16, int(rate * 16), seed)
    assert [f"img{i}" for i in idx] == list(expect)
    assert nl.noisy.tolist() == list(expect.values())
    assert np.array_equal(nl.true, labels[idx])


def test_ptnl_sampler_counts_and_halves():
    ds = get_dataset("toy-shapes")
    y = ds.train.labels
    idx, nl = ptnl_fewshot(y, ds.n_classes, 16, 0.25, 2)
    for c in range(ds.n_classes):
        members = np.flatnonzero(y == c)
        first = set(members[: math.ceil(len(members) / 2)].tolist())
        mine = idx[nl.noisy == c]
        wrong = mine[nl.is_noisy[nl.noisy == c]]
        assert len(mine) <= 16 and len(wrong) <= 4  # duplicates collapse, never more
        assert set(mine[~nl.is_noisy[nl.noisy == c]].tolist()) <= first  # clean: first half only
        for i in wrong:  # donors: another class's second half
            other = np.flatnonzero(y == y[i])
            assert i in set(other[math.ceil(len(other) / 2) :].tolist())
    assert len(set(idx.tolist())) == len(idx)  # no image twice, under any label
    again = ptnl_fewshot(y, ds.n_classes, 16, 0.25, 2)
    assert np.array_equal(again[0], idx) and np.array_equal(again[1].noisy, nl.noisy)


def test_ptnl_sampler_clean_draw_does_not_depend_on_rate():
    ds = get_dataset("toy-shapes")
    i0, _ = ptnl_fewshot(ds.train.labels, ds.n_classes, 8, 0.0, 1)
    i1, n1 = ptnl_fewshot(ds.train.labels, ds.n_classes, 8, 0.25, 1)
    # The numpy stream only draws the clean shots: the clean survivors sit where they sat at rate 0.
    kept = set(i1[~n1.is_noisy].tolist())
    assert kept <= set(i0.tolist())


def test_ptnl_kind_runs_and_groups_alone():
    a = RunConfig(dataset="toy-shapes", backbone="toy-rn", noise_kind="ptnl", noise_rate=0.25)
    b = a.replace(noise_rate=0.5)
    assert engine.group_key(a) != engine.group_key(b)  # the images differ with the rate
    assert engine.group_key(a) == engine.group_key(a.replace(loss="gce"))
    c = RunConfig(dataset="toy-shapes", backbone="toy-rn", noise_rate=0.25)
    assert engine.group_key(c) == engine.group_key(c.replace(noise_rate=0.5, seed=3))


def _tiny(**kw):
    return RunConfig(dataset="toy-shapes", backbone="toy-rn", shots=2, epochs=2, **kw)


def test_manifest_round_trip_trains_the_same_run(tmp_path):
    cfg = _tiny(noise_rate=0.5)
    path = engine.export_manifest(cfg, tmp_path / "m.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 1 + 2 * 8
    again = cfg.replace(noise_kind="manifest", noise_rate=0.0, noise_file=str(path))
    assert again.run_id != cfg.run_id
    m1, m2 = engine.run(cfg), engine.run(again)
    assert {k: v for k, v in m1.items() if k != "seconds"} == {k: v for k, v in m2.items() if k != "seconds"}
    assert m1["n_noisy"] == 8


def test_manifest_content_enters_the_run_id(tmp_path):
    ds = get_dataset("toy-shapes")
    r = engine.prepare(_tiny(noise_rate=0.5), dataset=ds)
    p = write_manifest(tmp_path / "m.csv", ds, r.train_idx, r.labels)
    cfg = _tiny(noise_kind="manifest", noise_file=str(p))
    before = cfg.run_id
    text = p.read_text().splitlines()
    first = text[1].split(",")
    first[3] = str((int(first[3]) + 1) % 8)
    p.write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    assert cfg.run_id != before


def test_manifest_errors(tmp_path):
    ds = get_dataset("toy-shapes")
    with pytest.raises(FileNotFoundError, match="noise export"):
        read_manifest(tmp_path / "none.csv", ds)
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,image_path,true_label\n0,x,0\n")
    with pytest.raises(ValueError, match="given_label"):
        read_manifest(bad, ds)
    bad.write_text(f"sample_id,image_path,true_label,given_label\n0,{ds.train.refs[1]},0,0\n")
    with pytest.raises(ValueError, match="another split"):
        read_manifest(bad, ds)
    bad.write_text(f"sample_id,image_path,true_label,given_label\n0,{ds.train.refs[0]},0,99\n")
    with pytest.raises(ValueError, match="lie in"):
        read_manifest(bad, ds)
    with pytest.raises(ValueError, match="go together"):
        _tiny(noise_kind="manifest")
    with pytest.raises(ValueError, match="go together"):
        _tiny(noise_file="x.csv")


def test_noise_export_cli(tmp_path, capsys):
    from ptnl.tools.cli import main

    out = tmp_path / "m.csv"
    args = ["noise", "export", "--out", str(out), "--dataset", "toy-shapes", "--backbone", "toy-rn"]
    assert main([*args, "--shots", "2", "--noise-rate", "0.5"]) == 0
    assert out.read_text().startswith(",".join(COLUMNS))
    assert main([*args, "--noise-kind", "nonsense"]) == 2
    assert "noise_kind" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["nlprompt_sym", "nlprompt_asym"])
def test_pooled_noise_exact_count_nested_never_true(kind):
    from ptnl.data.protocols import pooled_noise

    true = np.repeat(np.arange(5), 7)  # N = 35
    prev = None
    for rate in (0.125, 0.25, 0.5, 0.75):
        nl = pooled_noise(true, 5, kind, rate, seed=4)
        assert nl.n_noisy == int(rate * 35)  # NLPrompt's int(r * N), pooled over classes
        assert not np.any(nl.noisy[nl.is_noisy] == true[nl.is_noisy])
        if kind == "nlprompt_asym":
            assert np.array_equal(nl.noisy[nl.is_noisy], (true[nl.is_noisy] + 1) % 5)
        if prev is not None:  # nested: every sample noisy at a lower rate keeps its wrong label
            assert np.array_equal(nl.noisy[prev.is_noisy], prev.noisy[prev.is_noisy])
        prev = nl
    assert pooled_noise(true, 5, kind, 0.0, 4).n_noisy == 0


def _xia_reference(n, x, labels, k, seed):
    """Xia et al.'s generator as their tools.py runs it: numpy's global stream, torch rows."""
    import torch
    from scipy import stats

    np.random.seed(seed)
    q = stats.truncnorm((0 - n) / 0.1, (1 - n) / 0.1, loc=n, scale=0.1).rvs(len(labels))
    w = torch.FloatTensor(np.random.randn(k, x.shape[1], k))
    rows = []
    for i, y in enumerate(labels):
        a = torch.from_numpy(x[i : i + 1]).mm(w[y]).squeeze(0)
        a[y] = -float("inf")
        a = float(q[i]) * torch.softmax(a, dim=0)
        a[y] += 1 - float(q[i])
        rows.append(a)
    p = torch.stack(rows).numpy()
    return np.array([np.random.choice(k, p=p[i]) for i in range(len(labels))])


def test_instance_noise_is_xias_generator():
    from ptnl.data.protocols import instance_noise

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(40, 48)).astype(np.float32)
    true = np.repeat(np.arange(4), 10)
    nl = instance_noise(true, 4, 0.4, 3, x)
    ref = _xia_reference(0.4, x, true, 4, 3)
    assert np.array_equal(nl.noisy, ref)  # the same draws in the same order
    assert 0.2 < nl.actual_rate < 0.6
    assert instance_noise(true, 4, 0.0, 3, x).n_noisy == 0


def test_instance_kind_on_toy_images():
    cfg = _tiny(noise_kind="instance", noise_rate=0.5)
    r = engine.prepare(cfg)
    again = engine.prepare(cfg)
    assert np.array_equal(r.labels.noisy, again.labels.noisy)
    assert r.labels.n_noisy > 0 and len(r.labels) == 16


def test_real_noisy_labels_train_as_given_and_score_only_known(tmp_path):
    import dataclasses

    from ptnl.data import register_dataset, unregister_dataset
    from ptnl.data.base import Split

    toy = get_dataset("toy-shapes")
    web = toy.train.labels.copy()
    web[::5] = (web[::5] + 1) % toy.n_classes  # every 5th image carries a wrong "web" label
    truth = toy.train.labels.copy()
    truth[1::3] = -1  # a third of the truth unknown, as most of Food-101N
    ds = dataclasses.replace(
        toy,
        name="toy-fake-web",
        train=Split(toy.train.refs, web, toy.train.image_loader),
        train_true_labels=truth,
    )
    register_dataset(ds)
    try:
        cfg = RunConfig(dataset="toy-fake-web", backbone="toy-rn", shots=4, epochs=1)
        r = engine.prepare(cfg)
        assert np.array_equal(r.labels.noisy, web[r.train_idx])  # trained on the labels as shipped
        known = truth[r.train_idx] >= 0
        assert r.labels.n_noisy == int((web[r.train_idx] != truth[r.train_idx])[known].sum())
        m = engine.run(cfg)
        assert m["n_truth_unknown"] == int((~known).sum()) > 0
        with pytest.raises(ValueError, match="real noisy labels"):
            engine.prepare(cfg.replace(noise_rate=0.25))
        with pytest.raises(ValueError, match="PTNL's sampler"):
            engine.prepare(cfg.replace(noise_kind="ptnl"))
        p = engine.export_manifest(cfg, tmp_path / "web.csv")
        idx, nl = read_manifest(p, ds)
        assert np.array_equal(nl.true, r.labels.true) and np.array_equal(nl.is_noisy, r.labels.is_noisy)
    finally:
        unregister_dataset("toy-fake-web")
