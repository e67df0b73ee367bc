"""Result frames and the tables the notebooks print: store rows to per-setting summaries, the
paper's tables in the same shape, and fixed-width text of both side by side.

``tidy(store rows)`` adds ``acc`` (test accuracy in percent) and ``variant``; ``summarize``
averages seeds into one row per setting with ``mean``, ``std``, ``n``, and keeps the values it
averaged, per seed, in ``seeds`` (a ``SeedValues``; what the claims resample, ``ptnl.report.stats``). ``paper_summary(table)``
puts a table of the paper (``ptnl.report.reference``) into the same shape. ``select``, ``acc``,
``drop`` and ``rates`` read a summary per dataset, as the claims do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from ptnl.report import reference
from ptnl.train.methods import variant

ACC_DECIMALS = 1  # accuracies print with 1 decimal (nbval compares printed tables)

RATIO_DECIMALS = 2

SETTING = ("dataset", "backbone", "variant", "noise_kind", "noise_rate", "n_ctx")


# ------------------------------------------------------------------------------- result frames


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Store rows with ``acc`` (percent) and ``variant`` (method, or method_loss when not CE)."""
    out = df.copy()
    out["acc"] = 100.0 * out["test_acc"].astype(float) if len(out) else pd.Series(dtype=float)
    if "variant" not in out:
        out["variant"] = [variant(m, loss) for m, loss in zip(out["method"], out["loss"])]
    return out


SEEDS = "seeds"  # the summary column that keeps each setting's values per seed


class SeedValues:
    """The values one summary row averages, with the seed of each (``seeds[i]`` for row i of
    ``values``, [runs, k]; a seed may have several runs), so that the claims can resample seeds
    (``ptnl.report.stats.resampled``). A resample gives seed j a count c_j: every column is
    then the count-weighted mean of ``values`` (all counts 1: the row's own means), passed through
    ``derive`` ([..., k] means -> [..., len(columns)]) if given. Compares by content."""

    def __init__(self, seeds, values, columns=("mean",), derive: Callable | None = None):
        self.seeds = tuple(int(x) for x in seeds)
        self.values = np.asarray(values, dtype=float).reshape(len(self.seeds), -1)
        self.labels = tuple(sorted(set(self.seeds)))  # the distinct seeds: the row's block
        self.columns, self.derive = tuple(columns), derive

    def __repr__(self) -> str:
        return f"<{len(self.labels)} seeds>"

    def _key(self):
        return self.seeds, self.values.tobytes(), self.columns

    def __eq__(self, other) -> bool:
        return isinstance(other, SeedValues) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def seed_values(df: pd.DataFrame, by: Sequence[str], value: str, seed: str = "seed") -> list:
    """Per group of ``df.groupby(by, dropna=False, sort=True)``, in that order: a ``SeedValues`` of
    the group's non-missing ``value`` per ``seed`` (None where it has none)."""
    out = []
    for _, g in df.groupby(list(by), dropna=False, sort=True):
        g = g[g[value].notna() & g[seed].notna()]
        out.append(SeedValues(g[seed], g[value].to_numpy(float)) if len(g) else None)
    return out


def summarize(df: pd.DataFrame, by: Sequence[str] = SETTING, value: str = "acc") -> pd.DataFrame:
    """Mean, std (ddof 1; NaN for one seed) and count of ``value`` over seeds, per setting, and
    (when the rows have a ``seed``) the values per seed in ``SEEDS``."""
    df = tidy(df) if value == "acc" and "acc" not in df else df
    by = [c for c in by if c in df.columns]
    # Rows come in run-id order; sorting by setting and seed fixes the summation order, so the
    # means (and figures drawn from them) do not depend on the hash that files the runs.
    df = df.sort_values([*by, *(["seed"] if "seed" in df.columns else [])], kind="stable")
    g = df.groupby(by, dropna=False, sort=True)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    if "seed" in df.columns and len(df):
        out[SEEDS] = seed_values(df, by, value)
    return out


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
    its wrong labels, ``train_fit_clean``: its right ones; ``ptnl.train.loop.label_agreement``), in
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
