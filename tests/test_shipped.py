"""The shipped toy results (results/toy/) are the toy set's runs, and they are proven by retraining.

The fast tests check that the shipped store holds exactly the runs the toy set's notebooks read,
each one whole and filed under its config's hash, and that the docs say what the committed
notebooks show. The slow test retrains a sample of shipped runs from scratch (every method the
toy set uses, a run that was trained in a batched group, visual fine-tuning, UPL members) and
requires the same numbers: test accuracy exactly, every other metric to float rounding.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ptnl.core import paths
from ptnl.tools import docs, shipped
from ptnl.train import engine, store, upl
from ptnl.train.config import RunConfig
from ptnl.train.sweep import sweep

SHIPPED = paths.shipped_results_dir()
PROVENANCE = ("seconds", "group_size")  # how long and with how many others it trained, not what it measured


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
        if isinstance(cfg, upl.UPLConfig):  # the ensemble reads each member's trained context
            assert (SHIPPED / rid / upl.PROMPT_FILE).is_file(), rid


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


def _sample(runs):
    """Per method the shipped run that took least time, plus the quickest run that trained in a
    batched group (the shipped ``seconds`` are data: the same sample every time)."""
    by_method, grouped = {}, None
    for rid, (cfg, m) in sorted(runs.items(), key=lambda kv: (kv[1][1]["seconds"], kv[0])):
        by_method.setdefault(cfg.method, rid)
        if grouped is None and m.get("group_size", 1) > 1 and not isinstance(cfg, upl.UPLConfig):
            grouped = rid
    return sorted(set(by_method.values()) | {grouped}), set(by_method)


def _same(theirs: dict, ours: dict, rid: str):
    assert ours["test_acc"] == theirs["test_acc"], rid
    for k, v in theirs.items():
        if k in PROVENANCE:
            continue
        w = ours[k]
        if isinstance(v, float) and isinstance(w, float) and not (math.isnan(v) and math.isnan(w)):
            assert w == pytest.approx(v, rel=1e-5, abs=1e-7), f"{rid}: {k}"
        elif isinstance(v, list) and v and isinstance(v[0], float):
            assert w == pytest.approx(v, rel=1e-5, abs=1e-7, nan_ok=True), f"{rid}: {k}"
        elif not (isinstance(v, float) and math.isnan(v)):
            assert w == v, f"{rid}: {k}"


@pytest.fixture
def one_thread():
    """The shipped runs were trained at one thread (``THREADS=1``): the thread count changes the
    order of float reductions, and through it the numbers (visual fine-tuning's most)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_sample_of_shipped_runs_retrains_to_the_same_numbers(one_thread):
    runs = _runs()
    sample, methods = _sample(runs)
    assert {"prompt", "visual_ft", "linear_probe", "upl", "robust_upl_gce"} <= methods
    for rid in sample:
        cfg, theirs = runs[rid]
        if isinstance(cfg, upl.UPLConfig):
            (ours,) = upl.train([cfg], experiment=None)
        else:
            ours = engine.train_and_evaluate(cfg, device="cpu")
        _same(theirs, ours, rid)


def _write(root, rid, metrics, extra=None):
    d = root / "toy" / rid
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"seed": 1, "id": rid}))
    (d / "metrics.json").write_text(json.dumps(metrics))
    for name, data in (extra or {}).items():
        (d / name).write_bytes(data)
    (d / "done").write_text("")


def test_compare_counts_identical_runs_and_names_what_differs(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _write(ours, "a", {"test_acc": 0.5, "seconds": 1.0})
    _write(theirs, "a", {"test_acc": 0.5, "seconds": 9.0})  # wall time is not a result
    _write(ours, "b", {"test_acc": 0.5, "train_loss": [1.0]})
    _write(theirs, "b", {"test_acc": 0.5, "train_loss": [1.5]})
    _write(ours, "c", {"test_acc": 0.5}, {"prompt.pt": b"x"})
    _write(theirs, "c", {"test_acc": 0.5}, {"prompt.pt": b"y"})
    _write(theirs, "d", {"test_acc": 0.5})
    out = shipped.compare_runs(ours, theirs / "toy", ids=["a", "b", "c", "d"])
    assert (out["identical"], out["test_acc_identical"], out["missing"]) == (1, 3, ["d"])
    assert out["differ"] == ["b: metrics train_loss", "c: prompt.pt"]
    assert (
        shipped.report(out, None).splitlines()[0]
        == "1/4 runs identical to the shipped results (results/toy/)"
    )


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
