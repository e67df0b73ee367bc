"""What the GPU check measures at: backbones, sizes, tolerances, the datasets' sizes (from their
specs), the dry mode's tiny backbones, and the environment it ran in."""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import open_clip
import torch

import ptnl
from ptnl.data.specs import NOISY_SPECS, SPECS
from ptnl.tools import speed
from ptnl.train.methods import METHODS, UNTRAINED_METHODS

BACKBONES = ("RN50", "ViT-B-32")
BUDGET_S = 270.0  # leaves half a minute of the five for start-up and the last part's overrun
PARAM_SET = "paper"
# Tolerances of the fp32 agreement check (logits are scaled by exp(logit_scale): 14.3 at random
# init, 100 with OpenAI's weights); the update is compared relative to its own size.
LOGITS_ATOL = 1e-3
LOSS_ATOL = 1e-4
UPDATE_RTOL = 1e-3
JPEG_SIZE = (500, 375)  # assumed typical photo size of the datasets (width, height)
UNTRAINED = UNTRAINED_METHODS  # runs that cost their cache reads only
HEADS = tuple(n for n, m in METHODS.items() if m.family.work == "head")  # linear heads on features
# A tiny ModifiedResNet (random weights) for the dry run; speed.TINY_CONFIG is the tiny ViT.
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


def dataset_sizes() -> dict[str, tuple[int, int, int]]:
    """(classes, train, test) of every real dataset, read now from its spec (``Spec.sizes``: CoOp's
    dataset table; ``NoisySpec.sizes`` for the noisy-label sets), so a spec added at run time has its own."""
    return {name: spec.sizes for name, spec in (*SPECS.items(), *NOISY_SPECS.items())}


def log(msg: str) -> None:
    print(f"gpucheck: {msg}", file=sys.stderr, flush=True)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def all_finite(xs) -> bool:
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
    folder = tempfile.mkdtemp(prefix="ptnl-gpucheck-cfg-")
    speed.register_tiny_clip(DRY_BACKBONES["RN50"], folder, TINY_RN_CONFIG)
    speed.register_tiny_clip(DRY_BACKBONES["ViT-B-32"], folder, speed.TINY_CONFIG)
    return dict(DRY_BACKBONES)
