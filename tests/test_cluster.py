"""The schedule's batches on a cluster engine (ptnl.tools.cluster): submitit's local executor here,
its Slurm executor on a cluster; the store's claims keep every run trained once."""

import json

import pytest

from ptnl.tools import cluster, notebooks, schedule
from ptnl.train import store

NOTEBOOK = notebooks.NOTEBOOKS_DIR / "00_quickstart.ipynb"


def test_shards_deal_the_batches_longest_first():
    bs = [schedule.Batch("nb", "e", None, (), s) for s in (1.0, 5.0, 3.0, 4.0, 2.0)]
    got = [[b.seconds for b in s] for s in cluster.shards(bs, 2)]
    assert got == [[5.0, 3.0, 1.0], [4.0, 2.0]]
    assert len(cluster.shards(bs, 9)) == 5  # no empty tasks
    with pytest.raises(ValueError, match="executor must be one of"):
        cluster.submit([NOTEBOOK], "smoke", executor="pbs")


@pytest.mark.slow
def test_local_executor_trains_every_run_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PTNL_RESULTS", str(tmp_path / "results"))
    planned = schedule.batches([NOTEBOOK], "smoke")
    n = sum(len(b.configs) for b in planned)
    ran = cluster.submit([NOTEBOOK], "smoke", jobs=2, executor="local", folder=tmp_path / "jobs", wait=True)
    assert len(ran) == 2 and sum(ran) == n
    assert all(store.is_done(c, b.experiment) for b in planned for c in b.configs)
    stamps = {
        c.run_id: (store.run_dir(c, b.experiment) / store.DONE_FILE).stat().st_mtime_ns
        for b in planned
        for c in b.configs
    }
    # A second array finds everything done: nothing to submit, nothing retrained.
    assert (
        cluster.submit([NOTEBOOK], "smoke", jobs=2, executor="local", folder=tmp_path / "jobs", wait=True)
        == []
    )
    for b in planned:
        for c in b.configs:
            assert (store.run_dir(c, b.experiment) / store.DONE_FILE).stat().st_mtime_ns == stamps[c.run_id]
            assert (
                json.loads((store.run_dir(c, b.experiment) / store.METRICS_FILE).read_text())["group_size"]
                >= 1
            )
