"""Claims, stated once and measured on our runs and on the paper's own numbers.

A claim is a sentence of the paper, a quantity computed from results (a difference of accuracies,
a ratio of gradient norms, ...), and a threshold: the claim is *supported* by a run when the
quantity is above the threshold (or below, for ``"<"`` claims). Nothing here asserts: a claim
that our numbers do not support is reported as "no", with the value that says by how much.

The quantity is computed per dataset and averaged over datasets (the paper argues from its
tables' rows the same way); ``datasets`` says on how many datasets it holds on its own. The same
function runs on the paper's numbers (``ptnl.report.tables.paper_summary``) where the paper printed
them, so every claims table shows the paper's value beside ours; "n/a" where the paper gives no
numbers (its figures) or a run set lacks what the claim needs. Each section's list of claims is in
its own module (``ptnl.sections``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

from ptnl.report.tables import ACC_DECIMALS, acc, rates

CLAIM_COLUMNS = ("claim", "measured", "ours", "paper", "threshold", "datasets", "supported")


def claim(
    text: str,
    measured: str,
    fn: Callable[[pd.DataFrame], pd.Series],
    threshold: float,
    direction: str = ">",
    decimals: int = ACC_DECIMALS,
    on_paper: bool = True,
    over: str = "mean",
) -> dict:
    """A claim spec: ``fn(summary)`` gives the per-dataset quantity (a Series, or a scalar).
    ``on_paper=False`` for quantities measured outside the summary (the paper column stays n/a).
    ``over``: how a Series becomes the claim's value, ``"mean"`` (on average) or ``"worst"`` (the
    least favourable entry: a claim about *every* dataset or cell)."""
    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    if over not in ("mean", "worst"):
        raise ValueError(f"over must be 'mean' or 'worst', got {over!r}")
    return dict(
        text=text,
        measured=measured,
        fn=fn,
        threshold=threshold,
        direction=direction,
        decimals=decimals,
        on_paper=on_paper,
        over=over,
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
        if spec["over"] == "worst":
            value = v.min() if spec["direction"] == ">" else v.max()
        else:
            value = v.mean()
        return float(value), f"{int(holds.sum())}/{len(v)}"
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


CLAIMS_MIME = "application/vnd.ptnl.claims+json"


class ClaimsTable(str):
    """A claims table as a notebook shows it: the fixed-width text (nbval compares it), and the
    rows as data under ``CLAIMS_MIME``, which ``ptnl docs`` reads back from the executed notebooks
    (JupyterLab and code hosts, knowing no such type, show the text)."""

    def __new__(cls, claims: pd.DataFrame):
        with pd.option_context("display.max_colwidth", 90, "display.width", 250):
            text = claims.fillna("n/a").to_string(index=False)
        table = super().__new__(cls, text)
        table.rows = [{k: _plain(v) for k, v in row.items()} for row in claims.to_dict("records")]
        return table

    def __repr__(self) -> str:
        return str(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": str(self), CLAIMS_MIME: {"columns": list(CLAIM_COLUMNS), "rows": self.rows}}


def _plain(v):
    """A JSON value: NaN becomes null, numpy scalars plain numbers."""
    if isinstance(v, float | int) and not isinstance(v, bool):
        return None if isinstance(v, float) and math.isnan(v) else v
    if hasattr(v, "item"):
        return _plain(v.item())
    return v


def show(claims: pd.DataFrame) -> ClaimsTable:
    """The claims table as fixed-width text (a ``str``; what a notebook cell ending in
    ``claims.show(...)`` displays, with its rows as data beside it)."""
    return ClaimsTable(claims)


def best_other(s: pd.DataFrame, others: Sequence[str], rate: float) -> pd.Series:
    """Per dataset, the best accuracy at ``rate`` among the variants ``others``."""
    return pd.concat({o: acc(s, o, rate) for o in others}, axis=1).max(axis=1)


def min_over_rates(s: pd.DataFrame, fn: Callable[[float], pd.Series]) -> pd.Series:
    """Per dataset, the smallest ``fn(rate)`` over the summary's noise rates."""
    return pd.concat([fn(r) for r in rates(s)], axis=1).min(axis=1)
