"""What the GPU check measures at: backbones, sizes, tolerances, the dataset table, the dry mode's
tiny backbones, and the environment it ran in."""

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
from ptnl.data.noisy_sets import NOISY_DATASETS
from ptnl.tools import bench
from ptnl.train.methods import METHODS, UNTRAINED_METHODS

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
    # The real noisy-label sets (ptnl.data.noisy_sets): Food-101N's 310,009 web images (its page) with
    # Food-101's official test split; CIFAR's 50,000 / 10,000 under each CIFAR-N label set.
    "Food101N": (101, 310009, 25250),
    **{n: (10, 50000, 10000) for n in NOISY_DATASETS if n.startswith("CIFAR10N")},
    **{n: (100, 50000, 10000) for n in NOISY_DATASETS if n.startswith("CIFAR100N")},
}
JPEG_SIZE = (500, 375)  # assumed typical photo size of the datasets (width, height)
UNTRAINED = UNTRAINED_METHODS  # runs that cost their cache reads only
HEADS = tuple(n for n, m in METHODS.items() if m.module == "linear_head")  # linear heads on features
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
    bench.register_tiny_clip(DRY_BACKBONES["RN50"], folder, TINY_RN_CONFIG)
    bench.register_tiny_clip(DRY_BACKBONES["ViT-B-32"], folder, bench.TINY_CONFIG)
    return dict(DRY_BACKBONES)
