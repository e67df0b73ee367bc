"""The speed and memory benchmark: ``python -m ptnl bench`` (``make bench``).

Every number is a ratio measured in the same invocation, on the same machine, against a plain
CoOp step written out below (``CoOpReference``): the image tower on the augmented batch every
step, the text tower over all classes at the full context length (77 tokens), fp32, SGD.

Rows (each measured in its own subprocess, so peak memory is that mode's alone):
- ``reference``  the plain CoOp step.
- ``exact``      ptnl's engine, images augmented and encoded online; the same crops, data order,
                 initialisation and learning rates as the reference, so its losses and context
                 must match the reference's (max |diff| reported); the text tower is truncated
                 after the last EOT and the shared [SOS][ctx] prefix computed once.
- ``views``      features of pre-encoded augmented views (cache built before timing; its build
                 time is reported separately).
- ``center``     one centre-crop feature per image.
- ``group16``    16 views-mode runs (seeds 1..16) trained together in one batched text pass;
                 reported as runs per hour against 16 sequential ``views`` runs.

``run_benchmarks(..., in_process=True)`` (what ``ptnl.tools.gpucheck`` uses on the GPU) measures the same
rows in one process instead, without an interpreter and CUDA start-up per row.

Backbones RN50 and ViT-B-32 with random weights (no download), 37 classes (OxfordPets' size),
one training image per class (37 images, one step of 32 per epoch: the step cost does not depend
on the dataset size). The many-class toy case (``TOY_CASE``) runs the same rows on toy-rn's shipped
checkpoint and the toy lab's largest task, toy-objects-64 (notebook 09): per step, the text tower
runs over all 64 classes, so it shows what the engine saves where a toy run is most expensive.
``--smoke`` runs the rows on a tiny random backbone in seconds. Writes ``build/bench.json`` and
prints a markdown table.

The numeric path's cost: ``ptnl.tools.speed_numeric`` (section ``numeric_path`` of the JSON); the
toy set's main job, its schedule and per-method times against today's paths:
``ptnl.tools.speed_main_job`` (section ``main_job``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image

from ptnl.core import paths
from ptnl.data.base import Dataset, Split
from ptnl.models.clip import load_clip
from ptnl.tools import speed_main_job, speed_numeric
from ptnl.tools.coop_reference import CoOpReference, reference_fit
from ptnl.tools.speed_numeric import measure_numeric, numeric_markdown, numeric_path_cost
from ptnl.train import engine, methods
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.loop import fit

N_CLASSES = 37  # OxfordPets
TOY_CASE = ("toy-rn", 64)  # (backbone, classes): the toy lab's toy-objects-64 on the shipped checkpoint
RUNS_PER_GROUP = 16


def paper_steps_per_run(n_classes: int) -> int:
    """16 shots, batch 32, drop_last, 50 epochs: 900 steps at 37 classes."""
    return (n_classes * 16 // 32) * 50


TARGETS = {"views": 8.0, "exact": 2.0, "group16": 4.0}  # speed-up over the reference (group: over sequential)
MODES = ("reference", "exact", "views", "center", "group16")

# A tiny open_clip architecture (random weights) for tests and --smoke runs: the same code path
# as RN50/ViT-B/32 at a fraction of the cost.
TINY_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip(
    name: str = "ptnl-tiny", folder: str | Path | None = None, config: dict | None = None
) -> str:
    """Register an open_clip model config ``name`` (written to ``folder``) and return the name,
    so that ``ptnl.models.clip.load_clip(name, pretrained=None)`` builds it."""
    folder = Path(folder or tempfile.mkdtemp(prefix="ptnl-tiny-clip-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config or TINY_CONFIG))
    open_clip.add_model_config(path)
    return name


def synthetic_dataset(
    n_classes: int = 37,
    train_per_class: int = 16,
    test_per_class: int = 4,
    size: tuple[int, int] = (160, 120),
    name: str = "toy-synthetic",
) -> Dataset:
    """A dataset of procedurally drawn images (class colour + noise), rendered on demand from refs.

    Images are non-square (``size`` = width, height) so random-resized crops and centre crops
    both have work to do. Label of image i is i % n_classes in every split.
    """

    def load(ref: str) -> Image.Image:
        label = int(ref.rsplit("/", 1)[1]) % n_classes
        rng = np.random.default_rng(F.derive_seed(name, ref))
        base = np.array([(37 * label) % 256, (91 * label) % 256, (173 * label) % 256], dtype=np.float64)
        img = base + rng.normal(0, 40, size=(size[1], size[0], 3))
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    def split(tag: str, per_class: int) -> Split:
        n = n_classes * per_class
        return Split([f"{tag}/{i:05d}" for i in range(n)], np.arange(n) % n_classes, load)

    return Dataset(
        name=name,
        classnames=tuple(f"breed {k}" for k in range(n_classes)),
        template="a photo of a {}, a type of pet.",
        train=split("train", train_per_class),
        val=None,
        test=split("test", test_per_class),
        split_source="synthetic",
    )


# -- one measurement (runs in a subprocess) -----------------------------------------------------


def _is_toy_case(backbone: str, n_classes: int) -> bool:
    return (backbone, n_classes) == TOY_CASE


def _setup(backbone: str, device: str, n_classes: int):
    # a worker process registers the tiny config itself; in-process callers may have their own
    if backbone.startswith("ptnl-tiny") and open_clip.get_model_config(backbone) is None:
        register_tiny_clip(backbone)
    if _is_toy_case(backbone, n_classes):
        import dataclasses

        from ptnl.data import load_dataset

        ds = load_dataset(f"toy-objects-{n_classes}")
        t = ds.test  # one test image per class: the rows time training, not the 2560-image test set
        test = Split(t.refs[:n_classes], t.labels[:n_classes], t.image_loader)
        return load_clip(backbone, pretrained="default", device=device), dataclasses.replace(ds, test=test)
    bundle = load_clip(backbone, pretrained=None, device=device)
    ds = synthetic_dataset(n_classes=n_classes, train_per_class=1, test_per_class=1)
    return bundle, ds


def _config(backbone, mode, steps, seed=1, n_classes: int = N_CLASSES):
    feature_mode = {"reference": "exact", "group16": "views"}.get(mode, mode)
    toy = _is_toy_case(backbone, n_classes)
    # one image per class: one step per epoch at 37 classes (two at 64), steps + 1 epochs, the
    # first one an untimed warm-up
    return RunConfig(
        dataset=f"toy-objects-{n_classes}" if toy else "toy-synthetic",
        backbone=backbone,
        pretrained="default" if toy else None,
        shots=1,
        epochs=steps + 1,
        feature_mode=feature_mode,
        n_views=2,
        seed=seed,
        precision="fp32",
    )


def measure(backbone: str, mode: str, steps: int, device: str = "cpu", n_classes: int = N_CLASSES) -> dict:
    """Time ``steps`` training steps of ``mode`` (after one warm-up step)."""
    cuda = device.startswith("cuda")
    if cuda:  # peak memory of this row alone, also when rows share a process
        torch.cuda.reset_peak_memory_stats()
    bundle, ds = _setup(backbone, device, n_classes)
    stamps = []

    def tick():
        if cuda:  # kernels run asynchronously: a step ends when the GPU is done with it
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    out = {"backbone": backbone, "n_classes": n_classes, "mode": mode, "device": device, "steps": steps}
    seeds = range(1, RUNS_PER_GROUP + 1) if mode == "group16" else [1]
    runs = [
        engine.prepare(_config(backbone, mode, steps, s, n_classes), device, dataset=ds, bundle=bundle)
        for s in seeds
    ]
    modules = [methods.init_module(methods.get(r.cfg.method), r.cfg, bundle, ds, r.device) for r in runs]
    if mode == "reference":
        # CoOp's CLIP keeps open_clip's default NCHW layout (ptnl's load_clip turns conv towers NHWC)
        bundle.model.visual.to(memory_format=torch.contiguous_format)
        ref = CoOpReference(bundle, ds.classnames, modules[0].prompt_learner.ctx)
        out["losses"] = reference_fit(runs[0], ref, on_step=tick)
        out["ctx"] = ref.ctx.detach().cpu().flatten().tolist()
    else:
        t0 = time.perf_counter()
        sources = [F.feature_source(r) for r in runs]
        out["cache_s"] = time.perf_counter() - t0
        first = sources[0]

        def timed(epoch, batch):
            tick()
            return first(epoch, batch)

        hists = fit(runs, modules, [timed, *sources[1:]])
        tick()
        out["losses"] = hists[0]["train_loss"]
        out["ctx"] = modules[0].prompt_learner.ctx.detach().cpu().flatten().tolist()
    step_s = np.diff(stamps)[1:]  # drop the warm-up step
    out["step_s"] = float(np.median(step_s))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


# -- the driver ---------------------------------------------------------------------------------


def _worker(args: list[str], env: dict) -> dict:
    cmd = [sys.executable, "-m", "ptnl", "bench", "--worker", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark worker {args} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _cache_env(path: Path):
    old = os.environ.get("PTNL_CACHE")
    os.environ["PTNL_CACHE"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PTNL_CACHE", None)
        else:
            os.environ["PTNL_CACHE"] = old


def run_benchmarks(
    backbones,
    steps: int,
    device: str,
    modes=MODES,
    out_path: Path | None = None,
    in_process: bool = False,
    toy_case: bool = False,
    numeric_path: dict | None = None,
    main_job: bool = False,
) -> dict:
    """Measure every (backbone, mode) row at ``N_CLASSES`` classes, and with ``toy_case`` the
    rows of ``TOY_CASE``, and write the JSON. ``in_process=True`` measures in this process instead
    of one subprocess per row: no interpreter and CUDA start-up per row (what a timed GPU check
    wants), but ``peak_rss_mb`` is then this process's peak so far. ``numeric_path``, e.g.
    ``{"epochs": 10, "repeats": 3}``, also measures ``numeric_path_cost`` with those arguments."""
    out_path = out_path or paths.build_dir() / "bench.json"
    cache = Path(tempfile.mkdtemp(prefix="ptnl-speed-cache-"))
    env = {**os.environ, "PTNL_CACHE": str(cache), "TQDM_DISABLE": "1"}
    results = {
        "device": device,
        "steps": steps,
        "n_classes": N_CLASSES,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "rows": [],
    }

    def row_of(args):
        if in_process:
            bb, mode, n, dev, classes = args
            return measure(bb, mode, int(n), dev, int(classes))
        return _worker(args, env)

    cases = [(bb, N_CLASSES) for bb in backbones] + ([TOY_CASE] if toy_case else [])
    try:
        with _cache_env(cache) if in_process else contextlib.nullcontext():
            _measure_all(cases, steps, device, modes, results, row_of)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    _derive(results)
    if numeric_path is not None:
        results["numeric_path"] = numeric_path_cost(**numeric_path)
    if main_job:
        results["main_job"] = speed_main_job.main_job()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    slim = {**results, "rows": [{k: v for k, v in r.items() if k != "ctx"} for r in results["rows"]]}
    out_path.write_text(json.dumps(slim, indent=2) + "\n")
    return slim


def _measure_all(cases, steps, device, modes, results, row_of) -> None:
    for bb, classes in cases:
        built = {}
        if {"views", "center", "group16"} & set(modes):  # build the caches first: time training alone
            for m in ("views", "center"):
                built[m] = row_of([bb, m, "1", device, str(classes)])["cache_s"]
        for mode in modes:
            row = row_of([bb, mode, str(steps), device, str(classes)])
            if mode in built:  # encoding N images x V views (V = 2 here) once, before training
                row["cache_build_s"] = built[mode]
            results["rows"].append(row)
            print(
                f"  {bb:10s} {classes:3d} classes {mode:10s} {row['step_s']:.4f} s/step  "
                f"peak {row['peak_rss_mb']:.0f} MB",
                file=sys.stderr,
            )


def _case(r: dict) -> tuple:
    return r["backbone"], r.get("n_classes", N_CLASSES)


def _derive(results: dict) -> None:
    """Ratios against the reference of the same backbone and class count; exactness of ``exact``."""
    by = {(*_case(r), r["mode"]): r for r in results["rows"]}
    for r in results["rows"]:
        ref = by.get((*_case(r), "reference"))
        per_run = r["step_s"] / (RUNS_PER_GROUP if r["mode"] == "group16" else 1)
        r["steps_per_s"] = 1.0 / r["step_s"]
        r["runs_per_hour"] = 3600.0 / (paper_steps_per_run(_case(r)[1]) * per_run)
        if ref is not None:
            r["speedup_vs_reference"] = ref["step_s"] / per_run
        if r["mode"] == "exact" and ref is not None:
            ref_losses = np.asarray(ref["losses"])  # per step; the engine's are per epoch
            ref_losses = ref_losses.reshape(len(r["losses"]), -1).mean(axis=1)
            r["max_abs_diff_loss"] = float(np.max(np.abs(np.subtract(r["losses"], ref_losses))))
            r["max_abs_diff_ctx"] = float(np.max(np.abs(np.subtract(r["ctx"], ref["ctx"]))))
        if r["mode"] == "group16" and (*_case(r), "views") in by:
            r["speedup_vs_sequential"] = by[(*_case(r), "views")]["step_s"] * RUNS_PER_GROUP / r["step_s"]
        target = (
            TARGETS.get(r["mode"]) if not _is_toy_case(*_case(r)) else None
        )  # the paper backbones' targets
        got = r.get("speedup_vs_sequential") if r["mode"] == "group16" else r.get("speedup_vs_reference")
        if target is not None and got is not None:
            r["target"], r["meets_target"] = target, bool(got >= target)


def markdown(results: dict) -> str:
    lines = [
        f"Device: {results['device']}, torch {results['torch']}, {results['threads']} threads, "
        f"median of {results['steps']} steps after a warm-up step. Random weights and synthetic images "
        f"at {results['n_classes']} classes; toy-rn at 64 classes: its shipped checkpoint on toy-objects-64.",
        "",
        "| backbone | classes | mode | s/step | steps/s | speed-up | target | runs/h (16-shot run) | peak RSS MB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        if r["mode"] == "group16":
            speed = f"{r.get('speedup_vs_sequential', float('nan')):.1f}x vs 16 sequential"
        else:
            speed = f"{r.get('speedup_vs_reference', float('nan')):.1f}x"
        target = f">= {r['target']:g}x {'ok' if r['meets_target'] else 'MISSED'}" if "target" in r else ""
        notes = []
        if "max_abs_diff_loss" in r:
            notes.append(
                f"vs reference: max |dloss| {r['max_abs_diff_loss']:.1e}, |dctx| {r['max_abs_diff_ctx']:.1e}"
            )
        if "cache_build_s" in r:
            notes.append(f"feature cache built once in {r['cache_build_s']:.1f}s")
        lines.append(
            f"| {r['backbone']} | {_case(r)[1]} | {r['mode']} | {r['step_s']:.4f} | {r['steps_per_s']:.2f} | {speed} | {target} "
            f"| {r['runs_per_hour']:.1f} | {r['peak_rss_mb']:.0f} | {'; '.join(notes)} |"
        )
    parts = ["\n".join(lines)] if results["rows"] else []  # none: e.g. --backbones "" --no-toy-case
    if "numeric_path" in results:
        parts.append(numeric_markdown(results["numeric_path"]))
    if "main_job" in results:
        parts.append(speed_main_job.markdown(results["main_job"]))
    return "\n\n".join(parts)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The flags of ``python -m ptnl bench``."""
    ap.description = "ptnl speed and memory benchmark"
    ap.add_argument("--backbones", default="RN50,ViT-B-32", help="comma-separated (random weights)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row (after one warm-up step)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--smoke", action="store_true", help="a tiny random backbone instead (seconds)")
    ap.add_argument("--out", default=None, help="JSON path (default build/bench.json)")
    ap.add_argument(
        "--no-toy-case",
        dest="toy_case",
        action="store_false",
        help=f"skip the many-class toy case ({TOY_CASE[0]}, {TOY_CASE[1]} classes; on by default)",
    )
    speed_numeric.add_arguments(ap)
    ap.add_argument(
        "--no-main-job",
        dest="main_job",
        action="store_false",
        help="skip the toy set's main job (schedule and per-method ratios against today's paths)",
    )
    ap.add_argument(
        "--worker",
        nargs=5,
        metavar=("BACKBONE", "MODE", "STEPS", "DEVICE", "CLASSES"),
        help=argparse.SUPPRESS,
    )


def command(ns: argparse.Namespace) -> int:
    """Measure and print the table; ``--worker`` measures one row and prints it as JSON."""
    if ns.numeric_worker is not None:
        print(json.dumps(measure_numeric(ns.numeric_worker)))
        return 0
    if ns.worker:
        bb, mode, steps, device, classes = ns.worker
        print(json.dumps(measure(bb, mode, int(steps), device, int(classes))))
        return 0
    backbones = ["ptnl-tiny"] if ns.smoke else [b.strip() for b in ns.backbones.split(",") if b.strip()]
    modes = tuple(m.strip() for m in ns.modes.split(","))
    unknown = set(modes) - set(MODES)
    if unknown:
        ns.usage_error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    out = Path(ns.out) if ns.out else None
    on, toy = ns.numeric_path and not ns.smoke, ns.toy_case and not ns.smoke
    numeric = {"epochs": ns.numeric_epochs, "repeats": ns.numeric_repeats} if on else None
    res = run_benchmarks(
        backbones,
        ns.steps,
        ns.device,
        modes,
        out,
        toy_case=toy,
        numeric_path=numeric,
        main_job=ns.main_job and not ns.smoke,
    )
    print(markdown(res))
    return 0
