"""Notebook 00, the quickstart: zero-shot CLIP, and prompt tuning at each noise rate.

Not a section of the paper but its setting in miniature: two claims that every later section
builds on (prompt tuning improves on zero-shot CLIP, with clean and with noisy labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.report.claims import claim
from ptnl.report.tables import acc, rates
from ptnl.sections.common import HIGH_NOISE, Section, config, grid, shared_fields
from ptnl.sections.parameters import SHARED
from ptnl.train.config import RunConfig


def quickstart(
    backbone: str,
    dataset: str,
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 00: zero-shot CLIP, and prompt tuning at each noise rate."""
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    return [
        config(dataset, method="zeroshot", **common),
        *grid([dataset], [("prompt", "ce")], noise_rates, seeds, **common),
    ]


def quickstart_claims(s: pd.DataFrame) -> list[dict]:
    high = max(rates(s)) if len(s) else HIGH_NOISE
    return [
        claim(
            "Prompt tuning on clean labels improves on zero-shot CLIP",
            "acc(prompt, 0%) - acc(zero-shot)",
            lambda s: acc(s, "prompt", 0.0) - acc(s, "zeroshot"),
            0.0,
        ),
        claim(
            f"Prompt tuning with {100 * high:g}% noisy labels still improves on zero-shot CLIP",
            f"acc(prompt, {100 * high:g}%) - acc(zero-shot)",
            lambda s: acc(s, "prompt", high) - acc(s, "zeroshot"),
            0.0,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    SHARED["backbone"].but(comment="toy-vit / toy-rn (toy world) or RN50 / ViT-B-32 (real CLIP)"),
    "pretrained",
    SHARED["dataset"].but(comment="a ptnl.data.toy.TOY_TASKS name, or one of the paper's datasets"),
    SHARED["noise_rates"].but(
        default=[0.0, 0.5], comment="share of each class's training labels replaced by a wrong class"
    ),
    SHARED["seeds"].but(comment="each seed draws its own few-shot set, noise and initialisation"),
    "epochs",
    "shots",
    "device",
    SHARED["group_size"].but(
        comment="prompt-tuning runs trained together in one batched text pass (1: one by one)"
    ),
    "workers",
    SHARED["feature_mode"].but(
        comment='precomputed augmented views (one per epoch); "exact" re-encodes every batch'
    ),
    SHARED["experiment"].but(comment="run-store folder: results/<experiment>/"),
    SHARED["save_figures"].but(
        comment="write figures/ (the toy set's are the committed ones; other experiments' go to "
        "figures/<experiment>/)"
    ),
)

SECTION = Section(
    "00_quickstart",
    "Quickstart: prompt tuning on clean and noisy labels vs zero-shot CLIP",
    quickstart,
    parameters=PARAMETERS,
)
