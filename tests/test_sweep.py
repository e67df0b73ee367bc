import json
import subprocess
import sys

import pytest
from procs import claim_as, dead_pid

from ptnl.core import paths
from ptnl.train import store, sweep
from ptnl.train.config import RunConfig
from ptnl.train.methods import base


@pytest.fixture
def fake_engine(monkeypatch):
    """engine.train_configs (what trains and stores a batch, under the claims the engine takes)
    replaced by bookkeeping: the sweep logic is what is tested here."""
    from ptnl.train import engine

    calls = []

    def train_configs(cfgs, experiment, device=None, progress=False):
        if any(c.seed == 666 for c in cfgs):
            raise KeyboardInterrupt
        calls.append([c.run_id for c in cfgs])
        out = {}
        for c in cfgs:
            assert store.claim_path(c, experiment).exists(), "trained without its claim"
            out[c.run_id] = {"test_acc": c.noise_rate}
            store.write_run(c, experiment, out[c.run_id])
        return out

    monkeypatch.setattr(engine, "train_configs", train_configs)
    return calls


def test_grid_product_order_and_dedup():
    cs = sweep.grid({"dataset": "DTD"}, {"noise_rate": [0, 0.5], "seed": [1, 2, 2]})
    assert [(c.noise_rate, c.seed) for c in cs] == [(0.0, 1), (0.0, 2), (0.5, 1), (0.5, 2)]
    union = sweep.grid({"dataset": "DTD"}, [{"seed": [1]}, {"seed": [1, 3], "loss_params.q": [0.7]}])
    assert [(c.seed, c.loss_params) for c in union] == [(1, {}), (1, {"q": 0.7}), (3, {"q": 0.7})]
    with pytest.raises(ValueError, match="list of values"):
        sweep.grid({"dataset": "DTD"}, {"seed": 1})
    with pytest.raises(ValueError, match="did you mean 'noise_rate'"):
        sweep.grid({"dataset": "DTD"}, {"noise": [0.5]})


def test_shards_partition_the_grid():
    cs = sweep.grid({"dataset": "DTD"}, {"seed": list(range(10))})
    parts = [sweep.take_shard(cs, (i, 3)) for i in range(3)]
    ids = [c.run_id for p in parts for c in p]
    assert sorted(ids) == sorted(c.run_id for c in cs) and len(set(ids)) == 10
    assert sweep.parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ValueError, match="shard"):
            sweep.parse_shard(bad)


def test_sweep_skips_done_and_resumes_after_interrupt(fresh_store, fake_engine):
    cs = sweep.grid({"dataset": "DTD"}, {"seed": [1, 2, 666, 4]})
    with pytest.raises(KeyboardInterrupt):
        sweep.sweep(cs, "exp", progress=False)
    assert [store.is_done(c, "exp") for c in cs] == [True, True, False, False]
    fake_engine.clear()
    cs[2] = cs[2].replace(seed=3)
    sweep.sweep(cs, "exp", progress=False)
    assert fake_engine == [[cs[2].run_id], [cs[3].run_id]]  # the two done runs were skipped
    assert len(store.collect("exp")) == 4


def test_group_batches_only_compatible_runs(fresh_store, fake_engine):
    base = {"dataset": "DTD", "backbone": "RN50"}
    cs = sweep.grid(base, {"seed": [1, 2, 3], "shots": [4, 8]})
    cs += [RunConfig(dataset="DTD", method="linear_probe")]
    sweep.sweep(cs, "g", group_size=2, progress=False)
    sizes = sorted(len(c) for c in fake_engine)
    assert sizes == [1, 1, 1, 2, 2]  # shots 4: (1,2),(3); shots 8: (1,2),(3); linear probe alone
    for call in fake_engine:
        shots = {next(c for c in cs if c.run_id == i).shots for i in call}
        assert len(shots) == 1


def test_cli_sweep_and_collect(fresh_store, tmp_path):
    spec = tmp_path / "g.yaml"
    spec.write_text("experiment: cli\nbase: {dataset: DTD}\ngrid:\n  noise_rate: [0.0, 0.5]\n")
    env_py = [sys.executable, "-m", "ptnl"]
    out = subprocess.run(
        [*env_py, "sweep", "--grid", str(spec), "--set", "seed=1,2", "--shard", "1/2", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    cfgs = [json.loads(line.split(" ", 1)[1]) for line in out]
    assert [(c["noise_rate"], c["seed"]) for c in cfgs] == [(0.0, 2), (0.5, 2)]
    bad = subprocess.run(
        [*env_py, "sweep", "--experiment", "x", "--set", "noise_rat=0.5"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "did you mean 'noise_rate'" in bad.stderr


def test_cli_run_flags_build_the_config():
    import argparse

    from ptnl.tools.cli import _add_config_flags, _config_from_args

    p = argparse.ArgumentParser()
    _add_config_flags(p)
    ns = p.parse_args(
        [
            "--dataset",
            "toy-shapes",
            "--noise-rate",
            "0.5",
            "--csc",
            "--pretrained",
            "null",
            "--loss-params",
            '{"q": 0.7}',
        ]
    )
    c = _config_from_args(ns)
    assert (c.dataset, c.noise_rate, c.csc, c.pretrained, c.loss_params) == (
        "toy-shapes",
        0.5,
        True,
        None,
        {"q": 0.7},
    )
    assert c.epochs == 50


def test_quiet_follows_env(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert sweep.quiet(True)
    monkeypatch.setenv("TQDM_DISABLE", "")
    assert not sweep.quiet(True) and sweep.quiet(False)
    assert paths.results_dir()  # env untouched otherwise


def test_cli_run_sweep_collect_in_process(fresh_store, use_dataset, tmp_path, monkeypatch, capsys):
    from ptnl.tools.cli import main
    from ptnl.tools.speed import register_tiny_clip, synthetic_dataset

    tiny = register_tiny_clip("ptnl-tiny-cli", tmp_path)
    use_dataset(synthetic_dataset(n_classes=3, train_per_class=4, test_per_class=2))
    common = ["--pretrained", "null", "--epochs", "1", "--shots", "2", "--n-ctx", "2"]
    argv = ["run", "--experiment", "cli", "--dataset", "toy-synthetic", "--backbone", tiny, *common]
    assert main([*argv, "--feature-mode", "center"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_train"] == 6 and out["feature_mode"] == "center"
    base = ["--base", "dataset=toy-synthetic", "--base", f"backbone={tiny}", "--base", "pretrained=null"]
    base += ["--base", "epochs=1", "--base", "shots=2", "--base", "n_ctx=2", "--base", "n_views=1"]
    assert main(["sweep", "--experiment", "cli", *base, "--set", "seed=1,2", "--group", "2"]) == 0
    csv = tmp_path / "cli.csv"
    assert main(["collect", "cli", "--csv", str(csv)]) == 0
    import pandas as pd

    df = pd.read_csv(csv)
    assert len(df) == 3 and sorted(df.group_size) == [1, 2, 2]
    assert main(["run", "--experiment", "cli", "--dataset", "toy-synthetic", "--noise-rate", "1.5"]) == 2
    assert "noise_rate" in capsys.readouterr().err


def test_cli_ratio_reports_drops_and_seed_intervals(fresh_store, capsys):
    from ptnl.tools.cli import main
    from ptnl.train import store

    # Clean 70 %; at 50 % noise prompt tuning drops 4 (seed 1) or 6 (seed 2), Classifier-R 20.
    drops = {("prompt", 1): 4.0, ("prompt", 2): 6.0, ("classifier_r", 1): 20.0, ("classifier_r", 2): 20.0}
    for (method, seed), d in drops.items():
        for rate, acc in ((0.0, 70.0), (0.5, 70.0 - d)):
            c = RunConfig(dataset="toy-shapes", backbone="toy-rn", method=method, noise_rate=rate, seed=seed)
            store.finish_run(c, "r", {"test_acc": acc / 100})
    store.finish_run(
        RunConfig(dataset="toy-shapes", backbone="toy-rn", method="zeroshot"), "r", {"test_acc": 0.69}
    )
    assert main(["ratio", "r"]) == 0
    out = capsys.readouterr().out
    assert "mean ratio 0.25; 95% interval over seeds 0.20 to 0.30" in out
    assert "clean prompt - zero-shot: mean gap +1.00 points" in out
    assert main(["ratio", "r", "--seeds", "1"]) == 0
    assert "mean ratio 0.20; 1 seed per dataset: no interval" in capsys.readouterr().out
    assert main(["ratio", "r", "--where", "epoch=50"]) == 2
    assert "'epoch' is not a field" in capsys.readouterr().err


# -- claims, failures and leftovers: several processes on one store ----------------------------------


def _wait_until(cond, timeout=60.0):
    import time

    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


def _in_thread(fn):
    import threading

    out = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


@pytest.fixture
def tiny_world(fresh_store, use_dataset, tmp_path, monkeypatch):
    """A tiny random CLIP and a synthetic dataset: real runs that take a fraction of a second."""
    from ptnl.tools.speed import register_tiny_clip, synthetic_dataset

    tiny = register_tiny_clip("ptnl-tiny-sweep", tmp_path)
    use_dataset(synthetic_dataset(n_classes=3, train_per_class=4, test_per_class=2))
    monkeypatch.setattr(store, "POLL_SECONDS", 0.05, raising=False)
    base = dict(dataset="toy-synthetic", backbone=tiny, pretrained=None, epochs=1, shots=2, n_ctx=2)
    return {**base, "feature_mode": "center", "batch_size": 4}


def _leftovers(experiment):
    root = paths.experiment_dir(experiment)
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.name[0] != ".")


def test_failed_runs_leave_nothing_in_the_store(tiny_world, monkeypatch):
    from ptnl.train import engine

    good = RunConfig(**tiny_world)
    with pytest.raises(Exception):  # noqa: B017 (whatever the loader raises)
        engine.run(good.replace(backbone="no-such-backbone"), "exp")
    with pytest.raises(ValueError):
        engine.run(good.replace(shots=50), "exp")  # more shots than the dataset has

    def boom(*a, **k):
        raise RuntimeError("mid-training")

    monkeypatch.setattr(base, "fit", boom)
    with pytest.raises(RuntimeError):
        engine.run(good, "exp")
    with pytest.raises(RuntimeError):
        engine.run_group([good, good.replace(seed=2)], "exp")
    assert _leftovers("exp") == [] and len(store.collect("exp")) == 0  # no run folder, no claim


def test_engine_run_waits_for_a_live_owner_and_takes_over_a_dead_ones(fresh_store, monkeypatch):
    import os

    from ptnl.train import engine

    monkeypatch.setattr(store, "POLL_SECONDS", 0.05, raising=False)
    trained = []

    def train_configs(cs, experiment, *a, **k):
        for c in cs:
            trained.append(c.seed)
            store.write_run(c, experiment, {"test_acc": 0.1})
        return {c.run_id: {"test_acc": 0.1} for c in cs}

    monkeypatch.setattr(engine, "train_configs", train_configs)
    a, b = RunConfig(dataset="DTD"), RunConfig(dataset="DTD", seed=2)
    claim = claim_as(a, "exp", os.getppid())  # a live process (pytest's parent) trains it
    t, out = _in_thread(lambda: engine.run(a, "exp"))
    t.join(0.5)
    assert t.is_alive() and not store.is_done(a, "exp")
    store.finish_run(a, "exp", {"test_acc": 0.9})  # ... and finishes
    claim.unlink()
    t.join(30)
    assert out == {"value": {"test_acc": 0.9}} and trained == []

    claim_as(b, "exp", dead_pid())
    assert engine.run(b, "exp") == {"test_acc": 0.1} and trained == [2]
    assert not store.claim_path(b, "exp").exists() and store.load_metrics(b, "exp") == {"test_acc": 0.1}


def test_run_group_leaves_a_claimed_run_to_its_owner(tiny_world):
    import os

    from ptnl.train import engine

    a, b = RunConfig(**tiny_world), RunConfig(**tiny_world, seed=2)
    claim = claim_as(b, "exp", os.getppid())
    t, out = _in_thread(lambda: engine.run_group([a, b], "exp"))
    _wait_until(lambda: store.is_done(a, "exp"))
    t.join(0.3)
    assert t.is_alive() and not store.is_done(b, "exp")
    store.finish_run(b, "exp", {"test_acc": 0.9})
    claim.unlink()
    t.join(30)
    assert out["value"][1] == {"test_acc": 0.9} and out["value"][0] == store.load_metrics(a, "exp")


def test_sweep_skips_runs_a_live_process_holds_then_waits_for_them(fresh_store, fake_engine, monkeypatch):
    import os

    monkeypatch.setattr(store, "POLL_SECONDS", 0.05, raising=False)
    cs = sweep.grid({"dataset": "DTD"}, {"seed": [1, 2, 3]})
    claim = claim_as(cs[0], "exp", os.getppid())
    t, out = _in_thread(lambda: sweep.sweep(cs, "exp", progress=False))
    _wait_until(lambda: store.is_done(cs[2], "exp"))
    t.join(0.3)
    assert t.is_alive() and fake_engine == [[cs[1].run_id], [cs[2].run_id]]  # went on with the others
    store.finish_run(cs[0], "exp", {"test_acc": 0.9})
    claim.unlink()
    t.join(30)
    assert out["value"] == [{"test_acc": 0.9}, {"test_acc": 0.0}, {"test_acc": 0.0}]
    assert fake_engine == [[cs[1].run_id], [cs[2].run_id]]


def test_sweep_takes_over_a_dead_processs_claim_and_cleans_its_leftovers(fresh_store, fake_engine):
    import os
    import time

    cs = sweep.grid({"dataset": "DTD"}, {"seed": [1, 2]})
    claim = claim_as(cs[1], "exp", dead_pid())
    root = paths.experiment_dir("exp")
    old, new = root / f".{cs[0].run_id}.99.ab.tmp", root / ".metrics.json.99.cd.tmp"
    old.mkdir()
    new.write_text("{")
    t = time.time() - store.STALE_TMP_SECONDS - 1
    os.utime(old, (t, t))
    assert len(sweep.sweep(cs, "exp", progress=False)) == 2
    assert fake_engine == [[cs[0].run_id], [cs[1].run_id]] and not claim.exists()
    assert not old.exists() and new.exists()  # a recent one may be a write in flight


def _sweep_child(configs, group_size, log, go, out):
    # Runs in a forked process: logs each run it trains (engine.prepare runs once per trained run).
    import os
    import time

    import torch

    from ptnl.train import engine

    # A forked child must not enter the OpenMP pool its parent started (libgomp then hangs).
    torch.set_num_threads(1)
    real = engine.prepare

    def prepare(cfg, *a, **k):
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {cfg.run_id}\n")
        time.sleep(0.1)  # long enough for the two sweeps to overlap
        return real(cfg, *a, **k)

    engine.prepare = prepare
    go.wait(60)
    out.write_text(json.dumps(sweep.sweep(configs, "race", group_size=group_size, progress=False)))


def test_two_processes_sweeping_one_grid_train_each_run_once(tiny_world, tmp_path):
    import collections
    import multiprocessing

    cs = sweep.grid(tiny_world, {"seed": [1, 2, 3, 4, 5, 6]})
    ctx = multiprocessing.get_context("fork")
    go, log = ctx.Event(), tmp_path / "trained.log"
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [ctx.Process(target=_sweep_child, args=(cs, g, log, go, o)) for g, o in zip((1, 2), outs)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    counts = collections.Counter(line.split()[1] for line in log.read_text().splitlines())
    assert counts == collections.Counter({c.run_id: 1 for c in cs})  # every run trained, none twice
    a, b = (json.loads(o.read_text()) for o in outs)
    assert a == b and all(m is not None for m in a)  # both sweeps return the complete grid
    assert len(store.collect("race")) == 6 and _leftovers("race") == sorted(
        p
        for c in cs
        for p in (c.run_id, f"{c.run_id}/config.json", f"{c.run_id}/done", f"{c.run_id}/metrics.json")
    )


@pytest.mark.slow
def test_workers_train_the_same_batches_to_the_same_numbers(tmp_path, monkeypatch):
    """Two worker processes take the batches a one-process sweep forms: every metric but the wall
    time is the same, and every run is trained once."""
    from ptnl.sections.common import config

    configs = [
        config("toy-shapes", "toy-rn", noise_rate=r, seed=s, epochs=3, shots=4)
        for r in (0.0, 0.5)
        for s in (1, 2, 3)
    ]
    configs.append(config("toy-shapes", "toy-rn", method="classifier_r", epochs=3, shots=4))
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "one"))
    one = sweep.sweep(configs, "exp", group_size=4, progress=False)
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "two"))
    two = sweep.sweep(configs, "exp", group_size=4, progress=False, workers=2)
    assert [{**m, "seconds": 0} for m in two] == [{**m, "seconds": 0} for m in one]
    assert sorted(p.name for p in (tmp_path / "two" / "exp").iterdir() if p.name[0] != ".") == sorted(
        c.run_id for c in configs
    )


def test_workers_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        sweep.sweep([], "exp", workers=0)
