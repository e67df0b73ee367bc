"""Section 3 (notebook 01): prompt tuning with the generalized cross-entropy (GCE) loss.

The grid runs CE and GCE for each q of the notebook's ``qs`` (q = 1 is MAE up to a factor);
``loss_math_checks`` checks Section 3's statements about GCE numerically, ``gce_claims`` the
claims about q = 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from ptnl.core.checks import as_list
from ptnl.models.losses import get_loss
from ptnl.report.claims import CLAIM_COLUMNS, claim, exact
from ptnl.report.tables import acc, rates
from ptnl.sections.common import HIGH_NOISE, Section, config, grid, shared_fields
from ptnl.sections.parameters import RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig


def sec3_gce(
    backbone: str,
    dataset: str,
    noise_rates: Sequence[float],
    seeds: Sequence[int],
    epochs: int,
    qs: Sequence[float],
    shots: int = 16,
    feature_mode: str = "views",
    pretrained="default",
) -> list[RunConfig]:
    """Notebook 01: prompt tuning with CE and with GCE for each q in ``qs`` (q = 1 is MAE up to a factor)."""
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    out = grid([dataset], [("prompt", "ce")], noise_rates, seeds, **common)
    for q in as_list(qs, "qs"):
        if not isinstance(q, int | float) or not 0 < q <= 1:
            raise ValueError(f"every GCE q must be in (0, 1] (q -> 0 is CE, q = 1 is MAE), got {q!r}")
        for rate in noise_rates:
            for seed in seeds:
                out.append(
                    config(
                        dataset,
                        method="prompt",
                        loss="gce",
                        noise_rate=rate,
                        seed=seed,
                        loss_params={"q": float(q)},
                        **common,
                    )
                )
    return out


def loss_math_checks(n: int = 64, n_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """Section 3's statements about GCE, checked numerically on random logits (ptnl.models.losses)."""
    g = torch.Generator().manual_seed(seed)
    z = 3 * torch.randn(n, n_classes, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_classes, (n,), generator=g)
    p_y = z.softmax(-1).gather(1, y[:, None]).squeeze(1)
    ce = get_loss("ce")(z, y, reduction="none")
    gce_small = get_loss("gce", q=1e-4)(z, y, reduction="none")
    gce_one = get_loss("gce", q=1.0)(z, y, reduction="none")
    zq = z.clone().requires_grad_(True)
    get_loss("gce", q=0.5)(zq, y, reduction="none").sum().backward()
    zc = z.clone().requires_grad_(True)
    get_loss("ce")(zc, y, reduction="none").sum().backward()
    weighted = p_y.sqrt()[:, None] * zc.grad
    rows = [
        (
            "GCE tends to CE as q -> 0",
            "max |GCE(q=1e-4) - CE| / max CE",
            float((gce_small - ce).abs().max() / ce.abs().max()),
            1e-3,
        ),
        (
            "GCE at q = 1 is the MAE loss 1 - p_y",
            "max |GCE(q=1) - (1 - p_y)|",
            float((gce_one - (1 - p_y)).abs().max()),
            1e-9,
        ),
        (
            "GCE's gradient is CE's, weighted by p_y^q (q = 0.5)",
            "max |dGCE/dz - p_y^0.5 dCE/dz|",
            float((zq.grad - weighted).abs().max()),
            1e-9,
        ),
    ]
    return pd.DataFrame(
        [
            {
                "claim": c,
                "measured": m,
                # At machine precision the digits are the CPU's, not the maths': shown as a bound.
                "ours": f"< {EPS_BOUND:g}" if v < EPS_BOUND else f"{v:.1e}",
                "paper": "",
                "threshold": f"< {t:g}",
                "datasets": "",
                **exact(v < t),
            }
            for c, m, v, t in rows
        ],
        columns=list(CLAIM_COLUMNS),
    )


EPS_BOUND = 1e-12  # below this a float64 difference is rounding


def gce_claims(s: pd.DataFrame, q_best_margin: float = 2.0) -> list[dict]:
    """Notebook 01 (Section 3); ``s`` has variants "ce" and "gce q=<q>" of prompt tuning."""
    high = max(rates(s)) if len(s) else HIGH_NOISE

    def q_spread(s):
        by_q = {v: s[s["variant"] == v] for v in s["variant"].unique() if v.startswith("gce")}
        per_rate = []
        for r in rates(s):
            accs = {v: acc(f, v, r) for v, f in by_q.items()}
            best = pd.concat(accs, axis=1).max(axis=1)
            per_rate.append(best - accs["gce q=0.5"])
        return pd.concat(per_rate, axis=1).max(axis=1)

    return [
        claim(
            f"GCE (q = 0.5) beats cross-entropy for prompt tuning at {100 * high:g}% noise",
            f"acc(GCE q=0.5, {100 * high:g}%) - acc(CE, {100 * high:g}%)",
            lambda s: acc(s, "gce q=0.5", high) - acc(s, "ce", high),
            0.0,
        ),
        claim(
            "q = 0.5 is a good choice across noise rates: within 2 points of the best q at every rate",
            "max over rates of [acc(best q) - acc(q=0.5)]",
            q_spread,
            q_best_margin,
            direction="<",
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    "dataset",
    SHARED["noise_rates"].but(default=[0.0, 0.5]),
    "seeds",
    Parameter("qs", [0.25, 0.5, 1.0], "GCE q values; 1.0 is MAE; CE always runs alongside"),
    *RUN_SETTINGS,
)

SECTION = Section(
    "01_prompt_tuning_gce",
    "Section 3: prompt tuning with GCE",
    sec3_gce,
    parameters=PARAMETERS,
)
