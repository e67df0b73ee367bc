"""Section 4.2 (notebook 02): prompt tuning is robust to noisy labels (Figures 1 and 2).

Figure 2 compares prompt tuning and a linear head, each with CE and GCE, and the sklearn linear
probe; Figure 1 adds visual fine-tuning on its own datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.core.checks import as_list
from ptnl.report.claims import claim
from ptnl.report.tables import acc, drop
from ptnl.sections.common import HIGH_NOISE, SGD_LINEAR, Section, grid, shared_fields
from ptnl.sections.common import SGD_LINEAR_LABELS as SGD_LINEAR_LABELS  # the notebook's figure labels
from ptnl.sections.parameters import NONE, RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig

SEC42_FIG2 = (
    ("prompt", "ce"),
    ("prompt", "gce"),
    ("linear_probe", "ce"),
    (SGD_LINEAR, "ce"),
    (SGD_LINEAR, "gce"),
)


def sec42_robustness(
    backbone: str,
    datasets: Sequence[str],
    fig1_datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
    resnet50_weights: str | None = None,
) -> list[RunConfig]:
    """Notebook 02: Figure 2 (prompt tuning and a linear head, CE and GCE; the sklearn linear
    probe) on ``datasets``, and Figure 1's extra baseline, visual fine-tuning, on ``fig1_datasets``
    (an empty list skips Figure 1). ``resnet50_weights``: the ImageNet ResNet-50 file visual
    fine-tuning starts from on a real backbone (None: torchvision's, from torch's cache)."""
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    runs = grid(datasets, SEC42_FIG2, noise_rates, seeds, **common)
    if isinstance(fig1_datasets, list | tuple) and not fig1_datasets:
        return runs  # Figure 1 skipped
    fig1 = as_list(fig1_datasets, "fig1_datasets")
    visual = grid(fig1, [("visual_ft", "ce")], noise_rates, seeds, **common)
    if resnet50_weights is not None:
        visual = [c.replace(visual_weights=str(resnet50_weights)) for c in visual]
    return runs + visual


def sec42_claims(
    s: pd.DataFrame,
    linear: str = "linear_probe",
    head: str = "classifier_r",
    finetune: str = "visual_ft",
    competitive: float = -5.0,
) -> list[dict]:
    """Notebook 02. ``linear``: the sklearn linear probe (CE only); ``head``: the SGD-trained linear
    head that also runs with GCE (variants ``head`` and ``head_gce``)."""
    linear_gce, head_ce = f"{head}_gce", head
    return [
        claim(
            "Prompt tuning loses less accuracy from 0% to 50% noise than the linear probe (Fig. 1, 2)",
            "drop(linear probe) - drop(prompt), drop = acc(0%) - acc(50%)",
            lambda s: drop(s, linear) - drop(s, "prompt"),
            0.0,
        ),
        claim(
            "Prompt tuning loses less accuracy from 0% to 50% noise than fine-tuning (Fig. 1)",
            "drop(visual FT) - drop(prompt)",
            lambda s: drop(s, finetune) - drop(s, "prompt"),
            0.0,
        ),
        claim(
            f"With clean labels the linear probe is competitive (within {-competitive:g} points of prompt tuning)",
            "acc(linear probe, 0%) - acc(prompt, 0%)",
            lambda s: acc(s, linear, 0.0) - acc(s, "prompt", 0.0),
            competitive,
        ),
        claim(
            "At 50% noise prompt tuning beats the linear probe",
            "acc(prompt, 50%) - acc(linear probe, 50%)",
            lambda s: acc(s, "prompt", HIGH_NOISE) - acc(s, linear, HIGH_NOISE),
            0.0,
        ),
        claim(
            "At 50% noise prompt tuning beats fine-tuning",
            "acc(prompt, 50%) - acc(visual FT, 50%)",
            lambda s: acc(s, "prompt", HIGH_NOISE) - acc(s, finetune, HIGH_NOISE),
            0.0,
        ),
        claim(
            "GCE further improves prompt tuning at 50% noise",
            "acc(prompt GCE, 50%) - acc(prompt CE, 50%)",
            lambda s: acc(s, "prompt_gce", HIGH_NOISE) - acc(s, "prompt", HIGH_NOISE),
            0.0,
        ),
        claim(
            "GCE also improves a linear probe at 50% noise (Fig. 2)",
            "acc(linear head GCE, 50%) - acc(linear head CE, 50%)",
            lambda s: acc(s, linear_gce, HIGH_NOISE) - acc(s, head_ce, HIGH_NOISE),
            0.0,
        ),
        claim(
            "Robustness needs prompt tuning, not GCE alone: with GCE, prompt tuning drops less than a linear probe",
            "drop(linear head GCE) - drop(prompt GCE)",
            lambda s: drop(s, linear_gce) - drop(s, "prompt_gce"),
            0.0,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    SHARED["datasets"].but(comment="Figure 2 (paper: OxfordPets, Food101, DTD, UCF101)"),
    Parameter(
        "fig1_datasets",
        ["toy-shapes"],
        "Figure 1 adds visual fine-tuning here (paper: DTD, UCF101); [] skips Figure 1",
    ),
    Parameter(
        "resnet50_weights",
        None,
        "visual fine-tuning's ImageNet ResNet-50 file (real backbones); None: torchvision's, from torch's cache",
        types=(str, NONE),
    ),
    "noise_rates",
    "seeds",
    *RUN_SETTINGS,
)

SECTION = Section(
    "02_noise_robustness",
    "Section 4.2: robustness to noisy labels (Figures 1, 2)",
    sec42_robustness,
    parameters=PARAMETERS,
)
