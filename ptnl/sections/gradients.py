"""Section 4.4 (notebook 04): noisy samples drive prompt tuning less (Figure 4).

Prompt tuning and a linear head at one noise rate, each run recording the per-epoch ratio of the
gradient norms of its noisy and its clean samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.report.claims import claim
from ptnl.report.tables import RATIO_DECIMALS, select
from ptnl.sections.common import SGD_LINEAR, Section, check_rate, grid, shared_fields
from ptnl.sections.parameters import SHARED
from ptnl.train.config import RunConfig


def sec44_gradients(
    backbone: str,
    datasets: Sequence[str],
    noise_rate: float,
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 04: prompt tuning and a linear head at one noise rate, recording the per-epoch
    noisy-to-clean gradient-norm ratio."""
    check_rate(noise_rate)
    if noise_rate == 0:
        raise ValueError(
            "the gradient-norm ratio needs noisy samples: set noise_rate > 0 (the paper uses 0.5)"
        )
    methods = [("prompt", "ce"), (SGD_LINEAR, "ce")]
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    return grid(datasets, methods, [noise_rate], seeds, grad_ratio=True, **common)


def sec44_claims(linear: str) -> list[dict]:
    """Notebook 04. The summary here is ``summarize(grad_ratio_frame(..), by=(dataset, variant, epoch), 'ratio')``."""

    def mean_ratio(s, v):
        return select(s, variant=v).groupby("dataset")["mean"].mean()

    def frac_epochs_lower(s):
        p = select(s, variant="prompt").set_index(["dataset", "epoch"])["mean"]
        lp = select(s, variant=linear).set_index(["dataset", "epoch"])["mean"]
        both = pd.concat({"p": p, "l": lp}, axis=1).dropna()
        return (both["p"] < both["l"]).groupby(level="dataset").mean()

    return [
        claim(
            "Noisy samples drive prompt tuning less than linear probing: lower noisy/clean gradient-norm ratio",
            "mean over epochs of ratio(linear) - ratio(prompt)",
            lambda s: mean_ratio(s, linear) - mean_ratio(s, "prompt"),
            0.0,
            decimals=RATIO_DECIMALS,
        ),
        claim(
            "... throughout training: prompt tuning's ratio is the lower one at most epochs",
            "fraction of epochs with ratio(prompt) < ratio(linear)",
            frac_epochs_lower,
            0.5,
            decimals=RATIO_DECIMALS,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    "datasets",
    "noise_rate",
    "seeds",
    "epochs",
    "shots",
    "device",
    "workers",
    "feature_mode",
    "experiment",
    "save_figures",
)

SECTION = Section(
    "04_noisy_gradients",
    "Section 4.4: noisy-to-clean gradient norms (Figure 4)",
    sec44_gradients,
    parameters=PARAMETERS,
    group_size=1,  # per-sample gradients are measured run by run
)
