"""Each section's claims, stated once and measured on our runs and on the paper's own numbers.

A claim is a sentence of the paper, a quantity computed from results (a difference of accuracies,
a ratio of gradient norms, ...), and a threshold: the claim is *supported* by a run when the
quantity is above the threshold (or below, for ``"<"`` claims). Nothing here asserts: a claim
that our numbers do not support is reported as "no", with the value that says by how much.

The quantity is computed per dataset and averaged over datasets (the paper argues from its
tables' rows the same way); ``datasets`` says on how many datasets it holds on its own. The same
function runs on the paper's numbers (``ptnl.report.reference``) where the paper printed them, so every
claims table shows the paper's value beside ours; "n/a" where the paper gives no numbers (its
figures) or a run set lacks what the claim needs.

Result frames: ``tidy(store rows)`` adds ``acc`` (test accuracy in percent) and ``variant``;
``summarize`` averages seeds into one row per setting with ``mean``, ``std``, ``n``.
``paper_summary(table)`` puts a table of the paper into the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ptnl.report import reference

ACC_DECIMALS = 1  # accuracies print with 1 decimal (nbval compares printed tables)
RATIO_DECIMALS = 2
SETTING = ("dataset", "backbone", "variant", "noise_kind", "noise_rate", "n_ctx")
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
CLAIM_COLUMNS = ("claim", "measured", "ours", "paper", "threshold", "datasets", "supported")


# ------------------------------------------------------------------------------- result frames


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Store rows with ``acc`` (percent) and ``variant`` (method, or method_loss when not CE)."""
    from ptnl.sections.experiments import variant

    out = df.copy()
    out["acc"] = 100.0 * out["test_acc"].astype(float) if len(out) else pd.Series(dtype=float)
    if "variant" not in out:
        out["variant"] = [variant(m, loss) for m, loss in zip(out["method"], out["loss"])]
    return out


def summarize(df: pd.DataFrame, by: Sequence[str] = SETTING, value: str = "acc") -> pd.DataFrame:
    """Mean, std (ddof 1; NaN for one seed) and count of ``value`` over seeds, per setting."""
    df = tidy(df) if value == "acc" and "acc" not in df else df
    by = [c for c in by if c in df.columns]
    # Rows come in run-id order; sorting by setting and seed fixes the summation order, so the
    # means (and figures drawn from them) do not depend on the hash that files the runs.
    df = df.sort_values([*by, *(["seed"] if "seed" in df.columns else [])], kind="stable")
    g = df.groupby(by, dropna=False, sort=True)[value]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def paper_summary(*tables: str) -> pd.DataFrame:
    """Tables of the paper (``reference.table``) in ``summarize``'s shape (n = 4 runs, 100 draws
    for Table 8). A setting printed in several tables (prompt tuning at 50 % noise is in Tables 1
    and 4) is kept once, from the first table named."""
    if not tables:
        raise ValueError("name at least one table, e.g. paper_summary('Table 1')")
    out = pd.concat([_paper_table(t) for t in tables], ignore_index=True)
    return out.drop_duplicates(list(SETTING), keep="first").reset_index(drop=True)


def _paper_table(table: str) -> pd.DataFrame:
    ref = reference.table(table)
    out = pd.DataFrame(
        {
            "dataset": ref["dataset"],
            "backbone": ref["backbone"],
            "variant": ref["method"],
            "noise_kind": ref["noise"].replace({"none": "symmetric"}),
            "noise_rate": ref["noise_rate"].astype(float),
            "n_ctx": 16,
            "mean": ref["accuracy"],
            "std": ref["std"].astype(float),
            "n": 100 if table == "Table 8" else 4,
        }
    )
    return out


def select(s: pd.DataFrame, **where) -> pd.DataFrame:
    """Rows of a summary matching every ``column=value`` (a list/tuple value = any of them)."""
    mask = pd.Series(True, index=s.index)
    for k, v in where.items():
        if k not in s.columns:
            return s.iloc[0:0]
        mask &= s[k].isin(v) if isinstance(v, list | tuple | set) else s[k] == v
    return s[mask]


def acc(s: pd.DataFrame, variant: str, noise_rate: float | None = None, **where) -> pd.Series:
    """Mean accuracy per dataset of one variant (averaged over any setting left unspecified)."""
    if noise_rate is not None:
        where["noise_rate"] = float(noise_rate)
    rows = select(s, variant=variant, **where)
    return rows.groupby("dataset")["mean"].mean()


def drop(s: pd.DataFrame, variant: str, high: float = 0.5, low: float = 0.0, **where) -> pd.Series:
    """Accuracy lost per dataset between noise rates ``low`` and ``high``."""
    return acc(s, variant, low, **where) - acc(s, variant, high, **where)


def rates(s: pd.DataFrame) -> list[float]:
    return sorted(float(r) for r in s["noise_rate"].dropna().unique())


# -------------------------------------------------------------------------------- claim tables


def claim(
    text: str,
    measured: str,
    fn: Callable[[pd.DataFrame], pd.Series],
    threshold: float,
    direction: str = ">",
    decimals: int = ACC_DECIMALS,
    on_paper: bool = True,
) -> dict:
    """A claim spec: ``fn(summary)`` gives the per-dataset quantity (a Series, or a scalar).
    ``on_paper=False`` for quantities measured outside the summary (the paper column stays n/a)."""
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    return dict(
        text=text,
        measured=measured,
        fn=fn,
        threshold=threshold,
        direction=direction,
        decimals=decimals,
        on_paper=on_paper,
    )


def _measure(spec: dict, s: pd.DataFrame | None) -> tuple[float, str]:
    if s is None or len(s) == 0:
        return math.nan, ""
    try:
        v = spec["fn"](s)
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        return math.nan, ""
    if isinstance(v, pd.Series):
        v = v.dropna()
        if v.empty:
            return math.nan, ""
        holds = (v > spec["threshold"]) if spec["direction"] == ">" else (v < spec["threshold"])
        return float(v.mean()), f"{int(holds.sum())}/{len(v)}"
    v = float(v) if v is not None else math.nan
    return v, ""


def evaluate(specs: Sequence[dict], ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims table: one row per claim, our value, the paper's, and whether ours supports it."""
    rows = []
    for spec in specs:
        value, per_dataset = _measure(spec, ours)
        paper_value, _ = _measure(spec, paper) if spec["on_paper"] else (math.nan, "")
        if math.isnan(value):
            supported = "n/a"
        else:
            ok = value > spec["threshold"] if spec["direction"] == ">" else value < spec["threshold"]
            supported = "yes" if ok else "no"
        d = spec["decimals"]
        rows.append(
            {
                "claim": spec["text"],
                "measured": spec["measured"],
                "ours": round(value, d) if not math.isnan(value) else math.nan,
                "paper": round(paper_value, d) if not math.isnan(paper_value) else math.nan,
                "threshold": f"{spec['direction']} {spec['threshold']:g}",
                "datasets": per_dataset,
                "supported": supported,
            }
        )
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def show(claims: pd.DataFrame) -> str:
    """The claims table as fixed-width text (what the notebooks print; nbval compares it)."""
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        return claims.fillna("n/a").to_string(index=False)


# ---------------------------------------------------------------------------- result tables


def fmt(mean: float, std: float, decimals: int = ACC_DECIMALS) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def result_table(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    rows: Sequence[str] = ("dataset", "variant"),
    columns: str = "noise_rate",
    variants: Sequence[str] | None = None,
    decimals: int = ACC_DECIMALS,
) -> pd.DataFrame:
    """Our summary beside the paper's: index (source, *rows), one column per ``columns`` value,
    cells "mean ± std" over seeds, plus a dataset "mean" row per variant when rows has dataset."""
    blocks = []
    for source, s in (("ours", ours), ("paper", paper)):
        if s is None or len(s) == 0:
            continue
        if variants is not None:
            s = s[s["variant"].isin(variants)]
        if len(s) == 0:
            continue
        dup = s.duplicated([*rows, columns])
        if dup.any():
            d = s[dup].iloc[0]
            raise ValueError(
                f"{source}: several settings share the cell {tuple(d[[*rows, columns]])}; "
                "select one (e.g. one noise_kind or backbone) or add the column that tells them apart to rows"
            )
        g = s[[*rows, columns, "mean", "std"]].copy()
        if "dataset" in rows and g["dataset"].nunique() > 1:
            others = [r for r in rows if r != "dataset"]
            m = g.groupby([*others, columns], sort=False).agg(mean=("mean", "mean")).reset_index()
            m["std"], m["dataset"] = math.nan, "mean"
            g = pd.concat([g, m], ignore_index=True)
        g["cell"] = [fmt(a, b, decimals) for a, b in zip(g["mean"], g["std"])]
        t = g.pivot_table(index=list(rows), columns=columns, values="cell", aggfunc="first", sort=False)
        if variants is not None and "variant" in rows:
            order = {v: i for i, v in enumerate(variants)}
            t = t.sort_index(
                key=lambda ix: ix.map(order) if ix.name == "variant" else ix.map(_dataset_key), kind="stable"
            )
        t.index = pd.MultiIndex.from_tuples(
            [(source, *(i if isinstance(i, tuple) else (i,))) for i in t.index], names=["source", *rows]
        )
        blocks.append(t)
    if not blocks:
        return pd.DataFrame()
    out = pd.concat(blocks).fillna("")
    if columns == "noise_rate":
        out = out[sorted(out.columns, key=float)]
    elif columns == "noise_kind":  # the paper's order: random (symmetric) noise first
        out = out[sorted(out.columns, key=lambda k: (k != "symmetric", str(k)))]
    out.columns = [_col_label(c, columns) for c in out.columns]
    return out


def _dataset_key(name):
    return (name == "mean", str(name))


def _col_label(c, columns):
    if columns == "noise_rate":
        return f"{100 * float(c):g}%"
    if columns == "noise_kind" and c == "symmetric":
        return "random"
    return str(c)


def drop_ratio_table(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variant: str = "prompt",
    reference: str = "classifier_r",
    high: float = 0.5,
    low: float = 0.0,
) -> pd.DataFrame:
    """The paper's core claim per dataset: accuracy lost from ``low`` to ``high`` noise by
    ``variant`` and by ``reference``, and their ratio (the paper's margin: at most 0.5). A
    ``mean`` row per source is the ratio of the mean drops, which is what the claims tables use.
    It shows on which datasets a claim averaged over datasets holds, ours beside the paper's."""
    rows = []
    for source, s in (("ours", ours), ("paper", paper)):
        if s is None or len(s) == 0:
            continue
        d_v = drop(s, variant, high, low)
        d_r = drop(s, reference, high, low)
        both = pd.concat({"v": d_v, "r": d_r}, axis=1).dropna()
        if both.empty:
            continue
        means = both.mean()
        for name, (dv, dr) in [*both.iterrows(), ("mean", (means["v"], means["r"]))]:
            dv, dr = float(dv), float(dr)
            rows.append(
                {
                    "source": source,
                    "dataset": name,
                    f"drop({variant})": round(dv, ACC_DECIMALS),
                    f"drop({reference})": round(dr, ACC_DECIMALS),
                    "ratio": round(dv / dr, RATIO_DECIMALS) if dr > 0 else math.nan,
                    "within half": "yes" if dr > 0 and dv <= dr / 2 else "no",
                }
            )
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    out["_key"] = [_dataset_key(d) for d in out["dataset"]]
    out = out.sort_values(["source", "_key"], kind="stable").drop(columns="_key")
    return out.set_index(["source", "dataset"])


def show_table(t: pd.DataFrame) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", 50, "display.max_rows", 500):
        return t.to_string()


# -------------------------------------------------------------------------------- the claims

HIGH = 0.5


def quickstart_claims(s: pd.DataFrame) -> list[dict]:
    high = max(rates(s)) if len(s) else HIGH
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


def loss_math_checks(n: int = 64, n_classes: int = 10, seed: int = 0) -> pd.DataFrame:
    """Section 3's statements about GCE, checked numerically on random logits (ptnl.models.losses)."""
    import torch

    from ptnl.models.losses import get_loss

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
                "ours": f"{v:.1e}",
                "paper": "",
                "threshold": f"< {t:g}",
                "datasets": "",
                "supported": "yes" if v < t else "no",
            }
            for c, m, v, t in rows
        ],
        columns=list(CLAIM_COLUMNS),
    )


def gce_claims(s: pd.DataFrame, q_best_margin: float = 2.0) -> list[dict]:
    """Notebook 01 (Section 3); ``s`` has variants "ce" and "gce q=<q>" of prompt tuning."""
    high = max(rates(s)) if len(s) else HIGH

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
            lambda s: acc(s, "prompt", HIGH) - acc(s, linear, HIGH),
            0.0,
        ),
        claim(
            "At 50% noise prompt tuning beats fine-tuning",
            "acc(prompt, 50%) - acc(visual FT, 50%)",
            lambda s: acc(s, "prompt", HIGH) - acc(s, finetune, HIGH),
            0.0,
        ),
        claim(
            "GCE further improves prompt tuning at 50% noise",
            "acc(prompt GCE, 50%) - acc(prompt CE, 50%)",
            lambda s: acc(s, "prompt_gce", HIGH) - acc(s, "prompt", HIGH),
            0.0,
        ),
        claim(
            "GCE also improves a linear probe at 50% noise (Fig. 2)",
            "acc(linear head GCE, 50%) - acc(linear head CE, 50%)",
            lambda s: acc(s, linear_gce, HIGH) - acc(s, head_ce, HIGH),
            0.0,
        ),
        claim(
            "Robustness needs prompt tuning, not GCE alone: with GCE, prompt tuning drops less than a linear probe",
            "drop(linear head GCE) - drop(prompt GCE)",
            lambda s: drop(s, linear_gce) - drop(s, "prompt_gce"),
            0.0,
        ),
    ]


def _best_other(s, others, rate):
    return pd.concat({o: acc(s, o, rate) for o in others}, axis=1).max(axis=1)


def _min_over_rates(s, fn):
    return pd.concat([fn(r) for r in rates(s)], axis=1).min(axis=1)


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
    not other datasets or another world. ``df`` holds one row per run (``experiments.results``),
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


def table1_claims(s: pd.DataFrame, competitive: float = -5.0) -> list[dict]:
    others = ("classifier_r", "classifier_c", "tenc_ft")
    return [
        claim(
            "Classifier-C (CLIP-initialised head) beats Classifier-R at every noise rate",
            "min over rates of acc(Classifier-C) - acc(Classifier-R)",
            lambda s: _min_over_rates(s, lambda r: acc(s, "classifier_c", r) - acc(s, "classifier_r", r)),
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
            lambda s: _min_over_rates(s, lambda r: acc(s, "prompt", r) - _best_other(s, others, r)),
            0.0,
        ),
        claim(
            "Prompt tuning's advantage is largest at high noise",
            "margin(50%) - margin(0%), margin = acc(prompt) - max(acc(others))",
            lambda s: (
                (acc(s, "prompt", HIGH) - _best_other(s, others, HIGH))
                - (acc(s, "prompt", 0.0) - _best_other(s, others, 0.0))
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
            lambda s: acc(s, "prompt", HIGH) - _best_other(s, learned, HIGH),
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
            lambda s: acc(s, "prompt", 0.0) - _best_other(s, learned, 0.0),
            0.0,
        ),
    ]


def grad_ratio_frame(df: pd.DataFrame, label: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Long form of the per-epoch ``grad_norm_ratio`` lists: dataset, variant, seed, epoch, ratio."""
    df = tidy(df)
    rows = []
    for _, r in df.iterrows():
        # Runs without the measurement (config grad_ratio=False) have NaN here and contribute nothing.
        if not isinstance(r.get("grad_norm_ratio"), list):
            continue
        for epoch, ratio in enumerate(r["grad_norm_ratio"], start=1):
            rows.append(
                {
                    "dataset": r["dataset"],
                    "variant": label(r["variant"]) if label else r["variant"],
                    "seed": r["seed"],
                    "epoch": epoch,
                    "ratio": np.nan if ratio is None else float(ratio),
                }
            )
    return pd.DataFrame(rows, columns=["dataset", "variant", "seed", "epoch", "ratio"])


def training_fit_table(df: pd.DataFrame, by: Sequence[str] = ("dataset", "variant")) -> pd.DataFrame:
    """How much of its own training labels each setting ends up predicting (``train_fit_noisy``:
    its wrong labels, ``train_fit_clean``: its right ones; ``ptnl.train.engine.training_fit``), in
    percent, mean ± std over seeds. Runs stored before these metrics existed count as missing."""
    df = tidy(df)
    out = None
    for key, name in (
        ("train_fit_noisy", "wrong labels fitted (%)"),
        ("train_fit_clean", "right labels fitted (%)"),
    ):
        values = pd.to_numeric(df[key], errors="coerce") * 100 if key in df else np.nan
        s = summarize(df.assign(_fit=values), by=by, value="_fit")
        s[name] = [fmt(m, sd) for m, sd in zip(s["mean"], s["std"])]
        s = s[[c for c in by if c in s.columns] + [name]]
        out = s if out is None else out.merge(s, on=[c for c in by if c in s.columns])
    return out


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
            lambda s: _min_over_rates(
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
                acc(s, "ctx-0", HIGH) - pd.concat({v: acc(s, v, HIGH) for v in learned}, axis=1).min(axis=1)
            ),
            0.0,
        ),
    ]


def backbone_claims(s: pd.DataFrame, backbones: Sequence[str], keep: float = 0.75) -> list[dict]:
    """Notebook 05, Table 3: prompt tuning per backbone (summary rows carry ``backbone``)."""
    a, b = (backbones[0], backbones[1]) if len(backbones) > 1 else (backbones[0], None)

    def retained(s):
        return pd.concat(
            [acc(s, "prompt", HIGH, backbone=x) / acc(s, "prompt", 0.0, backbone=x) for x in backbones],
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
        return lambda s: acc(s, v, HIGH, noise_kind="symmetric") - acc(s, v, HIGH, noise_kind="confusion")

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
                acc(s, "prompt", HIGH, noise_kind="confusion") - acc(s, linear, HIGH, noise_kind="confusion")
            ),
            0.0,
        ),
        claim(
            "Under random noise prompt tuning beats the linear probe",
            "acc(prompt, random) - acc(linear, random) at 50%",
            lambda s: (
                acc(s, "prompt", HIGH, noise_kind="symmetric") - acc(s, linear, HIGH, noise_kind="symmetric")
            ),
            0.0,
        ),
    ]


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
    names = {"gce": "GCE", "sce": "SCE", "nce_rce": "NCE+RCE"}
    out = [
        claim(
            "GCE improves prompt tuning at 50% noise (Fig. 8)",
            "acc(prompt GCE) - acc(prompt CE) at 50%",
            lambda s: acc(s, "prompt_gce", HIGH) - acc(s, "prompt", HIGH),
            0.0,
        ),
        claim(
            "GCE improves a linear probe at 50% noise (Fig. 8)",
            "acc(linear head GCE) - acc(linear head CE) at 50%",
            lambda s: acc(s, f"{head}_gce", HIGH) - acc(s, head, HIGH),
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
                lambda s, v=f"prompt_{loss}": acc(s, v, HIGH) - acc(s, "prompt", HIGH),
                0.0,
            )
        )
    others = [f"prompt_{x}" for x in losses if x != "gce"]
    if others:
        out.append(
            claim(
                "GCE is (slightly) the best of the robust losses at 50% noise (Fig. 9)",
                "acc(prompt GCE) - max(acc(prompt SCE), acc(prompt NCE+RCE)) at 50%",
                lambda s: acc(s, "prompt_gce", HIGH) - _best_other(s, others, HIGH),
                0.0,
            )
        )
    return out
