"""Seed intervals for the paper's core quantities: a bootstrap over seeds, resampled within each
dataset, for the drop ratio (``drop_ratio_interval``) and for an accuracy gap (``gap_interval``).
The intervals say how far the seeds at hand pin a mean down, not how it would move on other
datasets; ``show_interval`` prints either as one line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ptnl.report.tables import RATIO_DECIMALS, tidy


def _seed_bootstrap(per_dataset: list[np.ndarray], n_boot: int, seed: int) -> np.ndarray:
    """``per_dataset``: one [k, n_seeds] array per dataset, k quantities measured per seed. Each
    dataset's seeds are resampled with replacement, a seed's k quantities together. Returns
    [k, n_boot]: per resample, the mean over datasets of each quantity's mean over seeds."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for a in per_dataset:
        idx = rng.integers(0, a.shape[1], size=(n_boot, a.shape[1]))
        total = total + a[:, idx].mean(-1)
    return total / len(per_dataset)


def _percentile_interval(boots: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def drop_ratio_interval(
    df: pd.DataFrame,
    variant: str = "prompt",
    reference: str = "classifier_r",
    high: float = 0.5,
    low: float = 0.0,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict:
    """The core claim's mean ratio (``drop_ratio_table``'s ``mean`` row) with a bootstrap
    interval over seeds: how far the seeds at hand pin the ratio down.

    Within each dataset the seeds are resampled with replacement, a seed's four runs (both
    methods, both rates) kept together: they share the few-shot images, the noise draw and the
    initialisation, so their drops are paired. The interval covers seed-to-seed variation only,
    not other datasets or another world. ``df`` holds one row per run (``ptnl.sections.common.results``),
    not seed means; seeds missing any of the four runs are left out. Returns ``ratio``, ``low``,
    ``high`` (NaN with fewer than 2 seeds in some dataset), ``level``, ``n_seeds`` (the fewest
    complete seeds of any dataset) and ``n_boot``.
    """
    t = tidy(df) if "acc" not in df else df
    keep = t["variant"].isin([variant, reference]) & t["noise_rate"].isin([low, high])
    if "noise_kind" in t:
        keep &= t["noise_kind"] == "symmetric"
    t = t[keep]
    key = ["dataset", "seed", "variant", "noise_rate"]
    if t.duplicated(key).any():
        raise ValueError(
            "drop_ratio_interval needs one run per (dataset, seed, variant, noise_rate); "
            "filter df to one backbone and recipe first"
        )
    cols = [(variant, low), (variant, high), (reference, low), (reference, high)]
    piv = t.pivot_table(index=["dataset", "seed"], columns=["variant", "noise_rate"], values="acc")
    absent = [c for c in cols if c not in piv.columns]
    if absent:
        raise ValueError(f"drop_ratio_interval: no runs for {absent} (variant, noise_rate)")
    piv = piv[cols].dropna()
    d_v = (piv[cols[0]] - piv[cols[1]]).groupby(level="dataset")
    d_r = (piv[cols[2]] - piv[cols[3]]).groupby(level="dataset")
    datasets = sorted(d_v.groups)
    if not datasets:
        raise ValueError("drop_ratio_interval: no seed has all four runs")
    v = [d_v.get_group(d).to_numpy() for d in datasets]
    r = [d_r.get_group(d).to_numpy() for d in datasets]
    ratio = float(np.mean([x.mean() for x in v]) / np.mean([x.mean() for x in r]))
    n_seeds = min(len(x) for x in v)
    lo = hi = math.nan
    if n_seeds >= 2:
        num, den = _seed_bootstrap([np.stack([x, y]) for x, y in zip(v, r)], n_boot, seed)
        lo, hi = _percentile_interval(num / den, level)
    return {"ratio": ratio, "low": lo, "high": hi, "level": level, "n_seeds": n_seeds, "n_boot": n_boot}


def gap_interval(
    df: pd.DataFrame,
    variant: str = "prompt",
    baseline: str = "zeroshot",
    noise_rate: float = 0.0,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict:
    """Mean over datasets of acc(variant) - acc(baseline) at ``noise_rate``, with a bootstrap
    interval over the variant's seeds (resampled within each dataset). The baseline is averaged
    over its runs and held fixed: meant for an untrained one such as zero-shot, which has no
    seed. Same return keys as ``drop_ratio_interval``, with ``gap`` in points for ``ratio``."""
    t = tidy(df) if "acc" not in df else df
    if "noise_kind" in t:
        t = t[t["noise_kind"] == "symmetric"]
    base = t[t["variant"] == baseline].groupby("dataset")["acc"].mean()
    runs = t[(t["variant"] == variant) & (t["noise_rate"] == noise_rate)]
    if runs.duplicated(["dataset", "seed"]).any():
        raise ValueError("gap_interval needs one run per (dataset, seed); filter df first")
    datasets = sorted(set(runs["dataset"]) & set(base.index))
    if not datasets:
        raise ValueError(f"gap_interval: no dataset has both {variant!r} and {baseline!r} runs")
    x = [runs.loc[runs["dataset"] == d, "acc"].to_numpy() - base[d] for d in datasets]
    gap = float(np.mean([v.mean() for v in x]))
    n_seeds = min(len(v) for v in x)
    lo = hi = math.nan
    if n_seeds >= 2:
        [boots] = _seed_bootstrap([v[None] for v in x], n_boot, seed)
        lo, hi = _percentile_interval(boots, level)
    return {"gap": gap, "low": lo, "high": hi, "level": level, "n_seeds": n_seeds, "n_boot": n_boot}


def show_interval(iv: dict) -> str:
    """One line for ``drop_ratio_interval``'s or ``gap_interval``'s result."""
    if "gap" in iv:
        head, d, unit = f"mean gap {iv['gap']:+.2f} points", 2, " points"
    else:
        head, d, unit = f"mean ratio {iv['ratio']:.{RATIO_DECIMALS}f}", RATIO_DECIMALS, ""
    if math.isnan(iv["low"]):
        return f"{head}; {iv['n_seeds']} seed per dataset: no interval over seeds"
    sign = "+" if unit else ""
    return (
        f"{head}; {iv['level']:.0%} interval over seeds {iv['low']:{sign}.{d}f} to "
        f"{iv['high']:{sign}.{d}f}{unit} (bootstrap, {iv['n_seeds']} seeds per dataset)"
    )
