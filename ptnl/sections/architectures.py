"""Section 4.5 (notebook 05): context length and backbone (Figure 5, Table 3).

Figure 5 varies the number of context tokens (n_ctx = 0 is the class name alone) against the
linear probe with one backbone; Table 3 runs prompt tuning with each backbone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ptnl.core.checks import as_list
from ptnl.models.weights import canonical_name
from ptnl.report.claims import claim, min_over_rates
from ptnl.report.tables import RATIO_DECIMALS, acc, rates
from ptnl.sections.common import HIGH_NOISE, Section, config, grid, pretrained_by_backbone, unique
from ptnl.sections.parameters import RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig


def sec45_architectures(
    backbone: str,
    backbones: Sequence[str],
    datasets: Sequence[str],
    table3_datasets: Sequence[str],
    n_ctxs: Sequence[int],
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 05: Figure 5 (context lengths ``n_ctxs`` and the linear probe) with ``backbone`` on
    ``datasets``; Table 3 (prompt tuning, each of ``backbones``) on ``table3_datasets``.

    n_ctx = 0 is the paper's Ctx-0, the class name alone: there is nothing to train, so it runs
    once per dataset as an untrained prompt (``random_prompt`` with no context tokens), whose
    accuracy holds at every noise rate. ``pretrained`` may map each backbone to its weights."""
    weights = pretrained_by_backbone(pretrained, [backbone, *as_list(backbones, "backbones")])
    common = dict(epochs=epochs, shots=shots, feature_mode=feature_mode)
    main = dict(backbone=backbone, pretrained=weights[canonical_name(backbone)], **common)
    out = []
    for dataset in as_list(datasets, "datasets"):
        for n_ctx in as_list(n_ctxs, "n_ctxs"):
            if n_ctx == 0:  # Ctx-0 learns nothing: one untrained evaluation, the same at every noise rate
                out.append(config(dataset, method="random_prompt", n_ctx=0, **main))
                continue
            for rate in noise_rates:
                for seed in seeds:
                    out.append(
                        config(dataset, method="prompt", noise_rate=rate, seed=seed, n_ctx=n_ctx, **main)
                    )
    out += grid(datasets, [("linear_probe", "ce")], noise_rates, seeds, **main)
    for b in as_list(backbones, "backbones"):
        b_weights = weights[canonical_name(b)]
        out += grid(
            table3_datasets,
            [("prompt", "ce")],
            noise_rates,
            seeds,
            backbone=b,
            pretrained=b_weights,
            **common,
        )
    return unique(out)


def context_claims(s: pd.DataFrame, linear: str = "linear_probe") -> list[dict]:
    """Notebook 05, Figure 5: variants "ctx-<n>" (n = 0 is Ctx-0) and the linear probe."""
    ctx = (
        sorted((v for v in s["variant"].unique() if v.startswith("ctx-")), key=lambda v: int(v[4:]))
        if len(s)
        else []
    )
    learned = [v for v in ctx if v != "ctx-0"]

    def n_best(s):
        per_rate = []
        for r in rates(s):
            t = pd.concat({v: acc(s, v, r) for v in ctx}, axis=1)
            per_rate.append(t.idxmax(axis=1).nunique())
        return float(np.mean(per_rate)) if s["dataset"].nunique() > 1 else math.nan

    return [
        claim(
            "Every learned context length beats the linear probe at every noise rate",
            "min over rates and n_ctx > 0 of acc(ctx-n) - acc(linear probe)",
            lambda s: min_over_rates(
                s,
                lambda r: (
                    pd.concat({v: acc(s, v, r) for v in learned}, axis=1).min(axis=1) - acc(s, linear, r)
                ),
            ),
            0.0,
        ),
        claim(
            "The best context length depends on the dataset",
            "number of distinct best n_ctx across datasets (mean over rates)",
            n_best,
            1.0,
        ),
        claim(
            "At 50% noise Ctx-0 (class name only) beats some learned-context variant",
            "acc(ctx-0, 50%) - min over n_ctx > 0 of acc(ctx-n, 50%)",
            lambda s: (
                acc(s, "ctx-0", HIGH_NOISE)
                - pd.concat({v: acc(s, v, HIGH_NOISE) for v in learned}, axis=1).min(axis=1)
            ),
            0.0,
        ),
    ]


def backbone_claims(s: pd.DataFrame, backbones: Sequence[str], keep: float = 0.75) -> list[dict]:
    """Notebook 05, Table 3: prompt tuning per backbone (summary rows carry ``backbone``)."""
    a, b = (backbones[0], backbones[1]) if len(backbones) > 1 else (backbones[0], None)

    def retained(s):
        return pd.concat(
            [acc(s, "prompt", HIGH_NOISE, backbone=x) / acc(s, "prompt", 0.0, backbone=x) for x in backbones],
            axis=1,
        ).min(axis=1)

    def b_wins(s):
        if b is None:
            return math.nan
        wins = pd.concat(
            [acc(s, "prompt", r, backbone=b) > acc(s, "prompt", r, backbone=a) for r in rates(s)], axis=1
        )
        return wins.mean(axis=1)

    out = [
        claim(
            f"Prompt tuning keeps its accuracy at 50% noise with every backbone (>= {keep:.0%} of clean)",
            "min over backbones of acc(50%) / acc(0%)",
            retained,
            keep,
            decimals=RATIO_DECIMALS,
        )
    ]
    if b is not None:
        out.append(
            claim(
                f"{b} outperforms {a} under most settings",
                f"fraction of noise rates where acc({b}) > acc({a})",
                b_wins,
                0.5,
                decimals=RATIO_DECIMALS,
            )
        )
    return out


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    SHARED["backbone"].but(comment="the backbone of Figure 5"),
    Parameter("backbones", ["toy-rn", "toy-vit"], "Table 3 (paper: RN50, ViT-B-32)"),
    "pretrained",
    SHARED["datasets"].but(comment="Figure 5 (paper: OxfordPets, Food101, DTD, UCF101)"),
    Parameter("table3_datasets", ["toy-shapes", "toy-fine"], "Table 3 (paper: all eight)"),
    Parameter("n_ctxs", [0, 4, 16], "context lengths; 0 is Ctx-0 (class name only)"),
    "noise_rates",
    "seeds",
    *RUN_SETTINGS,
)

SECTION = Section(
    "05_architectures",
    "Section 4.5: context length and backbone (Figure 5, Table 3)",
    sec45_architectures,
    parameters=PARAMETERS,
)
