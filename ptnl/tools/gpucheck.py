"""GPU readiness check: ``python -m ptnl.tools.gpucheck`` (``make gpu-check``), one JSON file out.

Runs the real code path on CUDA for RN50 and ViT-B/32 with random weights (nothing is
downloaded; no dataset is read) in about five minutes on one H200, and writes
``build/gpucheck.json`` (``--out``). Parts, in this order:

- ``training`` (required): a few prompt-tuning steps through ``ptnl.train.engine`` per backbone, with
  ``precision="auto"`` (bf16 autocast on the GPU) and ``"coop-fp16"`` (CoOp's fp16 parameters and
  SGD): loss finite, seconds per step, peak GPU memory, and ``stalled_updates`` for coop-fp16.
- ``agreement`` (required): one step of ptnl's ``exact`` mode against the plain CoOp step the
  tests use (``ptnl.tools.bench.CoOpReference``: full 77-token text pass, no truncation, no shared
  prefix), fp32 with TF32 off: max |difference| of the logits, the loss and the context update.
- ``step_times`` (optional): per-step times at two class counts, alone and in a group, and the
  other costs the projection needs (grad-ratio steps, linear heads, TEnc-FT, image encoding,
  JPEG decoding and augmentation, the linear probe, feature-cache reads).
- ``paper_grid`` (optional): the paper grid's runs counted with ``ptnl.sections.experiments`` (params/paper.yaml)
  and a projected wall time from those measurements, with its assumptions.
- ``bench`` (optional): ``ptnl.tools.bench``'s rows on the GPU (views, exact, group16 against their
  references), in this process.

Optional parts are skipped, and the skip recorded, once ``--budget-s`` is nearly spent. The JSON
is rewritten after every part, so a run cut short still leaves what it measured. Exit status 1 if
a check failed. ``--dry`` (automatic without CUDA) runs the same code on the CPU with tiny
open_clip configs and very few steps (the test suite runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

BACKBONES = ("RN50", "ViT-B-32")
BUDGET_S = 270.0  # leaves half a minute of the five for start-up and the last part's overrun
PARAM_SET = "paper"
# Tolerances of the fp32 agreement check (logits are scaled by exp(logit_scale): 14.3 at random
# init, 100 with OpenAI's weights); the update is compared relative to its own size.
LOGITS_ATOL = 1e-3
LOSS_ATOL = 1e-4
UPDATE_RTOL = 1e-3
# Class counts and split sizes (classes, train, test) of the paper's datasets: CoOp's dataset table
# (Zhou et al., IJCV 2022), class counts as CoOp's dataset code builds them; ImageNet's train split
# is ILSVRC-2012's 1,281,167 images, its test the 50,000 validation images.
DATASET_SIZES = {
    "OxfordPets": (37, 2944, 3669),
    "Flowers102": (102, 4093, 2463),
    "Food101": (101, 50500, 30300),
    "DTD": (47, 2820, 1692),
    "FGVCAircraft": (100, 3334, 3333),
    "Caltech101": (100, 4128, 2465),
    "StanfordCars": (196, 6509, 8041),
    "UCF101": (101, 7639, 3783),
    "EuroSAT": (10, 13500, 8100),
    "SUN397": (397, 15880, 19850),
    "ImageNet": (1000, 1281167, 50000),
}
JPEG_SIZE = (500, 375)  # assumed typical photo size of the datasets (width, height)
UNTRAINED = ("zeroshot", "random_prompt")
HEADS = ("classifier_r", "classifier_r_free", "classifier_c")
# A tiny ModifiedResNet (random weights) for the dry run; bench.TINY_CONFIG is the tiny ViT.
TINY_RN_CONFIG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": 64,
        "layers": [1, 1, 1, 1],
        "width": 8,
        "head_width": 32,
        "patch_size": None,
    },
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
DRY_BACKBONES = {"RN50": "ptnl-tiny-rn", "ViT-B-32": "ptnl-tiny-vit"}


@dataclass(frozen=True)
class Sizes:
    classes: tuple[int, int]  # class counts the step time is measured at (fitted as a + b * C)
    group: int  # runs trained together in the group probe (the paper set's group_size)
    timed_steps: int  # steps timed per probe, after an untimed first epoch
    agree_classes: int
    bench_steps: int
    encode_batch: int  # features.ENCODE_BATCH on the GPU
    repeats: int  # repetitions of the CPU micro-measurements
    read_mb: int  # size of the file torch.load is timed on
    need_s: dict  # seconds an optional part needs to start (per backbone where it loops)


GPU_SIZES = Sizes(
    classes=(37, 1000),
    group=4,
    timed_steps=8,
    agree_classes=37,
    bench_steps=5,
    encode_batch=128,
    repeats=20,
    read_mb=256,
    need_s={"step_times": 30, "paper_grid": 30, "bench": 60},
)
DRY_SIZES = Sizes(
    classes=(4, 40),
    group=2,
    timed_steps=1,
    agree_classes=5,
    bench_steps=1,
    encode_batch=16,
    repeats=2,
    read_mb=4,
    need_s={"step_times": 5, "paper_grid": 10, "bench": 10},
)


def _log(msg: str) -> None:
    print(f"gpucheck: {msg}", file=sys.stderr, flush=True)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _finite(xs) -> bool:
    return all(math.isfinite(float(x)) for x in xs)


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget_s - self.elapsed()


# -- environment -----------------------------------------------------------------------------


def environment(device: str, dry: bool, dry_reason: str | None) -> dict:
    import open_clip

    import ptnl

    env = {
        "mode": "dry (CPU, tiny random backbones)" if dry else "cuda (random RN50 / ViT-B-32 weights)",
        "dry_reason": dry_reason,
        "device": device,
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "open_clip": open_clip.__version__,
        "ptnl": ptnl.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": None,
    }
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(device)
        env["gpu"] = {
            "name": p.name,
            "memory_gib": round(p.total_memory / 2**30, 1),
            "compute_capability": f"{p.major}.{p.minor}",
            "count": torch.cuda.device_count(),
        }
    return env


def register_dry_backbones() -> dict:
    from ptnl.tools import bench

    folder = tempfile.mkdtemp(prefix="ptnl-gpucheck-cfg-")
    bench.register_tiny_clip(DRY_BACKBONES["RN50"], folder, TINY_RN_CONFIG)
    bench.register_tiny_clip(DRY_BACKBONES["ViT-B-32"], folder, bench.TINY_CONFIG)
    return dict(DRY_BACKBONES)


# -- training through the engine --------------------------------------------------------------


def train_probe(
    bundle,
    device,
    n_classes: int,
    timed_steps: int,
    precision: str = "auto",
    method: str = "prompt",
    runs: int = 1,
    grad_ratio: bool = False,
) -> dict:
    """Train ``runs`` runs together (``engine.fit``) on a synthetic dataset of ``n_classes``
    classes, two images per class (all of them the few-shot set), views mode; time the steps
    after the first epoch."""
    from ptnl.tools import bench
    from ptnl.train import engine
    from ptnl.train import features as F
    from ptnl.train.config import RunConfig

    # its own name per class count: the feature cache is keyed by dataset name and image ref
    ds = bench.synthetic_dataset(
        n_classes, train_per_class=2, test_per_class=1, name=f"toy-check-{n_classes}"
    )
    shots = 2  # two per class, so that noise (for the gradient ratio) has a sample to flip
    per_epoch = max(1, (shots * n_classes) // 32)
    epochs = 1 + math.ceil(timed_steps / per_epoch)
    cfgs = [
        RunConfig(
            dataset="toy-check",
            backbone=bundle.name,
            pretrained=None,
            method=method,
            shots=shots,
            epochs=epochs,
            n_views=2,
            precision=precision,
            grad_ratio=grad_ratio,
            noise_rate=0.5 if grad_ratio else 0.0,
            seed=s,
        )
        for s in range(1, runs + 1)
    ]
    rs = [engine.prepare(c, device, dataset=ds, bundle=bundle) for c in cfgs]
    cuda = rs[0].device.type == "cuda"
    _sync(device)
    t0 = time.perf_counter()
    sources = [engine.feature_source(r) for r in rs]  # encodes the views into the cache
    _sync(device)
    cache_s = time.perf_counter() - t0
    modules = [
        engine.build_module(r.cfg, bundle, ds, F.generator("init", r.cfg.seed)).to(r.device) for r in rs
    ]
    starts = {}

    def timed(epoch, batch):
        starts.setdefault(epoch, time.perf_counter())
        return sources[0](epoch, batch)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    hists = engine.fit(rs, modules, [timed, *sources[1:]])
    _sync(device)  # fit ends on .item(), but say so
    end = time.perf_counter()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    acc = engine.evaluate(
        modules[0], engine.test_features(rs[0]), ds.test.labels, rs[0].device, rs[0].precision
    )
    losses = [x for h in hists for x in h["train_loss"]]
    row = {
        "backbone": bundle.name,
        "method": method,
        "precision": precision,
        "forward_precision": rs[0].precision,
        "update_precision": "fp16" if rs[0].fp16_updates else "fp32",
        "n_classes": n_classes,
        "runs": runs,
        "steps_timed": (epochs - 1) * per_epoch,
        "s_per_step": (end - starts[2]) / ((epochs - 1) * per_epoch),
        "feature_cache_s": cache_s,
        "peak_gpu_mb": peak,
        "train_loss": hists[0]["train_loss"],
        "loss_finite": _finite(losses),
        "test_acc": acc,
    }
    if "stalled_updates" in hists[0]:
        row["stalled_updates"] = hists[0]["stalled_updates"]
    if grad_ratio:
        row["grad_norm_ratio"] = hists[0]["grad_norm_ratio"]
    return row


def check_training(bundle, device, sizes: Sizes) -> dict:
    rows = []
    for precision in ("auto", "coop-fp16"):
        row = train_probe(bundle, device, sizes.classes[0], sizes.timed_steps, precision=precision)
        _log(
            f"training {bundle.name} {precision}: {row['s_per_step'] * 1e3:.1f} ms/step, "
            f"loss {row['train_loss'][-1]:.3f}, peak {row['peak_gpu_mb'] or 0:.0f} MB"
        )
        rows.append(row)
    ok = all(r["loss_finite"] and math.isfinite(r["test_acc"]) for r in rows)
    stalled = [x for r in rows for x in r.get("stalled_updates", [])]
    ok = ok and bool(stalled) and all(0.0 <= x <= 1.0 for x in stalled)
    return {"passed": ok, "rows": rows}


# -- agreement with the plain CoOp step -------------------------------------------------------


@contextlib.contextmanager
def strict_fp32():
    """fp32 means fp32: no TF32 in cuDNN convolutions (on by default) or matmuls."""
    conv, mm = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    old = conv.fp32_precision, mm.fp32_precision
    conv.fp32_precision = mm.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, mm.fp32_precision = old


def check_agreement(backbone: str, device, n_classes: int, reference=None) -> dict:
    """One fp32 ``exact``-mode step of ptnl (engine.fit: BN-folded image tower, text truncated
    after the last EOT, shared [SOS][ctx] prefix) against ``reference`` (default
    ``ptnl.tools.bench.CoOpReference``) on the same pixels, initialisation and learning rate."""
    from ptnl.models.clip import load_clip
    from ptnl.tools import bench
    from ptnl.train import engine
    from ptnl.train import features as F
    from ptnl.train.config import RunConfig

    reference = reference or bench.CoOpReference
    bundle = load_clip(backbone, pretrained=None, device=device)  # its own: the reference changes its layout
    ds = bench.synthetic_dataset(
        n_classes, train_per_class=1, test_per_class=1, name=f"toy-agree-{n_classes}"
    )
    cfg = RunConfig(
        dataset="toy-agree",
        backbone=bundle.name,
        pretrained=None,
        shots=1,
        epochs=1,
        warmup_epochs=0,
        feature_mode="exact",
        precision="fp32",
    )
    with strict_fp32():
        r = engine.prepare(cfg, device, dataset=ds, bundle=bundle)
        m = engine.build_module(cfg, bundle, ds, F.generator("init", cfg.seed)).to(r.device)
        bundle.model.visual.to(memory_format=torch.contiguous_format)  # CoOp's CLIP is NCHW
        ref = reference(bundle, ds.classnames, m.prompt_learner.ctx)
        ctx0 = m.prompt_learner.ctx.detach().clone()
        batch = engine.epoch_batches(r.n_train, cfg.batch_size, F.generator("order", cfg.seed))[0]
        pixels = F.exact_batch(bundle, ds.train, r.train_idx[batch.numpy()], cfg.seed, 1)
        with torch.no_grad():
            fast = m(F.encode_images(bundle, pixels, r.device, "fp32"), m.class_embeddings())
            slow = ref(pixels.to(r.device))
        [hist] = engine.fit([r], [m], [engine.feature_source(r)])
        ref_losses = bench.reference_fit(r, ref)
    up_fast = (m.prompt_learner.ctx.detach() - ctx0).float()
    up_ref = (ref.ctx.detach() - ctx0).float()
    update_scale = float(up_ref.abs().max())
    row = {
        "backbone": bundle.name,
        "n_classes": n_classes,
        "batch": len(batch),
        "steps": len(ref_losses),
        "tf32": False,
        "reference_context_length": int(ref.prefix.shape[1] + ctx0.shape[0] + ref.suffix.shape[1]),
        "max_abs_logit": float(slow.abs().max()),
        "max_abs_diff_logits": float((fast.float() - slow.float()).abs().max()),
        "max_abs_diff_loss": float(np.max(np.abs(np.subtract(hist["train_loss"], ref_losses)))),
        "max_abs_update": update_scale,
        "max_abs_diff_update": float((up_fast - up_ref).abs().max()),
        "max_abs_diff_ctx": float((m.prompt_learner.ctx.detach() - ref.ctx.detach()).abs().max()),
        "tolerance": {"logits": LOGITS_ATOL, "loss": LOSS_ATOL, "update_relative": UPDATE_RTOL},
    }
    row["passed"] = bool(
        row["max_abs_diff_logits"] <= LOGITS_ATOL
        and row["max_abs_diff_loss"] <= LOSS_ATOL
        and update_scale > 0
        and row["max_abs_diff_update"] <= UPDATE_RTOL * update_scale
    )
    return row


# -- what the projection needs ----------------------------------------------------------------


def _synthetic_jpeg() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = JPEG_SIZE
    coarse = Image.fromarray((rng.normal(128, 50, size=(h // 8, w // 8, 3))).clip(0, 255).astype(np.uint8))
    fine = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.float64) + rng.normal(
        0, 8, size=(h, w, 3)
    )
    buf = io.BytesIO()
    Image.fromarray(fine.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def image_costs(bundle, repeats: int) -> dict:
    """CPU seconds per image to decode a JPEG, and per view to augment it (CoOp's crop) or
    preprocess it (centre crop), as features.cached_features does them: one after another."""
    from PIL import Image

    from ptnl.train import features as F

    data = _synthetic_jpeg()
    img = Image.open(io.BytesIO(data)).convert("RGB")
    g = torch.Generator().manual_seed(0)
    return {
        "jpeg_size": list(JPEG_SIZE),
        "decode_s": _median_s(lambda: Image.open(io.BytesIO(data)).convert("RGB"), repeats),
        "augment_s": _median_s(
            lambda: F.augment(img, bundle.image_size, bundle.mean, bundle.std, g), repeats
        ),
        "preprocess_s": _median_s(lambda: bundle.preprocess(img), repeats),
    }


def encode_s_per_image(bundle, device, precision: str, batch: int) -> float:
    from ptnl.train import features as F

    x = torch.randn(batch, 3, bundle.image_size, bundle.image_size)

    def once():
        F.encode_images(bundle, x, device, precision).cpu()

    return _median_s(once, 3) / batch


def cache_read_gb_s(mb: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.pt"
        torch.save({"features": torch.zeros(mb * 2**18)}, path)  # mb MiB of float32
        s = _median_s(lambda: torch.load(path, map_location="cpu", weights_only=True), 2)
    return mb / 1024 / s


def linear_probe_s(n_classes: int, dim: int, shots: int = 16) -> float:
    from ptnl.models import heads as baselines

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), shots)
    x = rng.normal(size=(len(y), dim)) + rng.normal(size=(n_classes, dim))[y]
    t0 = time.perf_counter()
    baselines.linear_probe(x, y, n_classes=n_classes, seed=1)
    return time.perf_counter() - t0


def measure_step_times(bundle, device, sizes: Sizes, single_small: dict | None = None) -> dict:
    """Everything ``project_grid`` multiplies run counts by, for one backbone (precision "auto",
    the grid's). ``single_small``: the training check's own auto row, reused."""
    from ptnl.train.engine import resolve_precision

    c1, c2 = sizes.classes
    probe = lambda c, **kw: train_probe(bundle, device, c, sizes.timed_steps, **kw)  # noqa: E731
    rows = {
        "single_small": single_small or probe(c1),
        "single_large": probe(c2),
        "group_small": probe(c1, runs=sizes.group),
        "group_large": probe(c2, runs=sizes.group),
        "grad_ratio": probe(c1, grad_ratio=True),
        "classifier_r": probe(c1, method="classifier_r"),
        "tenc_ft": probe(c1, method="tenc_ft"),
    }
    s = {k: r["s_per_step"] for k, r in rows.items()}
    out = {
        "classes": [c1, c2],
        "single_s": [s["single_small"], s["single_large"]],
        "group_runs": sizes.group,
        "group_s": [s["group_small"], s["group_large"]],
        "grad_ratio_factor": s["grad_ratio"] / s["single_small"],
        "linear_head_s": s["classifier_r"],
        "tenc_ft_factor": s["tenc_ft"] / s["single_small"],
        "encode_s_per_image": encode_s_per_image(
            bundle, device, resolve_precision("auto", torch.device(device)), sizes.encode_batch
        ),
        **image_costs(bundle, sizes.repeats),
        "linear_probe_s": linear_probe_s(c1, bundle.embed_dim),
        "linear_probe_classes": c1,
        "feature_dim": bundle.embed_dim,
        "cache_read_gb_s": cache_read_gb_s(sizes.read_mb),
    }
    ok = all(r["loss_finite"] for r in rows.values()) and _finite(v for v in s.values())
    return {"passed": bool(ok), "timings": out, "rows": list(rows.values())}


# -- the paper grid ---------------------------------------------------------------------------


def grid_runs(param_set: str = PARAM_SET) -> list[tuple[str, object, int]]:
    """(notebook, config, group_size) for every distinct run of the set's notebooks, in the
    notebook that first asks for it (a run shared by notebooks trains once)."""
    from ptnl.sections import experiments
    from ptnl.tools import notebooks

    seen = {}
    for nb in sorted(notebooks.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")):
        section = experiments.NOTEBOOK_SECTIONS.get(nb.stem)
        if section is None:
            continue
        params = experiments.notebook_params(nb, param_set)
        group = int(params.get("group_size", 1))
        for c in experiments.build(section, params):
            seen.setdefault((params.get("experiment", param_set), c.run_id), (nb.stem, c, group))
    return list(seen.values())


def _steps(cfg, n_classes: int) -> int:
    n = cfg.shots * n_classes
    return cfg.epochs * (1 if n < cfg.batch_size else n // cfg.batch_size)


def _line(t: dict, key: str, c: float) -> float:
    (c1, c2), (y1, y2) = t["classes"], t[key]
    return max(0.0, y1 + (y2 - y1) * (c - c1) / (c2 - c1))


def step_s(t: dict, n_classes: int, runs: int = 1) -> float:
    """Seconds per step of ``runs`` prompt-tuning runs trained together at ``n_classes``."""
    one = _line(t, "single_s", n_classes)
    if runs == 1:
        return one
    return one + (runs - 1) / (t["group_runs"] - 1) * (_line(t, "group_s", n_classes) - one)


def _union(n_classes: int, n_train: int, shots: int, n_seeds: int) -> float:
    """Expected distinct images in ``n_seeds`` independent ``shots``-per-class draws."""
    per_class = n_train / n_classes
    k = min(shots, per_class)
    return n_classes * per_class * (1.0 - (1.0 - k / per_class) ** n_seeds)


def _train_s(cfg, t: dict, n_classes: int) -> tuple[float, float]:
    """(GPU seconds, CPU seconds) of one run's training, alone."""
    steps = _steps(cfg, n_classes)
    if cfg.method in UNTRAINED:
        return 0.0, 0.0
    if cfg.method == "linear_probe":
        return 0.0, t["linear_probe_s"] * n_classes / t["linear_probe_classes"]
    if cfg.method == "visual_ft":
        per_image = t["decode_s"] + t["augment_s"] + 3 * t["encode_s_per_image"]
        return steps * cfg.batch_size * per_image, 0.0
    grad = t["grad_ratio_factor"] if cfg.grad_ratio else 1.0
    if cfg.method in HEADS:
        return steps * t["linear_head_s"] * grad, 0.0
    if cfg.method == "tenc_ft":
        return steps * step_s(t, n_classes) * t["tenc_ft_factor"], 0.0
    return steps * step_s(t, n_classes) * grad, 0.0


def project_grid(timings: dict, param_set: str = PARAM_SET) -> dict:
    """Projected wall time of ``param_set``'s grid from per-backbone ``timings``
    (``measure_step_times``), one GPU, runs one after another."""
    from ptnl.train import sweep
    from ptnl.train.config import RunConfig

    entries = grid_runs(param_set)
    configs = [(nb, getattr(c, "prompt", c), g, not isinstance(c, RunConfig)) for nb, c, g in entries]
    missing = sorted({c.backbone for _, c, _, _ in configs} - set(timings))
    unknown = sorted({c.dataset for _, c, _, _ in configs} - set(DATASET_SIZES))
    if missing or unknown:
        raise ValueError(f"no timings for backbones {missing} / no sizes for datasets {unknown}")

    # what each (dataset, backbone) must encode once
    needs = defaultdict(
        lambda: {"view_seeds": set(), "views": 0, "center_seeds": set(), "full_center": False}
    )
    for _, c, _, upl in configs:
        need = needs[(c.dataset, c.backbone)]
        need["full_center"] |= upl  # UPL pseudo-labels the whole train split
        if c.method in UNTRAINED or c.feature_mode == "exact":
            pass
        elif c.feature_mode == "views":
            need["view_seeds"].add(c.seed)
            need["views"] = max(need["views"], c.views_per_image)
        else:
            need["center_seeds"].add(c.seed)
        if c.noise_kind == "confusion" and c.noise_rate > 0:  # zero-shot scores of the few-shot set
            need["center_seeds"].add(c.seed)

    encode_h, refs = {}, {}
    for (ds, bb), need in needs.items():
        t, (n_cls, n_train, n_test) = timings[bb], DATASET_SIZES[ds]
        enc = t["encode_s_per_image"]
        u_views = _union(n_cls, n_train, 16, len(need["view_seeds"])) if need["view_seeds"] else 0.0
        n_center = (
            n_train
            if need["full_center"]
            else _union(n_cls, n_train, 16, len(need["center_seeds"]))
            if need["center_seeds"]
            else 0.0
        )
        centre = t["decode_s"] + t["preprocess_s"] + enc
        seconds = (
            u_views * (t["decode_s"] + need["views"] * (t["augment_s"] + enc)) + (n_center + n_test) * centre
        )
        encode_h[f"{ds} / {bb}"] = seconds / 3600
        refs[(ds, bb)] = {"views": u_views * need["views"], "center": n_center, "test": n_test}

    def read_s(c) -> float:
        t, r = timings[c.backbone], refs[(c.dataset, c.backbone)]
        n = r["test"] + (0 if c.method in UNTRAINED or c.feature_mode == "exact" else r[c.feature_mode])
        return n * t["feature_dim"] * 4 / 2**30 / t["cache_read_gb_s"]

    gpu_h, cpu_h, read_h = Counter(), Counter(), Counter()
    groups = defaultdict(list)
    for nb, c, g, upl in configs:
        read_h[nb] += read_s(c) / 3600
        if g > 1 and not upl and not c.grad_ratio and sweep.groupable(c):
            groups[(nb, g, sweep.group_key(c))].append(c)
            continue
        gs, cs = _train_s(c, timings[c.backbone], DATASET_SIZES[c.dataset][0])
        gpu_h[nb] += gs / 3600
        cpu_h[nb] += cs / 3600
    for (nb, g, _), members in groups.items():
        c0, n_cls = members[0], DATASET_SIZES[members[0].dataset][0]
        for start in range(0, len(members), g):
            runs = len(members[start : start + g])
            gpu_h[nb] += _steps(c0, n_cls) * step_s(timings[c0.backbone], n_cls, runs) / 3600

    hours = {
        "training_gpu": sum(gpu_h.values()),
        "linear_probe_cpu": sum(cpu_h.values()),
        "feature_encoding": sum(encode_h.values()),
        "cache_reads": sum(read_h.values()),
    }
    hours["total"] = sum(hours.values())
    by_notebook = {
        nb: round(gpu_h[nb] + cpu_h[nb] + read_h[nb], 3) for nb in sorted({nb for nb, *_ in configs})
    }
    return {
        "param_set": param_set,
        "runs": len(configs),
        "runs_by_notebook": dict(sorted(Counter(nb for nb, *_ in configs).items())),
        "runs_by_method": dict(
            sorted(Counter(c.method + (" (UPL)" if u else "") for _, c, _, u in configs).items())
        ),
        "runs_by_dataset": dict(sorted(Counter(c.dataset for _, c, _, _ in configs).items())),
        "runs_by_backbone": dict(sorted(Counter(c.backbone for _, c, _, _ in configs).items())),
        "hours": {k: round(v, 3) for k, v in hours.items()},
        "hours_by_notebook_excluding_encoding": by_notebook,
        "feature_encoding_hours": {k: round(v, 3) for k, v in sorted(encode_h.items())},
        "per_run_s": _examples(timings, configs),
        "assumptions": ASSUMPTIONS,
    }


def _examples(timings: dict, configs) -> dict:
    from ptnl.train.config import RunConfig

    out = {}
    group = max((g for _, _, g, _ in configs), default=1)
    for bb, t in timings.items():
        for ds, runs in (("DTD", group), ("ImageNet", 1)):
            c = RunConfig(dataset=ds, backbone=bb)
            n_cls = DATASET_SIZES[ds][0]
            how = "alone" if runs == 1 else f"in a group of {runs}"
            key = f"prompt {bb} {ds} ({n_cls} classes, 16 shots, 50 epochs), {how}"
            out[key] = round(_steps(c, n_cls) * step_s(t, n_cls, runs) / runs, 2)
    return out


ASSUMPTIONS = [
    "one GPU, runs one after another; the CPU's augmentation and the GPU's work do not overlap",
    "step times measured with random weights, precision 'auto' (bf16 autocast on the GPU), n_ctx=16 "
    "(runs with 4 or 8 context tokens are counted at 16), linear in the class count between the two "
    "measured class counts (the text pass covers every class); the synthetic class names are 2-3 "
    "tokens, real ones up to ~10, so the text pass is somewhat longer in the real grid",
    "groupable runs (sweep.groupable, sweep.group_key) of a notebook train in groups of its group_size; "
    "a group of R costs the single step plus (R-1)/(G-1) of the measured group's extra over it",
    "grad_ratio runs and UPL members are counted as single runs; grad_ratio at the measured factor",
    "linear heads (classifier_r/_free/_c): the measured classifier_r step at every class count",
    "tenc_ft: the measured factor over a prompt step, scaled with the class count like prompt tuning",
    "linear probe (sklearn on the CPU, its C search included): measured on synthetic class-structured "
    "features at the small class count with 16 shots, scaled linearly with the class count (real "
    "features may need more L-BFGS iterations)",
    "visual_ft: per image, decode + augment on the CPU + 3x the backbone's measured image forward "
    "(the backbone's tower standing in for the ImageNet ResNet-50)",
    "feature encoding once per (dataset, backbone): the expected union of the seeds' 16-shot draws "
    "x 50 views, the test split, centre crops of the few-shot union (linear probe, confusion "
    "noise) or of the whole train split (UPL); decode/augment measured on one synthetic JPEG of "
    "JPEG_SIZE on this CPU, one image after another as features.cached_features does",
    "every run loads its feature files whole at the measured torch.load rate",
    "untrained runs (zero-shot, random prompts) cost their cache reads only",
    "dataset sizes: CoOp's table (DATASET_SIZES)",
]


# -- bench ------------------------------------------------------------------------------------


def check_bench(backbone: str, device, steps: int) -> dict:
    from ptnl.tools import bench

    with tempfile.TemporaryDirectory() as tmp:
        res = bench.run_benchmarks(
            [backbone], steps, device, out_path=Path(tmp) / "bench.json", in_process=True
        )
    rows = [{k: v for k, v in r.items() if k != "losses"} for r in res["rows"]]
    by = {r["mode"]: r for r in rows}
    exact = by.get("exact", {})
    ratios = {
        "views_vs_reference": by.get("views", {}).get("speedup_vs_reference"),
        "center_vs_reference": by.get("center", {}).get("speedup_vs_reference"),
        "exact_vs_reference": exact.get("speedup_vs_reference"),
        "group16_vs_16_sequential": by.get("group16", {}).get("speedup_vs_sequential"),
    }
    targets = {r["mode"]: {"target": r["target"], "met": r["meets_target"]} for r in rows if "target" in r}
    ok = all(r["step_s"] > 0 and math.isfinite(r["step_s"]) for r in rows) and all(
        v is not None and math.isfinite(v) for v in ratios.values()
    )
    return {
        "passed": bool(ok),
        "backbone": backbone,
        "steps": steps,
        "ratios": ratios,
        "targets": targets,
        "exact_vs_reference_max_abs_diff": {
            "loss": exact.get("max_abs_diff_loss"),
            "ctx": exact.get("max_abs_diff_ctx"),
        },
        "rows": rows,
        "note": "rows measured in one process (peak_rss_mb is the process's); default fp32 settings "
        "(TF32 convolutions on), as `make bench` runs",
    }


# -- driver -----------------------------------------------------------------------------------


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
    from ptnl.models.clip import load_clip

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
                _log(f"{part} {bb} FAILED: {results[bb]['error']}")
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
                _log(f"paper grid: {checks['paper_grid']['runs']} runs, {checks['paper_grid']['hours']}")
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


def main(argv=None) -> int:
    from ptnl.core import paths

    ap = argparse.ArgumentParser(prog="python -m ptnl.tools.gpucheck", description=__doc__.split("\n")[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny random backbones (automatic without CUDA)")
    ap.add_argument("--out", default=None, help="JSON path (default build/gpucheck.json)")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="skip optional parts after this")
    ap.add_argument("--skip", default="", help="optional parts to leave out: step_times,paper_grid,bench")
    ap.add_argument("--set", default=PARAM_SET, help="parameter set of the projected grid")
    ns = ap.parse_args(argv)
    skip = tuple(s.strip() for s in ns.skip.split(",") if s.strip())
    bad = set(skip) - {"step_times", "paper_grid", "bench"}
    if bad:
        ap.error(f"only optional parts can be skipped, not {sorted(bad)}")
    out = Path(ns.out) if ns.out else paths.build_dir() / "gpucheck.json"
    report = run_check(out, ns.dry, ns.budget_s, skip, ns.set)
    failed = [k for k, c in report["checks"].items() if not c["passed"]]
    _log(
        f"{'PASSED' if report['passed'] else 'FAILED'} in {report['wall_s']} s"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + (f"; skipped: {'; '.join(report['skipped'])}" if report["skipped"] else "")
        + f"; wrote {out}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
