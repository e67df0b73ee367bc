"""Claims, stated once and measured on our runs and on the paper's own numbers.

A claim is a sentence of the paper, a quantity computed from results (a difference of accuracies,
a ratio of gradient norms, ...), and a threshold: the claim's side is above the threshold (below,
for ``"<"`` claims). Nothing here asserts: a claim our numbers do not support is reported so, with
the value that says by how much.

The quantity is computed per dataset (or per cell) and averaged over them (the paper argues from
its tables' rows the same way; ``over="worst"``: the least favourable one); ``datasets`` says on
how many it holds on its own. The same function runs on the paper's numbers
(``ptnl.report.tables.paper_summary``) where the paper printed them, so every claims table shows
the paper's value beside ours; "n/a" where the paper gives no numbers (its figures) or a run set
lacks what the claim needs. Each section's list of claims is in its own module (``ptnl.sections``).

**Verdicts.** ``evaluate`` gives each claim one of three verdicts, with ``why`` where it is not
plain (``VERDICTS``):

1. Seeds. A summary keeps each row's values per seed (``tables.SEEDS``, ``tables.SeedValues``).
   The claim's seeds are those of the rows it reads: each block of rows sharing two or more seeds
   (``stats.seed_blocks``) is moved (``stats.nudged``: its values shifted a little, and twice
   replaced by random numbers), and the claim reads the block when its value moves; n is the
   fewest seeds of a block it reads.
2. The interval. The claim's value is recomputed on every resample of the blocks it reads
   (``stats.draws``, ``stats.resampled``: seeds drawn n from n with replacement, a seed's runs
   in every setting together; one-seed rows such as zero-shot CLIP fixed; up to
   ``stats.EXACT_UP_TO`` draws enumerated exactly with their multinomial probabilities, else
   ``stats.MONTE_CARLO`` seeded draws), and ``ours 95% CI`` is its ``LEVEL`` percentile interval
   (inverted CDF: both ends are resampled values). With 3 seeds and a quantity linear in the
   seeds' values the interval runs from the least to the most favourable seed's own value.
3. The verdict: **supported** when the interval lies wholly on the claim's side (above the
   threshold for ">", below it for "<"), **refuted** when it lies wholly on the other side
   (the threshold itself counts as the other side, as it did for a point value), and
   **inconclusive** when it straddles the threshold, or when:
   - the claim reads fewer than ``MIN_SEEDS`` seeds ("2 seeds: no interval"; no interval shown);
   - ``over="mean"`` over two or more cells, and leaving out the one cell that pulls the mean
     most towards its side (the most favourable cell for a mean on the claim's side, the least
     favourable for one on the other side) puts the mean of the rest across the threshold
     ("one cell carries the mean").
4. Point verdicts. A claim with no seeds behind it (a frame without ``SeedValues``, such as the
   paper's summary used as ours, or a quantity the claim reads from outside the frame, e.g.
   ``on_paper=False`` measurements of untrained models, so no nudge moves it) is judged on its
   value alone, labelled "point value: no seeds behind it" (rule 3's cell check still applies);
   an exact computation (``exact``: the loss checks) is labelled "exact: no seeds". A frame whose
   rows all have one seed is "1 seed: no interval".
5. The paper's numbers have no seeds: ``paper (point)`` says yes/no on the paper's value alone.

``compare_verdicts`` lists the verdicts that differ between two executions of a claims table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ptnl.report import stats
from ptnl.report.tables import ACC_DECIMALS, SEEDS, acc, rates

CLAIM_COLUMNS = (
    "claim",
    "measured",
    "ours",
    "ours 95% CI",
    "paper",
    "threshold",
    "datasets",
    "verdict",
    "paper (point)",
    "why",
)
VERDICTS = ("supported", "refuted", "inconclusive")
LEVEL = 0.95
MIN_SEEDS = 3
POINT = "point value: no seeds behind it"
EXACT = "exact: no seeds"
CARRIED = "one cell carries the mean"
STRADDLES = "interval straddles the threshold"


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
    least favourable entry: a claim about *every* dataset or cell). ``fn`` must read the frame it
    is given (not one captured when the claims were made): the verdict resamples that frame."""
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


def _holds(spec: dict, v: float) -> bool:
    return v > spec["threshold"] if spec["direction"] == ">" else v < spec["threshold"]


def _measure(spec: dict, s: pd.DataFrame | None) -> tuple[float, str, np.ndarray | None]:
    """The claim's value on ``s``, "k/n" cells holding, and the cells' values (None for a scalar)."""
    if s is None or len(s) == 0:
        return math.nan, "", None
    try:
        v = spec["fn"](s)
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        return math.nan, "", None
    if isinstance(v, pd.Series):
        v = v.dropna()
        if v.empty:
            return math.nan, "", None
        holds = (v > spec["threshold"]) if spec["direction"] == ">" else (v < spec["threshold"])
        if spec["over"] == "worst":
            value = v.min() if spec["direction"] == ">" else v.max()
        else:
            value = v.mean()
        return float(value), f"{int(holds.sum())}/{len(v)}", v.to_numpy(float)
    v = float(v) if v is not None else math.nan
    return v, "", None


def _carried(spec: dict, value: float, cells: np.ndarray | None) -> bool:
    """Whether one cell carries a mean: without the cell that pulls it most towards its side,
    the mean of the rest lies across the threshold."""
    if spec["over"] != "mean" or cells is None or len(cells) < 2:
        return False
    holds = _holds(spec, value)
    k = int(np.argmax(cells) if (spec["direction"] == ">") == holds else np.argmin(cells))
    return _holds(spec, float(np.delete(cells, k).mean())) != holds


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


class _Seeds:
    """The seed blocks of one summary, what nudging each gives, and resamples of block sets, each
    built once for all of a table's claims."""

    def __init__(self, s: pd.DataFrame | None):
        self.s = s
        self.kept = s is not None and SEEDS in s.columns and s[SEEDS].notna().any()
        self.blocks = stats.seed_blocks(s) if self.kept else {}
        self._nudged: dict = {}
        self._draws: dict = {}

    def read(self, spec: dict, value: float) -> list[tuple]:
        """The blocks whose values move the claim's: nudged, or scrambled twice (``stats.nudged``)."""
        out = []
        for b in sorted(self.blocks):
            if b not in self._nudged:
                self._nudged[b] = [stats.nudged(self.s, b, scramble) for scramble in (None, 0, 1)]
            if any(not _same(_measure(spec, f)[0], value) for f in self._nudged[b]):
                out.append(b)
        return out

    def resamples(self, blocks: list[tuple]):
        key = tuple(blocks)
        if key not in self._draws:
            draws, probs, _ = stats.draws({b: len(b) for b in blocks})
            self._draws[key] = (stats.resampled(self.s, draws), probs)
        return self._draws[key]


def _verdict(spec: dict, seeds: _Seeds, value: float, cells) -> tuple[str, str, str]:
    """(interval text, verdict, why) of our value, by the module's rule."""
    if math.isnan(value):
        return "n/a", "n/a", ""
    why = []
    side = "supported" if _holds(spec, value) else "refuted"
    interval = "n/a"
    read = seeds.read(spec, value) if seeds.blocks else []
    if not seeds.kept or (seeds.blocks and not read):
        why.append(POINT)
    elif not read:
        why.append("1 seed: no interval")
    elif (n := min(len(b) for b in read)) < MIN_SEEDS:
        why.append(f"{n} seeds: no interval")
    else:
        frames, probs = seeds.resamples(read)
        lo, hi = stats.weighted_interval([_measure(spec, f)[0] for f in frames], probs, LEVEL)
        if math.isnan(lo):
            why.append("no interval: the resamples give no value")
        else:
            d = spec["decimals"]
            interval = f"[{lo:.{d}f}, {hi:.{d}f}]"
            if _holds(spec, lo) and _holds(spec, hi):
                side = "supported"
            elif not _holds(spec, lo) and not _holds(spec, hi):
                side = "refuted"
            else:
                why.append(STRADDLES)
    if _carried(spec, value, cells):
        why.append(CARRIED)
    inconclusive = [w for w in why if w != POINT]
    return interval, "inconclusive" if inconclusive else side, "; ".join(why)


def _point(spec: dict, v: float) -> str:
    """The paper's verdict: its value alone (it has no seeds)."""
    return "n/a" if math.isnan(v) else "yes" if _holds(spec, v) else "no"


def evaluate(specs: Sequence[dict], ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """The claims table: one row per claim, our value with its interval over seeds and verdict
    (the module's rule), and the paper's value with its point verdict."""
    seeds = _Seeds(ours)
    rows = []
    for spec in specs:
        value, per_dataset, cells = _measure(spec, ours)
        paper_value = _measure(spec, paper)[0] if spec["on_paper"] else math.nan
        interval, verdict, why = _verdict(spec, seeds, value, cells)
        d = spec["decimals"]
        rows.append(
            {
                "claim": spec["text"],
                "measured": spec["measured"],
                "ours": round(value, d) if not math.isnan(value) else math.nan,
                "ours 95% CI": interval,
                "paper": round(paper_value, d) if not math.isnan(paper_value) else math.nan,
                "threshold": f"{spec['direction']} {spec['threshold']:g}",
                "datasets": per_dataset,
                "verdict": verdict,
                "paper (point)": _point(spec, paper_value),
                "why": why,
            }
        )
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def exact(holds: bool) -> dict:
    """The verdict columns of a check computed exactly (no seeds, no sampling: a point verdict),
    for tables built by hand in ``CLAIM_COLUMNS``' shape (``ptnl.sections.gce.loss_math_checks``)."""
    return {
        "ours 95% CI": "",
        "verdict": "supported" if holds else "refuted",
        "paper (point)": "",
        "why": EXACT,
    }


LEGACY = {"yes": "supported", "no": "refuted"}  # a table from before the three verdicts


def _verdict_of(row: dict | None):
    if row is None:
        return None
    if "verdict" in row:
        return row["verdict"]
    return LEGACY.get(row.get("supported"), row.get("supported"))


def compare_verdicts(old_rows: Iterable[dict], new_rows: Iterable[dict]) -> list[dict]:
    """The claims whose verdict differs between two lists of claims rows (e.g. one notebook's
    claims table in two executions: ``ClaimsTable.rows``, a ``CLAIMS_MIME`` payload's rows, or an
    ``evaluate`` frame): one dict per such claim with ``claim``, ``measured``, ``old`` and ``new``
    (the verdicts; None where the claim is in one list only), ``old_why``/``new_why`` and
    ``old_value``/``new_value`` (ours). Claims
    are matched on (claim, measured) and, for repeats, their order. Rows of tables from before the
    three verdicts have only ``supported``: yes is read as supported, no as refuted (``LEGACY``). Empty when
    every verdict is unchanged."""

    def keyed(rows) -> dict:
        rows = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else getattr(rows, "rows", rows)
        out, seen = {}, {}
        for r in rows:
            base = (r.get("claim"), r.get("measured"))
            seen[base] = seen.get(base, -1) + 1
            out[(*base, seen[base])] = r
        return out

    old, new = keyed(old_rows), keyed(new_rows)
    changed = []
    for k in [*old, *(k for k in new if k not in old)]:
        o, n = old.get(k), new.get(k)
        ov, nv = _verdict_of(o), _verdict_of(n)
        if ov != nv:
            changed.append(
                {
                    "claim": k[0],
                    "measured": k[1],
                    "old": ov,
                    "new": nv,
                    "old_why": None if o is None else o.get("why", ""),
                    "new_why": None if n is None else n.get("why", ""),
                    "old_value": None if o is None else o.get("ours"),
                    "new_value": None if n is None else n.get("ours"),
                }
            )
    return changed


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
