"""Section 4.6 (notebook 06): correlated (confusion) noise (Figure 6, Table 4).

Zero-shot confusion matrices with a random and with the hand-crafted prompt, and random vs
confusion noise, for prompt tuning and the linear probe, at one noise rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ptnl.core.checks import as_list
from ptnl.report.claims import claim
from ptnl.report.tables import RATIO_DECIMALS, acc
from ptnl.sections.common import HIGH_NOISE, Section, check_rate, config, grid, shared_fields, unique
from ptnl.sections.parameters import RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig


def sec46_correlated(
    backbone: str,
    datasets: Sequence[str],
    confusion_datasets: Sequence[str],
    noise_rate: float,
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    confusion_from: str = "matrix",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 06: zero-shot confusion matrices of CLIP with a random prompt (Figure 6) and with
    the hand-crafted prompt (the source of confusion noise) on ``confusion_datasets``; random vs
    confusion noise at ``noise_rate`` (Table 4) on ``datasets``. ``confusion_from`` picks each
    mislabelled image's wrong class: "matrix" (one per class, the paper's reading) or "sample"."""
    check_rate(noise_rate)
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    out = [
        config(d, method=m, seed=1, **common)
        for d in as_list(confusion_datasets, "confusion_datasets")
        for m in ("random_prompt", "zeroshot")
    ]
    for kind in ("symmetric", "confusion"):
        out += grid(
            datasets,
            [("linear_probe", "ce"), ("prompt", "ce")],
            [noise_rate],
            seeds,
            noise_kind=kind,
            **({"confusion_from": confusion_from} if kind == "confusion" else {}),
            **common,
        )
    return unique(out)


def confusion_concentration(matrix: np.ndarray) -> float:
    """How far zero-shot errors concentrate on one wrong class: mean over classes (with errors) of
    the largest off-diagonal share of the row's errors, minus the uniform share 1 / (C - 1)."""
    m = np.asarray(matrix, dtype=float)
    c = len(m)
    off = m * (1 - np.eye(c))
    errors = off.sum(1)
    has = errors > 0
    if c < 3 or not has.any():
        return math.nan
    share = off[has].max(1) / errors[has]
    return float(share.mean() - 1.0 / (c - 1))


def sec46_claims(linear: str = "linear_probe", concentration: dict | None = None) -> list[dict]:
    """Notebook 06. ``concentration``: dataset -> ``confusion_concentration`` of its zero-shot matrix."""

    def sym(v):
        return lambda s: (
            acc(s, v, HIGH_NOISE, noise_kind="symmetric") - acc(s, v, HIGH_NOISE, noise_kind="confusion")
        )

    out = []
    if concentration is not None:
        out.append(
            claim(
                "Zero-shot CLIP's errors are structured: each class is confused mostly with one other class",
                "mean largest share of a class's errors on one wrong class - 1/(C-1)",
                lambda s: pd.Series(concentration, dtype=float),
                0.0,
                decimals=RATIO_DECIMALS,
                on_paper=False,
            )
        )
    return out + [
        claim(
            "Confusion noise is harder than random noise for prompt tuning",
            "acc(prompt, random) - acc(prompt, confusion) at 50%",
            sym("prompt"),
            0.0,
        ),
        claim(
            "Confusion noise is harder than random noise for the linear probe",
            "acc(linear, random) - acc(linear, confusion) at 50%",
            sym(linear),
            0.0,
        ),
        claim(
            "Under confusion noise prompt tuning still beats the linear probe",
            "acc(prompt, confusion) - acc(linear, confusion) at 50%",
            lambda s: (
                acc(s, "prompt", HIGH_NOISE, noise_kind="confusion")
                - acc(s, linear, HIGH_NOISE, noise_kind="confusion")
            ),
            0.0,
        ),
        claim(
            "Under random noise prompt tuning beats the linear probe",
            "acc(prompt, random) - acc(linear, random) at 50%",
            lambda s: (
                acc(s, "prompt", HIGH_NOISE, noise_kind="symmetric")
                - acc(s, linear, HIGH_NOISE, noise_kind="symmetric")
            ),
            0.0,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    SHARED["datasets"].but(comment="Table 4 (paper: OxfordPets, Food101, DTD, UCF101)"),
    Parameter("confusion_datasets", ["toy-fine"], "Figure 6 (paper: OxfordPets, UCF101)"),
    "noise_rate",
    Parameter(
        "confusion_from",
        "matrix",
        'a mislabelled image\'s wrong class: "matrix" (one per class, the paper\'s) or "sample"',
    ),
    "seeds",
    *RUN_SETTINGS,
)

SECTION = Section(
    "06_correlated_noise",
    "Section 4.6: correlated noise (Figure 6, Table 4)",
    sec46_correlated,
    parameters=PARAMETERS,
)
