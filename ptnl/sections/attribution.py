"""Section 4.3 (notebook 03): what makes prompt tuning robust (Tables 1 and 2).

Table 1 varies the class embeddings (a linear head with random or CLIP initialisation, a
fine-tuned text encoder, prompt tuning); Table 2 varies which parts of the prompt are learned.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.report.claims import best_other, claim, min_over_rates
from ptnl.report.tables import acc, drop
from ptnl.sections.common import HIGH_NOISE, Section, grid, shared_fields
from ptnl.sections.parameters import RUN_SETTINGS, SHARED
from ptnl.train.config import RunConfig

TABLE1_METHODS = ("classifier_r", "classifier_c", "tenc_ft", "prompt")
TABLE2_METHODS = ("full_prompt", "cls_tuning", "prompt")


def sec43_attribution(
    backbone: str,
    datasets: Sequence[str],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 03: Table 1 (class embeddings) and Table 2 (which prompt parts are learned)."""
    methods = [(m, "ce") for m in dict.fromkeys(TABLE1_METHODS + TABLE2_METHODS)]
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    return grid(datasets, methods, noise_rates, seeds, **common)


def table1_claims(s: pd.DataFrame, competitive: float = -5.0) -> list[dict]:
    others = ("classifier_r", "classifier_c", "tenc_ft")
    return [
        claim(
            "Classifier-C (CLIP-initialised head) beats Classifier-R at every noise rate",
            "min over rates of acc(Classifier-C) - acc(Classifier-R)",
            lambda s: min_over_rates(s, lambda r: acc(s, "classifier_c", r) - acc(s, "classifier_r", r)),
            0.0,
        ),
        claim(
            "The CLIP initialisation is also more robust: Classifier-C drops less than Classifier-R",
            "drop(Classifier-R) - drop(Classifier-C)",
            lambda s: drop(s, "classifier_r") - drop(s, "classifier_c"),
            0.0,
        ),
        claim(
            "Prompt tuning is robust: it loses at most half as much accuracy to 50% noise as Classifier-R",
            "drop(prompt) - drop(Classifier-R) / 2",
            lambda s: drop(s, "prompt") - drop(s, "classifier_r") / 2,
            0.0,
            "<",
        ),
        claim(
            f"TEnc-FT is competitive with clean labels (within {-competitive:g} points of prompt tuning)",
            "acc(TEnc-FT, 0%) - acc(prompt, 0%)",
            lambda s: acc(s, "tenc_ft", 0.0) - acc(s, "prompt", 0.0),
            competitive,
        ),
        claim(
            "TEnc-FT overfits noisy labels: it drops more than prompt tuning",
            "drop(TEnc-FT) - drop(prompt)",
            lambda s: drop(s, "tenc_ft") - drop(s, "prompt"),
            0.0,
        ),
        claim(
            "Prompt tuning beats every alternative at every noise rate",
            "min over rates of acc(prompt) - max(acc(others))",
            lambda s: min_over_rates(s, lambda r: acc(s, "prompt", r) - best_other(s, others, r)),
            0.0,
        ),
        claim(
            "Prompt tuning's advantage is largest at high noise",
            "margin(50%) - margin(0%), margin = acc(prompt) - max(acc(others))",
            lambda s: (
                (acc(s, "prompt", HIGH_NOISE) - best_other(s, others, HIGH_NOISE))
                - (acc(s, "prompt", 0.0) - best_other(s, others, 0.0))
            ),
            0.0,
        ),
    ]


def table2_claims(s: pd.DataFrame) -> list[dict]:
    learned = ("cls_tuning", "full_prompt")
    return [
        claim(
            "With fixed class-name tokens (prompt tuning) accuracy at 50% noise is higher than when they are learned",
            "acc(prompt, 50%) - max(acc(CLS-Tuning), acc(Full-Prompt-Tuning))",
            lambda s: acc(s, "prompt", HIGH_NOISE) - best_other(s, learned, HIGH_NOISE),
            0.0,
        ),
        claim(
            "Learning the class-name tokens makes the model less robust: both drop more than prompt tuning",
            "min(drop(CLS-Tuning), drop(Full-Prompt-Tuning)) - drop(prompt)",
            lambda s: pd.concat([drop(s, m) for m in learned], axis=1).min(axis=1) - drop(s, "prompt"),
            0.0,
        ),
        claim(
            "Even with clean labels, learning the class-name tokens does not help",
            "acc(prompt, 0%) - max(acc(CLS-Tuning), acc(Full-Prompt-Tuning), 0%)",
            lambda s: acc(s, "prompt", 0.0) - best_other(s, learned, 0.0),
            0.0,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    "datasets",
    "noise_rates",
    "seeds",
    *RUN_SETTINGS,
)

SECTION = Section(
    "03_robustness_attribution",
    "Section 4.3: class embeddings and learned prompt parts (Tables 1, 2)",
    sec43_attribution,
    parameters=PARAMETERS,
)
