"""Appendix (notebook 08): Tables 6-8 and Figures 8-9.

Random (untrained) prompts against chance (Table 8), GCE for prompt tuning and a linear head on
every dataset (Figure 8), the robust losses for prompt tuning (Figure 9), Tables 1-2 on every
dataset (Tables 6-7) and zero-shot CLIP on every dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.core.checks import as_list, is_int
from ptnl.models.losses import LABELS as LOSS_LABELS
from ptnl.report.claims import best_other, claim
from ptnl.report.tables import acc
from ptnl.sections.attribution import sec43_attribution
from ptnl.sections.common import (
    HIGH_NOISE,
    SGD_LINEAR,
    Section,
    config,
    grid,
    shared_fields,
    unique,
)
from ptnl.sections.common import SGD_LINEAR_LABELS as SGD_LINEAR_LABELS  # the notebook's figure labels
from ptnl.sections.parameters import RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig

ROBUST_LOSSES = ("ce", "gce", "sce", "nce_rce")
# Classes per dataset in the paper's splits (CoOp's), for chance levels of Table 8.
PAPER_N_CLASSES = {
    "OxfordPets": 37,
    "Caltech101": 100,
    "Flowers102": 102,
    "Food101": 101,
    "FGVCAircraft": 100,
    "DTD": 47,
    "UCF101": 101,
    "ImageNet": 1000,
}


def appendix(
    backbone: str,
    datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    random_prompt_draws: int,
    robust_losses: Sequence[str] = ROBUST_LOSSES,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 08: Table 8 (random prompts, ``random_prompt_draws`` draws), Figure 8 (GCE for
    prompt tuning and the linear probe), Figure 9 (robust losses for prompt tuning), Tables 6-7
    (Tables 1-2 on every dataset), and zero-shot CLIP on every dataset (what prompt tuning is
    measured against)."""
    if not is_int(random_prompt_draws) or random_prompt_draws < 1:
        raise ValueError(
            f"random_prompt_draws must be an integer >= 1 (the paper uses 100), got {random_prompt_draws!r}"
        )
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    out = [
        config(d, method="random_prompt", seed=s, **common)
        for d in as_list(datasets, "datasets")
        for s in range(1, random_prompt_draws + 1)
    ]
    out += [config(d, method="zeroshot", **common) for d in as_list(datasets, "datasets")]
    out += grid(
        datasets,
        [("prompt", loss) for loss in as_list(robust_losses, "robust_losses")]
        + [("linear_probe", "ce"), (SGD_LINEAR, "ce"), (SGD_LINEAR, "gce")],
        noise_rates,
        seeds,
        **common,
    )
    out += sec43_attribution(backbone, datasets, noise_rates, seeds, epochs, shots, feature_mode, pretrained)
    return unique(out)


def random_prompt_claims(chance: dict) -> list[dict]:
    """Table 8. ``chance``: dataset -> 100 / n_classes."""
    return [
        claim(
            "CLIP with random (untrained) prompts is far above chance on every dataset",
            "acc(random prompt) - 100/C",
            lambda s: (acc(s, "random_prompt") - pd.Series(chance, dtype=float)).dropna(),
            0.0,
        )
    ]


def robust_loss_claims(
    s: pd.DataFrame, head: str = "classifier_r", losses: Sequence[str] = ("gce", "sce", "nce_rce")
) -> list[dict]:
    """Notebook 08, Figures 8-9. ``head``: the SGD-trained linear head (variants head, head_gce)."""
    names = LOSS_LABELS
    out = [
        claim(
            "GCE improves prompt tuning at 50% noise (Fig. 8)",
            "acc(prompt GCE) - acc(prompt CE) at 50%",
            lambda s: acc(s, "prompt_gce", HIGH_NOISE) - acc(s, "prompt", HIGH_NOISE),
            0.0,
        ),
        claim(
            "GCE improves a linear probe at 50% noise (Fig. 8)",
            "acc(linear head GCE) - acc(linear head CE) at 50%",
            lambda s: acc(s, f"{head}_gce", HIGH_NOISE) - acc(s, head, HIGH_NOISE),
            0.0,
        ),
    ]
    for loss in losses:
        if loss == "gce":
            continue
        out.append(
            claim(
                f"{names.get(loss, loss)} also improves prompt tuning at 50% noise (Fig. 9)",
                f"acc(prompt {names.get(loss, loss)}) - acc(prompt CE) at 50%",
                lambda s, v=f"prompt_{loss}": acc(s, v, HIGH_NOISE) - acc(s, "prompt", HIGH_NOISE),
                0.0,
            )
        )
    others = [f"prompt_{x}" for x in losses if x != "gce"]
    if others:
        out.append(
            claim(
                "GCE is (slightly) the best of the robust losses at 50% noise (Fig. 9)",
                "acc(prompt GCE) - max(acc(prompt SCE), acc(prompt NCE+RCE)) at 50%",
                lambda s: acc(s, "prompt_gce", HIGH_NOISE) - best_other(s, others, HIGH_NOISE),
                0.0,
            )
        )
    return out


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    SHARED["datasets"].but(
        default=["toy-shapes", "toy-fine", "toy-textures", "toy-scatter"],
        comment="paper: seven datasets (all but ImageNet)",
    ),
    "noise_rates",
    "seeds",
    Parameter("random_prompt_draws", 20, "paper: 100"),
    Parameter("robust_losses", ["ce", "gce", "sce", "nce_rce"]),
    *RUN_SETTINGS,
)

SECTION = Section(
    "08_appendix",
    "Appendix: Tables 6-8, Figures 8-9",
    appendix,
    parameters=PARAMETERS,
)
