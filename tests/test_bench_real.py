"""The bench's methods in real mode: RN50 with random weights on fake Food-101N and CIFAR-10N trees in
their shipped layouts (tests/test_noisy_sets.py writes them), end to end through the engine."""

import json

import numpy as np
import pytest
from test_noisy_sets import write_cifar10, write_food101n

from ptnl.data.manifest import read_manifest
from ptnl.sections import beyond as B
from ptnl.train import engine
from ptnl.train.config import RunConfig

REAL = dict(backbone="RN50", pretrained=None, shots=2, epochs=2, n_views=1, batch_size=4)


@pytest.fixture
def data_root(tmp_path, monkeypatch, fresh_store):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("PTNL_DATA", str(root))
    return root


@pytest.mark.slow
def test_bench_methods_train_on_food101n_web_labels(data_root):
    write_food101n(data_root)
    cfgs = B.bench_runs(
        datasets=[],
        real_noise_datasets=["Food101N"],
        protocols={"ptnl": [0.5]},
        seeds=[1],
        **{k: v for k, v in REAL.items() if k in ("backbone", "pretrained", "shots", "epochs")},
    )
    assert {c.method for c in cfgs} == {"zeroshot", *(m for m, _ in B.BENCH_METHODS), *B.SELECTOR_METHODS}
    for method in ("nlprompt", "joapr", "select_prompt"):
        m = engine.run(RunConfig(dataset="Food101N", method=method, **REAL))
        assert 0.0 <= m["test_acc"] <= 1.0 and m["n_classes"] == 3 and m["n_train"] == 6
        assert m["n_truth_unknown"] > 0  # most web labels are unverified, as in Food-101N


@pytest.mark.slow
def test_cifar10n_worse_labels_and_their_manifest(data_root, tmp_path):
    write_cifar10(data_root, per_batch=4)  # 20 train images, 2 a class
    cfg = RunConfig(dataset="CIFAR10N-worse", method="nlprompt_ot_ce", **{**REAL, "shots": 1})
    r = engine.prepare(cfg)
    assert r.labels.known.all() and r.labels.n_noisy == int((r.labels.noisy != r.labels.true).sum()) > 0
    m = engine.run(cfg)
    assert np.isfinite(m["selection_noise_auroc"]) or m["n_noisy"] in (0, m["n_train"])
    path = engine.export_manifest(cfg, tmp_path / "worse.csv")
    idx, labels = read_manifest(path, r.dataset)
    assert np.array_equal(idx, r.train_idx) and np.array_equal(labels.noisy, r.labels.noisy)
    again = engine.run(cfg.replace(noise_kind="manifest", noise_file=str(path)))
    same = [json.dumps({k: v for k, v in d.items() if k != "seconds"}, sort_keys=True) for d in (again, m)]
    assert same[0] == same[1]  # NaN (no clean sample to rank against) equal to NaN
