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


SECTION = Section(
    "00_quickstart",
    "Quickstart: prompt tuning on clean and noisy labels vs zero-shot CLIP",
    quickstart,
)
