"""The required checks: prompt-tuning steps through the engine, and one ``exact`` step against
the plain CoOp step (``ptnl.tools.speed.CoOpReference``)."""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch

from ptnl.models.clip import encode_images, load_clip
from ptnl.tools import speed
from ptnl.tools.gpucheck.common import (
    LOGITS_ATOL,
    LOSS_ATOL,
    UPDATE_RTOL,
    Sizes,
    all_finite,
    log,
    sync,
)
from ptnl.train import engine, methods
from ptnl.train import features as F
from ptnl.train.config import RunConfig
from ptnl.train.loop import accuracy, fit

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
    """Train ``runs`` runs together (``ptnl.train.loop.fit``) on a synthetic dataset of ``n_classes``
    classes, two images per class (all of them the few-shot set), views mode; time the steps
    after the first epoch."""
    # its own name per class count: the feature cache is keyed by dataset name and image ref
    ds = speed.synthetic_dataset(
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
    sync(device)
    t0 = time.perf_counter()
    sources = [F.feature_source(r) for r in rs]  # encodes the views into the cache
    sync(device)
    cache_s = time.perf_counter() - t0
    modules = [methods.init_module(methods.get(r.cfg.method), r.cfg, bundle, ds, r.device) for r in rs]
    starts = {}

    def timed(epoch, batch):
        starts.setdefault(epoch, time.perf_counter())
        return sources[0](epoch, batch)

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    hists = fit(rs, modules, [timed, *sources[1:]])
    sync(device)  # fit ends on .item(), but say so
    end = time.perf_counter()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    acc = accuracy(modules[0], F.test_features(rs[0]), ds.test.labels, rs[0].device, rs[0].precision)
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
        "loss_finite": all_finite(losses),
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
        log(
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
    """One fp32 ``exact``-mode step of ptnl (``ptnl.train.loop.fit``: BN-folded image tower, text truncated
    after the last EOT, shared [SOS][ctx] prefix) against ``reference`` (default
    ``ptnl.tools.speed.CoOpReference``) on the same pixels, initialisation and learning rate."""
    reference = reference or speed.CoOpReference
    bundle = load_clip(backbone, pretrained=None, device=device)  # its own: the reference changes its layout
    ds = speed.synthetic_dataset(
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
        m = methods.init_module(methods.get(cfg.method), cfg, bundle, ds, r.device)
        bundle.model.visual.to(memory_format=torch.contiguous_format)  # CoOp's CLIP is NCHW
        ref = reference(bundle, ds.classnames, m.prompt_learner.ctx)
        ctx0 = m.prompt_learner.ctx.detach().clone()
        batch = F.epoch_batches(r.n_train, cfg.batch_size, F.generator("order", cfg.seed))[0]
        pixels = F.exact_batch(bundle, ds.train, r.train_idx[batch.numpy()], cfg.seed, 1)
        with torch.no_grad():
            fast = m(encode_images(bundle, pixels, "fp32"), m.class_embeddings())
            slow = ref(pixels.to(r.device))
        [hist] = fit([r], [m], [F.feature_source(r)])
        ref_losses = speed.reference_fit(r, ref)
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
