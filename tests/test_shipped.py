"""The shipped toy results (results/toy/) are the toy set's runs, and they are proven by retraining.

The fast tests check that the shipped store holds exactly the runs the toy set's notebooks read,
each one whole and filed under its config's hash, and that the docs say what the committed
notebooks show. The slow test retrains a sample of shipped runs from scratch (every method the
toy set uses, a run that was trained in a batched group, visual fine-tuning, UPL members) and sorts
each into identical / within float rounding / moved (``shipped.classify``): under the pinned numeric
path every run must agree to rounding; elsewhere the measured amplifiers (``AMPLIFYING``) are held
to a stated bound in test accuracy. A tampered shipped accuracy must fail the check.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from ptnl.core import numerics, paths
from ptnl.data.labels import PSEUDO_KINDS
from ptnl.tools import docs, shipped
from ptnl.train import engine, ensemble, store
from ptnl.train.config import RunConfig
from ptnl.train.methods.prompt import PROMPT_FILE
from ptnl.train.sweep import sweep

SHIPPED = paths.shipped_results_dir()


def _runs() -> dict[str, tuple[object, dict]]:
    out = {}
    for d in sorted(SHIPPED.iterdir()):
        if d.name[0] == "." or not d.is_dir():
            continue
        cfg = shipped.config_from_dict(json.loads((d / store.CONFIG_FILE).read_text()))
        out[d.name] = (cfg, json.loads((d / store.METRICS_FILE).read_text()))
    return out


def test_shipped_store_holds_exactly_the_toy_sets_runs():
    folders = {d.name for d in SHIPPED.iterdir() if d.name[0] != "."}
    planned = shipped.planned()
    assert len(planned) > 600
    assert sorted(set(planned) - folders)[:3] == [], "runs the toy set reads are not shipped: `make ship`"
    assert sorted(folders - set(planned))[:3] == [], "shipped runs no notebook reads: `make ship`"
    for rid, (cfg, _) in _runs().items():
        assert cfg.run_id == rid, f"{rid}/config.json hashes to {cfg.run_id}"
        assert (SHIPPED / rid / store.DONE_FILE).is_file()
        if _member(cfg):  # the ensemble reads each member's trained context
            assert (SHIPPED / rid / PROMPT_FILE).is_file(), rid


def test_docs_say_what_the_committed_notebooks_show():
    for path, text in docs.build().items():
        assert path.read_text() == text, f"{path.name} is stale: run `make docs`"


def test_committed_notebooks_carry_their_figures_as_images():
    for nb in sorted((paths.REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        shown = [c for c in cells if c["cell_type"] == "code" and "display(fig" in "".join(c["source"])]
        images = [c for c in shown if any("image/png" in o.get("data", {}) for o in c["outputs"])]
        assert len(images) == len(shown), f"{nb.name}: a figure is not stored as an image (`make refs`)"
        injected = [c for c in cells if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
        assert injected and 'experiment = "toy"' in "".join(injected[0]["source"]), nb.name


def test_with_training_off_a_missing_run_stops_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path))
    monkeypatch.setenv(store.NO_TRAIN_VAR, "1")
    cfg = RunConfig(dataset="toy-shapes", backbone="toy-rn", epochs=1, shots=1)
    with pytest.raises(store.TrainingOff, match=r"PTNL_NO_TRAIN is set.*make ship"):
        sweep([cfg], "toy", progress=False)
    assert not (tmp_path / "toy" / ".claims" / f"{cfg.run_id}.claim").exists()


def _member(cfg) -> bool:
    """A UPL ensemble's member: prompt tuning on zero-shot pseudo-labels."""
    return cfg.noise_kind in PSEUDO_KINDS


def _method(cfg) -> str:
    """What a run is shown and bounded as: a member as its ensemble's method (``upl``, ...)."""
    return ensemble.method_of(cfg) if _member(cfg) else cfg.method


def _sample(runs):
    """Per method the shipped run that took least time, plus the quickest run that trained in a
    batched group (the shipped ``seconds`` are data: the same sample every time)."""
    by_method, grouped = {}, None
    for rid, (cfg, m) in sorted(runs.items(), key=lambda kv: (kv[1][1]["seconds"], kv[0])):
        by_method.setdefault(_method(cfg), rid)
        if grouped is None and m.get("group_size", 1) > 1 and not _member(cfg):
            grouped = rid
    return sorted(set(by_method.values()) | {grouped}), set(by_method)


def _check(theirs: dict, ours: dict, rid: str, method: str) -> str:
    """A retrained run against its shipped one: identical or within rounding, or, for the methods
    that amplify rounding (``shipped.AMPLIFYING``, measured on other kernel paths), its test
    accuracy within their bound. On the pinned path of the machine that made the shipped runs,
    every run of the toy set came back identical."""
    cls, what = shipped.classify(theirs, ours)
    d = ours["test_acc"] - theirs["test_acc"]
    assert shipped.within_bound(method, cls, d), (
        f"{rid} ({method}) moved: {what}; test accuracy by {d:+.4f} "
        f"(bound {shipped.AMPLIFYING.get(method, 'none: it must agree to rounding')})"
    )
    return cls


def _retrain(cfg):
    return engine.train_and_evaluate(cfg, device="cpu")  # a UPL member too: an ordinary run


@pytest.fixture
def pinned_threads():
    """The pinned path's thread count for the retrain, whatever earlier tests in this process set
    (the thread count changes the order of float reductions, and through it the numbers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(numerics.THREADS["OMP_NUM_THREADS"]))
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_sample_of_shipped_runs_retrains_to_the_same_numbers(capsys, pinned_threads):
    runs = _runs()
    sample, methods = _sample(runs)
    assert {"prompt", "visual_ft", "linear_probe", "upl", "robust_upl_gce"} <= methods
    # Two spawned processes, one a core, each on the pinned path from its import (as the workers of
    # the main job): the same numbers as one process gives, in half the time.
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        ours = dict(zip(sample, pool.map(_retrain, [runs[rid][0] for rid in sample])))
    classes = {}
    for rid in sample:
        cfg, theirs = runs[rid]
        classes[rid] = _check(theirs, ours[rid], rid, _method(cfg))
    with capsys.disabled():
        counts = {c: sum(v == c for v in classes.values()) for c in shipped.CLASSES}
        print(f"\nretrain sample ({numerics.describe()['path']} numeric path): {counts}")
        for rid, cls in classes.items():
            if cls != "identical":
                print(f"  {rid} ({_method(runs[rid][0])}): {cls}")


@pytest.mark.slow
def test_a_tampered_shipped_accuracy_fails_the_retrain_check(pinned_threads):
    runs = _runs()
    # A method that agrees to rounding on every kernel path measured (AMPLIFYING's are held to a
    # bound instead): one more test image right must be caught.
    rid = next(r for r in _sample(runs)[0] if runs[r][0].method == "classifier_r")
    cfg, theirs = runs[rid]
    ours = _retrain(cfg)
    assert _check(theirs, ours, rid, cfg.method) in ("identical", "rounding")
    tampered = dict(theirs, test_acc=theirs["test_acc"] + 0.0125)  # one more test image right
    with pytest.raises(AssertionError, match="moved: test_acc"):
        _check(tampered, ours, rid, cfg.method)


def _write(root, rid, metrics, extra=None):
    d = root / "toy" / rid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"seed": 1, "id": rid}))
    (d / "metrics.json").write_text(json.dumps(metrics))
    for name, data in (extra or {}).items():
        (d / name).write_bytes(data)
    (d / "done").write_text("")


def test_compare_sorts_runs_into_identical_rounding_and_moved(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _write(ours, "a", {"test_acc": 0.5, "seconds": 1.0, "numeric_path": {"cpu": "x"}})
    _write(theirs, "a", {"test_acc": 0.5, "seconds": 9.0, "numeric_path": {"cpu": "y"}})  # provenance
    _write(ours, "b", {"test_acc": 0.5, "train_loss": [1.0, 0.7000001]})
    _write(theirs, "b", {"test_acc": 0.5, "train_loss": [1.0, 0.7]})  # reordered sums
    _write(ours, "c", {"test_acc": 0.5, "train_loss": [1.0]})
    _write(theirs, "c", {"test_acc": 0.5, "train_loss": [1.5]})  # a real difference
    _write(ours, "e", {"test_acc": 0.4875, "train_loss": [1.0]})
    _write(theirs, "e", {"test_acc": 0.5, "train_loss": [1.0]})  # the accuracy moved
    _write(theirs, "d", {"test_acc": 0.5})
    out = shipped.compare_runs(ours, theirs / "toy", ids=["a", "b", "c", "d", "e"])
    assert [r[0] for r in out["identical"]] == ["a"]
    assert [r[:2] for r in out["rounding"]] == [("b", "train_loss")]
    assert [r[:2] for r in out["moved"]] == [("c", "train_loss"), ("e", "test_acc")]
    assert out["moved"][1][2] == pytest.approx(-0.0125) and out["missing"] == ["d"]
    first = shipped.report(out, None).splitlines()[0]
    assert "5 in all: 1 identical, 1 within float rounding" in first and first.endswith("2 moved")


def test_classify_holds_a_changed_digit_to_rounding_and_a_changed_accuracy_to_moved():
    base = {"test_acc": 0.775, "train_loss": [0.9, 0.5], "n_train": 64, "weights_id": "toy:ab"}
    assert shipped.classify(base, dict(base, seconds=3.0))[0] == "identical"
    assert shipped.classify(base, dict(base, train_loss=[0.9, 0.5 + 1e-9]))[0] == "rounding"
    assert shipped.classify(base, dict(base, train_loss=[0.9, 0.5 + 1e-3]))[0] == "moved"
    assert shipped.classify(base, dict(base, test_acc=0.7625))[0] == "moved"
    assert shipped.classify(base, dict(base, n_train=63))[0] == "moved"
    assert shipped.classify(base, dict(base, weights_id="toy:cd"))[0] == "moved"


def test_update_swaps_in_the_runs_and_refuses_an_unfinished_store(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _write(ours, "a", {"test_acc": 0.75})
    _write(theirs, "old", {"test_acc": 0.5})
    with pytest.raises(FileNotFoundError, match="1 of the toy set's 2 runs are not done"):
        shipped.update(ours, theirs / "toy", ids=["a", "b"])
    assert [p.name for p in (theirs / "toy").iterdir()] == ["old"]  # untouched
    assert shipped.update(ours, theirs / "toy", ids=["a"]) == 1
    assert sorted(p.name for p in theirs.iterdir()) == ["toy"] and [
        p.name for p in (theirs / "toy").iterdir()
    ] == ["a"]


@pytest.mark.slow
def test_nbval_fails_on_a_tampered_shipped_accuracy(tmp_path):
    """nbval holds the committed notebooks to the shipped runs: one accuracy changed in a copy of
    the store (one more test image right) must fail notebook 00's check, and the untouched copy
    must pass it."""
    import os
    import shutil
    import subprocess
    import sys

    nb = paths.REPO_ROOT / "notebooks" / "00_quickstart.ipynb"
    store_copy = tmp_path / "results"
    shutil.copytree(SHIPPED, store_copy / "toy")
    env = {
        **os.environ,
        "PTNL_RESULTS": str(store_copy),
        "PTNL_FIGURES": str(tmp_path / "figures"),
        store.NO_TRAIN_VAR: "1",
        "TQDM_DISABLE": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(nb),
        "--nbval",
        "--nbval-current-env",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    cmd += ["--nbval-sanitize-with", str(paths.REPO_ROOT / "notebooks" / "sanitize.cfg")]

    def nbval() -> int:
        return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True).returncode

    assert nbval() == 0
    target = next(
        d
        for d in sorted((store_copy / "toy").iterdir())
        if json.loads((d / store.CONFIG_FILE).read_text()).get("method") == "prompt"
        and d.name in {c.run_id for c in build_00()}
    )
    m = json.loads((target / store.METRICS_FILE).read_text())
    m["test_acc"] += 1 / m["n_test"]
    (target / store.METRICS_FILE).write_text(json.dumps(m))
    assert nbval() != 0


def build_00():
    from ptnl.sections import build
    from ptnl.tools.plan import notebook_params

    nb = paths.REPO_ROOT / "notebooks" / "00_quickstart.ipynb"
    return build(nb.stem, notebook_params(nb, shipped.SHIPPED_SET))
