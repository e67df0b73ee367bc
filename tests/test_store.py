import json
import math

import numpy as np
import pytest
from procs import claim_as, dead_pid

from ptnl.core import paths
from ptnl.train import store
from ptnl.train.config import RunConfig


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
    assert a.identity_dict()["temperature"] is None  # every field is hashed, but the file names
    t = a.replace(temperature=100.0)
    assert t.identity_dict()["temperature"] == 100.0 and t.run_id != a.run_id
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


def test_write_run_appears_whole_and_replaces_an_unfinished_folder(fresh_store):
    a = RunConfig(dataset="DTD")
    store.start_run(a, "exp")  # a folder an interrupted in-place writer left
    d = store.write_run(a, "exp", {"test_acc": 0.5}, files={"prompt.pt": b"ctx"})
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "done", "metrics.json", "prompt.pt"]
    assert store.load_metrics(a, "exp") == {"test_acc": 0.5} and (d / "prompt.pt").read_bytes() == b"ctx"
    assert [p.name for p in d.parent.iterdir()] == [a.run_id]  # no temporary sibling left

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    b = a.replace(seed=2)
    with pytest.raises(RuntimeError):
        store.write_run(b, "exp", {"test_acc": Boom()})
    assert [p.name for p in d.parent.iterdir()] == [a.run_id]  # nothing of b, no temporary folder
    assert not store.is_done(b, "exp")


def test_claims_are_exclusive_and_stale_ones_taken_over(fresh_store):
    import os

    a, b, c, e = (RunConfig(dataset="DTD", seed=s) for s in (1, 2, 3, 4))
    assert store.claim(a, "exp") and store.claim(a, "exp")  # this process holds it, however often asked
    rec = json.loads(store.claim_path(a, "exp").read_text())
    assert rec["pid"] == os.getpid() and rec["host"] == store.HOST and rec["started"] > 0
    store.release(a, "exp")
    assert not store.claim_path(a, "exp").exists()

    live = claim_as(b, "exp", os.getppid())  # pytest's parent: alive, and not us
    assert not store.claim(b, "exp")
    store.release(b, "exp")  # someone else's claim stays
    assert json.loads(live.read_text())["pid"] == os.getppid() and "pid" in store.holder(b, "exp")
    claim_as(c, "exp", dead_pid(), host="elsewhere")  # another host's pid says nothing here
    assert not store.claim(c, "exp")

    claim_as(e, "exp", dead_pid())  # its process is gone: taken over
    assert store.claim(e, "exp")
    assert json.loads(store.claim_path(e, "exp").read_text())["pid"] == os.getpid()


def test_an_empty_claim_is_stale_only_once_old(fresh_store):
    import os
    import time

    a = RunConfig(dataset="DTD")
    p = store.claim_path(a, "exp")
    p.parent.mkdir(parents=True)
    p.write_text("")  # created, its record not written yet
    assert not store.claim(a, "exp")
    old = time.time() - store.STUCK_SECONDS - 5
    os.utime(p, (old, old))  # its writer died between create and write
    assert store.claim(a, "exp")


def test_clean_removes_old_temporary_files_and_dead_claims_only(fresh_store):
    import os
    import time

    a, b = RunConfig(dataset="DTD"), RunConfig(dataset="DTD", seed=2)
    d = store.write_run(a, "exp", {"test_acc": 1.0})
    root = d.parent
    unfinished = store.start_run(RunConfig(dataset="DTD", seed=3), "exp")  # killed while writing in place
    old_file, new_file = root / ".x.json.123.ab.tmp", root / ".y.tmp"
    old_in_run = unfinished / ".metrics.json.123.cd.tmp"
    old_dir = root / f".{b.run_id}.123.ef.tmp"
    old_dir.mkdir()
    (old_dir / "config.json").write_text("{}")
    for p in (old_file, old_in_run, new_file):
        p.write_text("half")
    t = time.time() - store.STALE_TMP_SECONDS - 5
    for p in (old_file, old_in_run, old_dir):
        os.utime(p, (t, t))
    dead = claim_as(b, "exp", dead_pid())
    live = claim_as(a, "exp", os.getppid())
    guard = dead.with_name(dead.name + ".takeover")
    guard.write_text("")
    os.utime(guard, (t, t))
    store.clean("exp")
    assert not old_file.exists() and not old_in_run.exists() and not old_dir.exists()
    assert not dead.exists() and not guard.exists()
    assert new_file.exists() and live.exists()  # possibly a write in flight; a live owner
    assert store.is_done(a, "exp") and len(store.collect("exp")) == 1
    store.clean("never-run")  # no folder: nothing to do, nothing created
    assert not paths.experiment_dir("never-run").exists()
