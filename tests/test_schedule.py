"""One schedule for every notebook's runs (ptnl.tools.schedule): the same runs, in the same groups,
with the same numbers as the notebooks' own sweeps, trained before any notebook executes."""

import json

import pytest

from ptnl.sections import SECTIONS
from ptnl.tools import notebooks, plan, schedule
from ptnl.train import store, sweep

SMOKE = ["00_quickstart", "01_prompt_tuning_gce", "03_robustness_attribution", "07_unsupervised"]


def _paths(stems):
    return [notebooks.NOTEBOOKS_DIR / f"{s}.ipynb" for s in stems]


def _as_the_notebooks_sweep(stems, param_set):
    """What executing the notebooks in turn trains: each one's sweep over its stored runs."""
    for nb in _paths(stems):
        params = plan.notebook_params(nb, param_set)
        section = SECTIONS[nb.stem]
        sweep.sweep(
            section.build(params),
            params["experiment"],
            group_size=section.sweep_group_size(params),
            progress=False,
        )


def _stored(root):
    out = {}
    for d in sorted(root.glob("*/*")):
        if (d / store.DONE_FILE).is_file():
            m = json.loads((d / store.METRICS_FILE).read_text())
            out[d.name] = {k: v for k, v in m.items() if k not in ("seconds", "numeric_path")}
    return out


def test_batches_are_the_notebooks_own_groups_each_run_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path))
    bs = schedule.batches(_paths(SMOKE), "smoke")
    ids = [c.run_id for b in bs for c in b.configs]
    assert len(ids) == len(set(ids))  # a run two notebooks share is planned once
    want = set()
    for nb in _paths(SMOKE):
        want |= {c.run_id for c in SECTIONS[nb.stem].build(plan.notebook_params(nb, "smoke"))}
    assert set(ids) == want
    # Notebook 07's members train four at a time, one ensemble per group; 00's runs in groups of 8.
    sizes = {b.notebook: max(len(x.configs) for x in bs if x.notebook == b.notebook) for b in bs}
    assert sizes["07_unsupervised"] == 4 and sizes["00_quickstart"] > 1
    assert all(b.seconds > 0 for b in bs)


@pytest.mark.slow
def test_scheduled_runs_equal_the_notebooks_own_sweeps(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "scheduled"))
    done = schedule.train(_paths(SMOKE), "smoke", workers=2)
    assert done["runs"] > 20 and done["batches"] < done["runs"]
    assert schedule.batches(_paths(SMOKE), "smoke") == []  # nothing left for the notebooks to train
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "sequential"))
    _as_the_notebooks_sweep(SMOKE, "smoke")
    a, b = _stored(tmp_path / "scheduled"), _stored(tmp_path / "sequential")
    assert a.keys() == b.keys() and a == b  # every metric, group sizes included, bit for bit
