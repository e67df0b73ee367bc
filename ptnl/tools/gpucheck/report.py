"""The GPU check's driver: every part in order within the budget, the JSON rewritten after each,
and the summary a README quotes."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ptnl.core import paths
from ptnl.models.clip import load_clip
from ptnl.tools.gpucheck.common import (
    BACKBONES,
    BUDGET_S,
    DRY_SIZES,
    GPU_SIZES,
    PARAM_SET,
    Clock,
    environment,
    log,
    register_dry_backbones,
)
from ptnl.tools.gpucheck.costs import check_bench, measure_step_times
from ptnl.tools.gpucheck.probe import check_agreement, check_training
from ptnl.tools.gpucheck.project import project_grid

DESCRIPTION = "GPU readiness check: ``python -m ptnl gpu-check`` (``make gpu-check``), one JSON file out."


def _clean(x):
    """JSON-safe: numpy scalars as Python numbers, NaN and infinities as null."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(report), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, out)


def _error(e: BaseException) -> dict:
    return {"passed": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}


def summary(report: dict) -> dict:
    """The few numbers a README quotes, per backbone, from the checks that ran."""
    checks = report["checks"]

    def part(name, bb):
        return checks.get(name, {}).get("by_backbone", {}).get(bb, {})

    out = {"checks": {k: "pass" if c["passed"] else "FAIL" for k, c in checks.items()}}
    for bb in BACKBONES:
        rows = {r["precision"]: r for r in part("training", bb).get("rows", [])}
        agree, b = part("agreement", bb), part("bench", bb)
        out[bb] = {
            "ms_per_step": {p: round(r["s_per_step"] * 1e3, 2) for p, r in rows.items()},
            "peak_gpu_mb": {p: r["peak_gpu_mb"] and round(r["peak_gpu_mb"]) for p, r in rows.items()},
            "coop_fp16_stalled_updates": rows.get("coop-fp16", {}).get("stalled_updates"),
            "agreement_max_abs_diff": {
                k: agree.get(f"max_abs_diff_{k}") for k in ("logits", "loss", "update")
            },
            "bench_speedups": b.get("ratios"),
        }
    if "hours" in checks.get("paper_grid", {}):
        grid = checks["paper_grid"]
        out["paper_grid"] = {"runs": grid["runs"], "projected_hours": grid["hours"]}
    return out


def run_check(
    out: Path,
    dry: bool = False,
    budget_s: float = BUDGET_S,
    skip: tuple[str, ...] = (),
    param_set: str = PARAM_SET,
) -> dict:
    dry_reason = "--dry" if dry else None
    if not dry and not torch.cuda.is_available():
        dry, dry_reason = True, "no CUDA device"
    sizes = DRY_SIZES if dry else GPU_SIZES
    device = "cpu" if dry else "cuda"
    names = register_dry_backbones() if dry else {b: b for b in BACKBONES}
    clock = Clock(budget_s)
    report = {
        "passed": None,
        "environment": environment(device, dry, dry_reason),
        "budget_s": budget_s,
        "sizes": asdict(sizes),
        "checks": {},
        "skipped": [],
    }
    checks = report["checks"]
    cache = tempfile.mkdtemp(prefix="ptnl-gpucheck-cache-")
    old_cache = os.environ.get("PTNL_CACHE")
    os.environ["PTNL_CACHE"] = cache  # a fresh feature cache: nothing stale, nothing left behind
    bundles = {}

    def bundle(grid_name):
        if grid_name not in bundles:
            bundles[grid_name] = load_clip(names[grid_name], pretrained=None, device=device)
        return bundles[grid_name]

    def per_backbone(part, fn, optional):
        results = {}
        for bb in BACKBONES:
            need = sizes.need_s.get(part, 0)
            if part in skip or (optional and clock.left() < need):
                why = "--skip" if part in skip else f"{clock.left():.0f} s of the budget left, needs {need} s"
                report["skipped"].append(f"{part} {bb}: {why}")
                continue
            t0 = time.perf_counter()
            try:
                results[bb] = fn(bb)
            except Exception as e:  # recorded, and the other parts still run
                results[bb] = _error(e)
                log(f"{part} {bb} FAILED: {results[bb]['error']}")
            results[bb]["seconds"] = round(time.perf_counter() - t0, 2)
        if results:
            checks[part] = {"passed": all(r["passed"] for r in results.values()), "by_backbone": results}
        _write(report, out)

    try:
        per_backbone("training", lambda bb: check_training(bundle(bb), device, sizes), optional=False)
        per_backbone(
            "agreement", lambda bb: check_agreement(names[bb], device, sizes.agree_classes), optional=False
        )

        def step_times(bb):
            training = checks.get("training", {}).get("by_backbone", {}).get(bb, {})
            auto = next((r for r in training.get("rows", []) if r["precision"] == "auto"), None)
            return measure_step_times(bundle(bb), device, sizes, auto)

        per_backbone("step_times", step_times, optional=True)
        timings = {
            bb: r["timings"]
            for bb, r in checks.get("step_times", {}).get("by_backbone", {}).items()
            if r["passed"]
        }
        if "paper_grid" in skip or clock.left() < sizes.need_s["paper_grid"] or len(timings) < len(BACKBONES):
            why = "--skip" if "paper_grid" in skip else "step times of both backbones missing or budget spent"
            report["skipped"].append(f"paper_grid: {why}")
        else:
            t0 = time.perf_counter()
            try:
                checks["paper_grid"] = {"passed": True, **project_grid(timings, param_set)}
                log(f"paper grid: {checks['paper_grid']['runs']} runs, {checks['paper_grid']['hours']}")
            except Exception as e:
                checks["paper_grid"] = _error(e)
            checks["paper_grid"]["seconds"] = round(time.perf_counter() - t0, 2)
            _write(report, out)
        per_backbone("bench", lambda bb: check_bench(names[bb], device, sizes.bench_steps), optional=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if old_cache is None:
            os.environ.pop("PTNL_CACHE", None)
        else:
            os.environ["PTNL_CACHE"] = old_cache
    report["passed"] = all(c["passed"] for c in checks.values()) and {"training", "agreement"} <= set(checks)
    report["wall_s"] = round(clock.elapsed(), 1)
    report["summary"] = summary(report)
    _write(report, out)
    return report


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``python -m ptnl gpu-check``."""
    ap.description = DESCRIPTION
    ap.add_argument("--dry", action="store_true", help="CPU, tiny random backbones (automatic without CUDA)")
    ap.add_argument("--out", default=None, help="JSON path (default build/gpucheck.json)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="skip optional parts after this")
    ap.add_argument("--skip", default="", help="optional parts to leave out: step_times,paper_grid,bench")
    ap.add_argument("--set", default=PARAM_SET, help="parameter set of the projected grid")


def command(ns: argparse.Namespace) -> int:
    """Run the check; exit status 1 if a check failed."""
    skip = tuple(s.strip() for s in ns.skip.split(",") if s.strip())
    bad = set(skip) - {"step_times", "paper_grid", "bench"}
    if bad:
        ns.usage_error(f"only optional parts can be skipped, not {sorted(bad)}")
    out = Path(ns.out) if ns.out else paths.build_dir() / "gpucheck.json"
    report = run_check(out, ns.dry, ns.budget_s, skip, ns.set)
    failed = [k for k, c in report["checks"].items() if not c["passed"]]
    log(
        f"{'PASSED' if report['passed'] else 'FAILED'} in {report['wall_s']} s"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + (f"; skipped: {'; '.join(report['skipped'])}" if report["skipped"] else "")
        + f"; wrote {out}"
    )
    return 0 if report["passed"] else 1
