"""The costs the paper-grid projection multiplies run counts by: step times at two class counts,
alone and in a group, and the CPU and I/O costs around them; and ``ptnl.tools.speed``'s rows on
the GPU."""

from __future__ import annotations

import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ptnl.models import heads
from ptnl.models.clip import encode_images
from ptnl.tools import speed
from ptnl.tools.gpucheck.common import JPEG_SIZE, Sizes, all_finite
from ptnl.tools.gpucheck.probe import train_probe
from ptnl.train import features as F
from ptnl.train.engine import resolve_precision


def _synthetic_jpeg() -> bytes:
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


def encode_s_per_image(bundle, precision: str, batch: int) -> float:
    x = torch.randn(batch, 3, bundle.image_size, bundle.image_size)

    def once():
        encode_images(bundle, x, precision).cpu()

    return _median_s(once, 3) / batch


def cache_read_gb_s(mb: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.pt"
        torch.save({"features": torch.zeros(mb * 2**18)}, path)  # mb MiB of float32
        s = _median_s(lambda: torch.load(path, map_location="cpu", weights_only=True), 2)
    return mb / 1024 / s


def linear_probe_s(n_classes: int, dim: int, shots: int = 16) -> float:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), shots)
    x = rng.normal(size=(len(y), dim)) + rng.normal(size=(n_classes, dim))[y]
    t0 = time.perf_counter()
    heads.linear_probe(x, y, n_classes=n_classes, seed=1)
    return time.perf_counter() - t0


def measure_step_times(bundle, device, sizes: Sizes, single_small: dict | None = None) -> dict:
    """Everything ``project_grid`` multiplies run counts by, for one backbone (precision "auto",
    the grid's). ``single_small``: the training check's own auto row, reused."""
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
            bundle, resolve_precision("auto", torch.device(device)), sizes.encode_batch
        ),
        **image_costs(bundle, sizes.repeats),
        "linear_probe_s": linear_probe_s(c1, bundle.embed_dim),
        "linear_probe_classes": c1,
        "feature_dim": bundle.embed_dim,
        "cache_read_gb_s": cache_read_gb_s(sizes.read_mb),
    }
    ok = all(r["loss_finite"] for r in rows.values()) and all_finite(v for v in s.values())
    return {"passed": bool(ok), "timings": out, "rows": list(rows.values())}


# -- bench ------------------------------------------------------------------------------------


def check_bench(backbone: str, device, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        res = speed.run_benchmarks(
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
