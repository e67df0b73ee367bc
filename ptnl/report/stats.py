"""Seed intervals for the paper's core quantities: a bootstrap over seeds, resampled within each
dataset, for the drop ratio (``drop_ratio_interval``) and for an accuracy gap (``gap_interval``).
The intervals say how far the seeds at hand pin a mean down, not how it would move on other
datasets; ``show_interval`` prints either as one line. ``draws`` and ``resampled`` resample a
whole summary's seeds, for the claims (``ptnl.report.claims``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ptnl.report.tables import RATIO_DECIMALS, SEEDS, SeedValues, tidy


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


# ------------------------------------------------------------------ resampling a summary's seeds
#
# A frame whose rows carry ``tables.SeedValues`` (``summarize``'s ``seeds`` column, the lab's cell
# table) is resampled as a whole: rows with the same seeds form a block, and a resample draws each
# block's seeds with replacement, n from n, a seed's values in every row of its block together
# (they share the few-shot images, the noise draw and the initialisation). Blocks of different
# seeds (random-prompt draws beside trained seeds) are drawn independently; a row with one seed
# (zero-shot CLIP, run at seed 1 only) or without ``SeedValues`` is the same in every resample.
# With n seeds there are only C(2n - 1, n) distinct draws: up to ``EXACT_UP_TO`` draws of all
# blocks together they are enumerated, each with its multinomial probability (no random numbers);
# beyond, ``MONTE_CARLO`` draws from a fixed seed.

EXACT_UP_TO = 500
MONTE_CARLO = 500


def seed_blocks(frame: pd.DataFrame, column: str = SEEDS) -> dict[tuple, list[int]]:
    """Row positions of each block (rows whose ``SeedValues`` have the same 2 or more seeds)."""
    out: dict[tuple, list[int]] = {}
    if column not in frame:
        return out
    for i, sv in enumerate(frame[column]):
        if isinstance(sv, SeedValues) and len(sv.labels) >= 2:
            out.setdefault(sv.labels, []).append(i)
    return out


def multisets(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every draw of n seeds from n with replacement, as counts [C(2n-1, n), n], with their
    probabilities (n! / prod(c!) / n^n), in a fixed order."""
    counts = np.array(
        [np.bincount(c, minlength=n) for c in itertools.combinations_with_replacement(range(n), n)]
    )
    logp = math.lgamma(n + 1) - np.array([sum(math.lgamma(c + 1) for c in row) for row in counts])
    return counts, np.exp(logp - n * math.log(n))


def n_multisets(n: int) -> int:
    return math.comb(2 * n - 1, n)


def draws(
    sizes: dict[tuple, int], exact_up_to: int = EXACT_UP_TO, n_mc: int = MONTE_CARLO, seed: int = 0
) -> tuple[list[dict[tuple, np.ndarray]], np.ndarray, bool]:
    """Resamples of the blocks ``sizes`` (block -> its number of seeds): a list of {block: counts
    per seed}, their probabilities, and whether they are the exact enumeration."""
    keys = sorted(sizes)
    if math.prod(n_multisets(sizes[k]) for k in keys) <= exact_up_to:
        per = [multisets(sizes[k]) for k in keys]
        out, probs = [], []
        for combo in itertools.product(*(range(len(c)) for c, _ in per)):
            out.append({k: per[j][0][i] for j, (k, i) in enumerate(zip(keys, combo))})
            probs.append(math.prod(per[j][1][i] for j, i in enumerate(combo)))
        return out, np.array(probs), True
    rng = np.random.default_rng(seed)
    blocks = {
        k: [np.bincount(rng.integers(0, sizes[k], sizes[k]), minlength=sizes[k]) for _ in range(n_mc)]
        for k in keys
    }
    return [{k: blocks[k][b] for k in keys} for b in range(n_mc)], np.full(n_mc, 1.0 / n_mc), False


def resampled(frame: pd.DataFrame, resamples: list[dict[tuple, np.ndarray]], column: str = SEEDS) -> list:
    """``frame`` once per resample (``draws``), the columns of every row in a drawn block
    recomputed from its ``SeedValues`` at the drawn counts; other rows as they are."""
    if not resamples:
        return []
    blocks = seed_blocks(frame, column)
    new: dict[str, np.ndarray] = {}  # column -> [resamples, rows]
    for key, rows in blocks.items():
        if key not in resamples[0]:
            continue
        counts = np.stack([r[key] for r in resamples]).astype(float)  # [B, n]
        for i in rows:
            sv = frame[column].iloc[i]
            pos = np.searchsorted(key, sv.seeds)
            w = counts[:, pos]  # [B, runs]
            m = (w[:, :, None] * sv.values[None]).sum(1) / w.sum(1)[:, None]  # [B, k]
            out = sv.derive(m) if sv.derive is not None else m
            for j, c in enumerate(sv.columns):
                if c not in new:
                    new[c] = np.repeat(frame[c].to_numpy(float)[None], len(resamples), axis=0)
                new[c][:, i] = out[:, j]
    frames = []
    for b in range(len(resamples)):
        f = frame.copy(deep=False)
        for c, values in new.items():
            f[c] = values[b]
        frames.append(f)
    return frames


def nudged(
    frame: pd.DataFrame, block: tuple, scramble: int | None = None, column: str = SEEDS
) -> pd.DataFrame:
    """``frame`` with every row of ``block`` recomputed from its ``SeedValues`` moved: each value
    (of row i, column j) shifted by a small amount of its own (``scramble=None``: 0.01 to 0.02, so
    that no difference of them cancels) or replaced by a number drawn in 0 to 100 (from the seed
    ``scramble``; what moves a count or an argmax). A value computed from the frame that moves
    under none of them reads nothing of the block (``ptnl.report.claims`` asks which seeds a claim
    reads)."""
    f = frame.copy(deep=False)
    rng = np.random.default_rng(0 if scramble is None else 1 + scramble)
    for i in seed_blocks(frame, column).get(block, []):
        sv = frame[column].iloc[i]
        k = sv.values.shape[1]
        m = sv.values.mean(0) + rng.uniform(0.01, 0.02, k) if scramble is None else rng.uniform(0, 100, k)
        out = sv.derive(m[None])[0] if sv.derive is not None else m
        for j, c in enumerate(sv.columns):
            values = f[c].to_numpy(float).copy()
            values[i] = out[j]
            f[c] = values
    return f


def weighted_interval(values, probs, level: float = 0.95) -> tuple[float, float]:
    """The ``level`` percentile interval of a discrete distribution (``values`` with ``probs``;
    NaN values left out): the smallest values whose cumulative probability reaches (1 - level) / 2
    and (1 + level) / 2 (the inverted CDF; no interpolation, so every end is a resampled value)."""
    v, p = np.asarray(values, float), np.asarray(probs, float)
    keep = ~np.isnan(v)
    if not keep.any():
        return math.nan, math.nan
    order = np.argsort(v[keep], kind="stable")
    v, p = v[keep][order], p[keep][order]
    cum = np.cumsum(p) / p.sum()
    ends = [v[min(np.searchsorted(cum, q - 1e-12), len(v) - 1)] for q in ((1 - level) / 2, (1 + level) / 2)]
    return float(ends[0]), float(ends[1])
