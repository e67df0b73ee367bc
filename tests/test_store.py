import json
import math

import numpy as np
import pytest

from ptnl import paths, store
from ptnl.config import RunConfig


def test_write_then_collect(fresh_store):
    a = RunConfig(dataset="DTD", noise_rate=0.5, loss="gce", loss_params={"q": 0.7})
    b = a.replace(seed=2, loss_params={})
    store.start_run(a, "exp")
    assert not store.is_done(a, "exp") and store.load_metrics(a, "exp") is None
    store.finish_run(
        a, "exp", {"test_acc": np.float32(0.5), "train_loss": np.array([1.0, 0.5]), "r": math.nan}
    )
    store.finish_run(b, "exp", {"test_acc": 0.25, "train_loss": [2.0, 1.0]})
    store.start_run(a.replace(seed=3), "exp")  # unfinished: not collected
    d = store.run_dir(a, "exp")
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "done", "metrics.json"]  # no tmp files left
    assert json.loads((d / "config.json").read_text()) == a.to_dict()
    assert store.load_metrics(a, "exp") == {"test_acc": 0.5, "train_loss": [1.0, 0.5], "r": None}

    df = store.collect("exp")
    assert len(df) == 2 and set(df.run_id) == {a.run_id, b.run_id}
    row = df.set_index("run_id").loc[a.run_id]
    assert row["loss_params.q"] == 0.7 and row["noise_rate"] == 0.5 and row["train_loss"] == [1.0, 0.5]
    assert math.isnan(df.set_index("run_id").loc[b.run_id]["loss_params.q"])


def test_collect_keeps_config_field_when_a_metric_shares_its_name(fresh_store):
    a = RunConfig(dataset="DTD", grad_ratio=True)
    store.finish_run(a, "exp", {"test_acc": 0.5, "grad_ratio": [1.5, 1.2], "seed": "metric"})
    row = store.collect("exp").iloc[0]
    assert row["grad_ratio"] is True or row["grad_ratio"] == True  # noqa: E712 (numpy bool)
    assert row["metrics.grad_ratio"] == [1.5, 1.2] and row["seed"] == 1 and row["metrics.seed"] == "metric"


def test_restart_clears_done(fresh_store):
    a = RunConfig(dataset="DTD")
    store.finish_run(a, "exp", {"test_acc": 1.0})
    assert store.is_done(a, "exp")
    store.start_run(a, "exp")
    assert not store.is_done(a, "exp")


def test_tampered_config_is_caught(fresh_store):
    a = RunConfig(dataset="DTD")
    d = store.finish_run(a, "exp", {"test_acc": 1.0})
    (d / "config.json").write_text(json.dumps(a.replace(seed=9).to_dict()))
    with pytest.raises(ValueError, match="does not match"):
        store.load_metrics(a, "exp")


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "x.json"
    store.atomic_write_json(p, {"a": 1})

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.atomic_write_json(p, {"a": Boom()})
    assert json.loads(p.read_text()) == {"a": 1}
    assert [q.name for q in tmp_path.iterdir()] == ["x.json"]


def test_collect_missing_and_empty(fresh_store):
    with pytest.raises(FileNotFoundError, match="no experiment"):
        store.collect("nope")
    paths.experiment_dir("empty").mkdir(parents=True)
    df = store.collect("empty")
    assert len(df) == 0 and "noise_rate" in df.columns
