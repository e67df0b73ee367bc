"""ptnl.tools.gpucheck: the GPU readiness check, run in its CPU dry mode (tiny random backbones)."""

import json

import pytest
import torch

from ptnl.tools import gpucheck, speed
from ptnl.tools.cli import main
from ptnl.tools.gpucheck import project


class EotOffByOne(speed.CoOpReference):
    """A CoOp step that reads the text feature one token before EOT: subtly wrong."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.eot = self.eot - 1


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpucheck") / "gpucheck.json"
    assert main(["gpu-check", "--dry", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_dry_run_writes_every_part(report):
    assert report["passed"] is True and report["skipped"] == []
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch"] == torch.__version__ and env["dry_reason"] == "--dry"
    assert set(report["checks"]) == {"training", "agreement", "step_times", "paper_grid", "bench"}
    for name in ("training", "agreement", "step_times", "bench"):
        part = report["checks"][name]
        assert part["passed"] is True and set(part["by_backbone"]) == set(gpucheck.BACKBONES), name


def test_training_rows(report):
    for bb, res in report["checks"]["training"]["by_backbone"].items():
        auto, fp16 = res["rows"]
        assert (auto["precision"], fp16["precision"]) == ("auto", "coop-fp16")
        assert auto["forward_precision"] == "fp32" and fp16["update_precision"] == "fp16"  # on the CPU
        for row in (auto, fp16):
            assert row["loss_finite"] and row["s_per_step"] > 0 and row["steps_timed"] >= 1
            assert row["backbone"] == gpucheck.DRY_BACKBONES[bb] and row["peak_gpu_mb"] is None
        assert "stalled_updates" not in auto
        assert all(0 <= x <= 1 for x in fp16["stalled_updates"])


def test_agreement_passes_within_tolerance(report):
    for res in report["checks"]["agreement"]["by_backbone"].values():
        assert res["passed"] and not res["tf32"]
        assert res["reference_context_length"] == gpucheck.TINY_RN_CONFIG["text_cfg"]["context_length"]
        assert res["max_abs_diff_logits"] <= gpucheck.LOGITS_ATOL
        assert res["max_abs_update"] > 0
        assert res["max_abs_diff_update"] <= gpucheck.UPDATE_RTOL * res["max_abs_update"]


def test_agreement_fails_on_a_broken_reference():
    name = gpucheck.register_dry_backbones()["ViT-B-32"]
    good = gpucheck.check_agreement(name, "cpu", 5)
    bad = gpucheck.check_agreement(name, "cpu", 5, reference=EotOffByOne)
    assert good["passed"] and not bad["passed"]
    assert bad["max_abs_diff_logits"] > 100 * gpucheck.LOGITS_ATOL


def test_paper_grid_projection(report):
    grid = report["checks"]["paper_grid"]
    assert grid["param_set"] == "paper" and grid["runs"] > 1000
    for key in ("runs_by_method", "runs_by_dataset", "runs_by_notebook", "runs_by_backbone"):
        assert sum(grid[key].values()) == grid["runs"], key
    assert set(grid["runs_by_backbone"]) == set(gpucheck.BACKBONES)
    assert set(grid["runs_by_dataset"]) <= set(gpucheck.dataset_sizes())
    hours = grid["hours"]
    assert hours["total"] == pytest.approx(sum(v for k, v in hours.items() if k != "total"), abs=0.01)
    assert all(v >= 0 for v in hours.values()) and hours["training_gpu"] > 0
    assert grid["assumptions"] and all(v > 0 for v in grid["per_run_s"].values())


def test_bench_ratios(report):
    for res in report["checks"]["bench"]["by_backbone"].values():
        assert [r["mode"] for r in res["rows"]] == list(speed.MODES)
        assert all(v > 0 for v in res["ratios"].values())
        assert set(res["targets"]) == set(speed.TARGETS)


def test_a_failed_check_fails_the_run_and_the_budget_skips_optional_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "CoOpReference", EotOffByOne)
    out = tmp_path / "gpucheck.json"
    assert main(["gpu-check", "--dry", "--out", str(out), "--budget-s", "0"]) == 1
    rep = json.loads(out.read_text())
    assert rep["passed"] is False and rep["checks"]["training"]["passed"] is True
    assert rep["checks"]["agreement"]["passed"] is False
    assert set(rep["checks"]) == {"training", "agreement"}
    assert {s.split()[0].rstrip(":") for s in rep["skipped"]} == {"step_times", "paper_grid", "bench"}


def test_step_time_model():
    t = {"classes": [10, 110], "single_s": [1.0, 2.0], "group_runs": 4, "group_s": [2.5, 5.0]}
    assert gpucheck.step_s(t, 60) == pytest.approx(1.5)
    assert gpucheck.step_s(t, 60, runs=4) == pytest.approx(3.75)
    assert gpucheck.step_s(t, 60, runs=2) == pytest.approx(1.5 + (3.75 - 1.5) / 3)
    assert project._union(10, 1000, 10, 1) == pytest.approx(100)  # one draw: shots per class
    assert project._union(10, 1000, 10, 4) == pytest.approx(1000 * (1 - 0.9**4))
    assert project._union(10, 50, 10, 2) == pytest.approx(50)  # shots cap at the class's images
