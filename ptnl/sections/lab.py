"""The toy lab (notebook 09): when is prompt tuning robust to noisy labels?

The paper answers its "why" with two factors that real CLIP cannot vary: the fixed class-name
tokens, and a strong pretrained image-text embedding. The toy world can vary both, and the ways
the toy tasks differ from the paper's datasets too. Each cell of the lab's grid is

- a task ``toy-objects-<C>`` of C = 8 .. 64 classes (nested colour-shape objects, ``ptnl.data.toy.tasks``),
- ``shots`` images per class,
- a checkpoint of toy-rn's shipped pretraining recipe: ``"default"`` (all 6000 steps) or an
  early snapshot ``"step<k>"`` (``ptnl.models.toy.lab``), the embedding's strength,
- the softmax temperature the heads train at (None: the checkpoint's calibrated one),

and in each cell two heads learn from the same few-shot sets at 0 % and 50 % symmetric noise:
prompt tuning with its class names fixed (``prompt``) or learned (``cls_tuning``, the paper's
CLS-Tuning), against Classifier-R, the paper's free linear head. Zero-shot CLIP runs once per task
and checkpoint. ``cell_table`` gives every outcome of a cell with a bootstrap interval over seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ptnl.core.checks import as_list
from ptnl.data.toy import OBJECTS_CLASS_COUNTS
from ptnl.models.toy import TOY_BACKBONES
from ptnl.models.weights import canonical_name
from ptnl.report.claims import claim
from ptnl.report.tables import SEEDS, SeedValues
from ptnl.sections.common import Section, config, unique
from ptnl.sections.parameters import SHARED, Parameter
from ptnl.train.config import RunConfig

NAMES = {"fixed": "prompt", "learned": "cls_tuning"}  # class-name tokens -> the method that trains them
REFERENCE = "classifier_r"  # the paper's free linear head: the drop every ratio is taken against
PAPER_REGIME = (37, 16)  # the paper's datasets: 37 to 1000 classes, 16 shots
SHIPPED_STEPS = 6000  # "default" is the full recipe (ptnl.tools.toy.pretrain.STEPS["toy-rn"])
N_BOOT = 2000
LEVEL = 0.95
CELL = ("n_classes", "shots", "checkpoint", "temperature")
TASK = "toy-objects-{}"


def task_name(n_classes: int) -> str:
    if n_classes not in OBJECTS_CLASS_COUNTS:
        raise ValueError(f"the lab's tasks have {OBJECTS_CLASS_COUNTS} classes, not {n_classes!r}")
    return TASK.format(n_classes)


def strength(checkpoint: str) -> int:
    """Pretraining steps behind a checkpoint name (the order of the embedding's strength)."""
    return SHIPPED_STEPS if checkpoint == "default" else int(checkpoint.removeprefix("step"))


def lab_runs(
    backbone: str,
    class_counts: Sequence[int],
    shot_counts: Sequence[int],
    checkpoints: Sequence[str],
    class_names: Sequence[str],
    temperatures: Sequence,
    noise_rate: float,
    seeds: Sequence[int],
    epochs: int,
    feature_mode: str = "views",
) -> list[RunConfig]:
    """Notebook 09's grid: per cell, every head at 0 % and ``noise_rate`` for every seed, then
    Classifier-R likewise, then zero-shot once per task and checkpoint."""
    if canonical_name(backbone) not in TOY_BACKBONES:
        raise ValueError(
            f"the toy lab varies the toy world's tasks and pretraining, so it needs a toy backbone "
            f"({', '.join(TOY_BACKBONES)}), not {backbone!r}"
        )
    names = as_list(class_names, "class_names")
    for n in names:
        if n not in NAMES:
            raise ValueError(f"class_names are 'fixed' (prompt tuning) or 'learned' (CLS-Tuning), not {n!r}")
    if not 0 < noise_rate < 1:
        raise ValueError(
            f"noise_rate is the noisy end of each drop, in (0, 1) (the paper's 0.5), got {noise_rate}"
        )
    temps = [None if t is None else float(t) for t in as_list(temperatures, "temperatures")]
    out = []
    for c in as_list(class_counts, "class_counts"):
        dataset = task_name(c)
        for k in as_list(shot_counts, "shot_counts"):
            for ckpt in as_list(checkpoints, "checkpoints"):
                common = dict(
                    backbone=backbone, pretrained=ckpt, epochs=epochs, shots=k, feature_mode=feature_mode
                )
                for t in temps:
                    for method in [*(NAMES[n] for n in names), REFERENCE]:
                        for rate in (0.0, noise_rate):
                            for seed in as_list(seeds, "seeds"):
                                out.append(
                                    config(
                                        dataset,
                                        method=method,
                                        noise_rate=rate,
                                        seed=seed,
                                        temperature=t,
                                        **common,
                                    )
                                )
                # zero-shot depends on neither shots nor labels: one run per task and checkpoint
                out.append(config(dataset, method="zeroshot", **{**common, "shots": max(shot_counts)}))
    return unique(out)


# ------------------------------------------------------------------------------- outcomes


def _frame(df: pd.DataFrame) -> pd.DataFrame:
    """Store rows with the lab's cell columns (checkpoint, temperature as text, class names)."""
    out = df.copy()
    out["n_classes"] = out["dataset"].str.rsplit("-", n=1).str[1].astype(int)
    out["checkpoint"] = out["pretrained"].astype(str)
    out["temperature"] = [("ckpt" if t is None or t != t else f"{float(t):g}") for t in out["temperature"]]
    out["acc"] = 100.0 * out["test_acc"].astype(float)
    out["wrong_fit"] = 100.0 * out["train_fit_noisy"].astype(float) if "train_fit_noisy" in out else np.nan
    return out


def _per_seed(df: pd.DataFrame, noise_rate: float) -> pd.DataFrame:
    """One row per (cell, names, seed): both heads' accuracy at 0 % and ``noise_rate``, the wrong
    labels each fits at ``noise_rate``, and the cell's zero-shot accuracy."""
    f = _frame(df)
    zs = f[f["method"] == "zeroshot"].groupby(["n_classes", "checkpoint"])["acc"].first()
    trained = f[f["method"] != "zeroshot"]
    wide = trained.pivot_table(
        index=[*CELL, "seed"], columns=["method", "noise_rate"], values=["acc", "wrong_fit"], aggfunc="first"
    )
    rows = []
    for key, r in wide.iterrows():
        cell = dict(zip([*CELL, "seed"], key))

        def get(value, method, rate, r=r):
            col = (value, method, rate)
            return float(r[col]) if col in r.index else np.nan

        for names, method in NAMES.items():
            if ("acc", method, 0.0) not in r.index or np.isnan(get("acc", method, 0.0)):
                continue
            rows.append(
                {
                    **cell,
                    "class_names": names,
                    "clean": get("acc", method, 0.0),
                    "noisy": get("acc", method, noise_rate),
                    "ref_clean": get("acc", REFERENCE, 0.0),
                    "ref_noisy": get("acc", REFERENCE, noise_rate),
                    "wrong_fit": get("wrong_fit", method, noise_rate),
                    "ref_wrong_fit": get("wrong_fit", REFERENCE, noise_rate),
                    "zero_shot": zs.get((cell["n_classes"], cell["checkpoint"]), np.nan),
                }
            )
    return pd.DataFrame(rows)


def _outcomes(m: np.ndarray) -> np.ndarray:
    """Outcomes from the means over seeds of [clean, noisy, ref_clean, ref_noisy, wrong_fit,
    ref_wrong_fit, zero_shot] ([..., 7]; the leading axes bootstrap resamples): the accuracies, the
    drops, their ratio (of the mean drops), the gain over zero-shot and the wrong labels fitted."""
    clean, noisy, ref_clean, ref_noisy, wrong, ref_wrong, zs = np.moveaxis(m, -1, 0)
    drop, ref_drop = clean - noisy, ref_clean - ref_noisy
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref_drop > 0, drop / ref_drop, np.nan)
    return np.stack(
        [clean, noisy, drop, ref_clean, ref_noisy, ref_drop, ratio, clean - zs, zs, wrong, ref_wrong], axis=-1
    )


OUTCOMES = (
    "clean",
    "noisy",
    "drop",
    "ref_clean",
    "ref_noisy",
    "ref_drop",
    "ratio",
    "gain_zero_shot",
    "zero_shot",
    "wrong_fit",
    "ref_wrong_fit",
)
INTERVALS = ("drop", "ratio", "gain_zero_shot")  # shown with their bootstrap interval


def cell_table(
    df: pd.DataFrame, noise_rate: float = 0.5, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """One row per (cell, class names): every outcome as its mean over seeds, and a ``LEVEL``
    bootstrap interval over seeds (``<outcome>_lo``/``_hi``) for the drop, the ratio and the gain
    over zero-shot. A resample draws seeds with replacement, a seed's runs of both heads at both
    rates kept together (they share the few-shot images, the noise and the initialisation).
    Accuracies and shares in percent; ``ratio`` = drop / Classifier-R's drop (NaN where
    Classifier-R loses nothing); ``gain_zero_shot`` = clean accuracy minus zero-shot's."""
    per = _per_seed(df, noise_rate) if len(df) and "test_acc" in df else pd.DataFrame()
    if per.empty:
        return pd.DataFrame(columns=[*CELL, "class_names", *OUTCOMES, "n_seeds"])
    cols = ["clean", "noisy", "ref_clean", "ref_noisy", "wrong_fit", "ref_wrong_fit", "zero_shot"]
    rng = np.random.default_rng(seed)
    rows = []
    for key, g in per.sort_values([*CELL, "class_names", "seed"]).groupby([*CELL, "class_names"], sort=True):
        a = g[cols].to_numpy(float)
        row = dict(zip([*CELL, "class_names"], key))
        row.update(zip(OUTCOMES, _outcomes(a.mean(0))))
        row[SEEDS] = SeedValues(g["seed"], a, OUTCOMES, _outcomes)  # what the claims resample
        boots = _outcomes(a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(-2)) if len(a) > 1 else None
        for name in INTERVALS:
            i = OUTCOMES.index(name)
            if boots is None or np.isnan(boots[:, i]).all():
                row[f"{name}_lo"] = row[f"{name}_hi"] = np.nan
            else:
                lo, hi = np.nanpercentile(boots[:, i], [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
                row[f"{name}_lo"], row[f"{name}_hi"] = float(lo), float(hi)
        row["n_seeds"] = len(a)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["steps"] = out["checkpoint"].map(strength)
    return out.sort_values(
        ["class_names", "temperature", "steps", "n_classes", "shots"], kind="stable"
    ).reset_index(drop=True)


def show_cells(t: pd.DataFrame) -> str:
    """The cell table as fixed-width text: accuracies and drops in points, the ratio with its interval."""
    if t.empty:
        return "(no finished cells)"

    def iv(row, name, d):
        v, lo, hi = row[name], row[f"{name}_lo"], row[f"{name}_hi"]
        if np.isnan(v):
            return "n/a"
        return f"{v:.{d}f}" + ("" if np.isnan(lo) else f" [{lo:.{d}f}, {hi:.{d}f}]")

    view = pd.DataFrame(
        {
            "names": t["class_names"],
            "T": t["temperature"],
            "checkpoint": t["checkpoint"],
            "classes": t["n_classes"],
            "shots": t["shots"],
            "head 0%": t["clean"].round(1),
            "head 50%": t["noisy"].round(1),
            "head drop": [iv(r, "drop", 1) for _, r in t.iterrows()],
            "C-R 0%": t["ref_clean"].round(1),
            "C-R 50%": t["ref_noisy"].round(1),
            "C-R drop": t["ref_drop"].round(1),
            "ratio": [iv(r, "ratio", 2) for _, r in t.iterrows()],
            "head - ZS": [iv(r, "gain_zero_shot", 1) for _, r in t.iterrows()],
            "wrong fit head / C-R": [
                f"{a:.0f} / {b:.0f}" for a, b in zip(t["wrong_fit"], t["ref_wrong_fit"])
            ],
            "seeds": t["n_seeds"],
        }
    )
    return view.to_string(index=False)


def factor_table(t: pd.DataFrame, factor: str, value: str = "ratio") -> pd.DataFrame:
    """``value`` averaged over the other factors, per level of ``factor`` and class names."""
    col = {"classes": "n_classes", "checkpoint": "steps"}.get(factor, factor)
    return t.groupby([col, "class_names"], sort=True)[value].mean().unstack("class_names")


# ------------------------------------------------------------------------------- claims


def _paired(t: pd.DataFrame, factor: str, low, high, value: str = "ratio", names: str = "fixed") -> pd.Series:
    """Per cell of the other factors: ``value`` at ``factor = low`` minus at ``factor = high``
    (``names`` rows only). Empty when the grid has one level of ``factor``."""
    s = t[t["class_names"] == names]
    others = [c for c in ("n_classes", "shots", "steps", "temperature") if c != factor]
    a = s[s[factor] == low].set_index(others)[value]
    b = s[s[factor] == high].set_index(others)[value]
    return (a - b).dropna()


def _ends(t: pd.DataFrame, factor: str):
    levels = sorted(t[factor].unique())
    return (levels[0], levels[-1]) if len(levels) > 1 else (None, None)


def lab_claims(t: pd.DataFrame) -> list[dict]:
    """One claim per hypothesis of notebook 09, measured on the cell table (per cell, not per
    dataset: the ``datasets`` column counts the cells where the quantity holds)."""

    def across(factor, value="ratio"):
        def fn(t):
            lo, hi = _ends(t, factor)
            if lo is None:
                return pd.Series(dtype=float)
            return _paired(t, factor, lo, hi, value)

        return fn

    def names_gap(t):
        fixed = t[t["class_names"] == "fixed"].set_index(list(CELL))["noisy"]
        learned = t[t["class_names"] == "learned"].set_index(list(CELL))["noisy"]
        return (fixed - learned).dropna()

    def temperature_gap(t):
        s = t[t["class_names"] == "fixed"]
        others = ["n_classes", "shots", "steps"]
        ckpt = s[s["temperature"] == "ckpt"].set_index(others)["ratio"]
        clip = s[s["temperature"] == "100"].set_index(others)["ratio"]
        return (clip - ckpt).dropna()

    def regime(t):
        s = t[(t["class_names"] == "fixed") & (t["temperature"] == "ckpt") & (t["steps"] == t["steps"].max())]
        s = s[(s["n_classes"] == s["n_classes"].max()) & (s["shots"] == s["shots"].max())]
        return s.set_index(["n_classes", "shots"])["ratio"].dropna()

    def fits_less(t):
        s = t[t["class_names"] == "fixed"]
        return (s["ref_wrong_fit"] - s["wrong_fit"]).dropna()

    return [
        claim(
            "H1 (paper): a stronger embedding makes prompt tuning more robust: its drop ratio is "
            "lower at the most-trained checkpoint than at the least-trained one",
            "ratio(fewest pretraining steps) - ratio(most), per cell",
            across("steps"),
            0.0,
            decimals=2,
            on_paper=False,
        ),
        claim(
            "H2 (paper): fixed class names beat learned ones in every cell: prompt tuning is more "
            "accurate than CLS-Tuning at 50% noise",
            "worst cell of acc(prompt, 50%) - acc(CLS-Tuning, 50%)",
            names_gap,
            0.0,
            on_paper=False,
            over="worst",
        ),
        claim(
            "H3 (ours): more classes make prompt tuning relatively more robust: the drop ratio is "
            "lower at the most classes than at the fewest",
            "ratio(fewest classes) - ratio(most), per cell",
            across("n_classes"),
            0.0,
            decimals=2,
            on_paper=False,
        ),
        claim(
            "H4 (ours): more shots make prompt tuning relatively more robust: the drop ratio is "
            "lower at the most shots than at the fewest",
            "ratio(fewest shots) - ratio(most), per cell",
            across("shots"),
            0.0,
            decimals=2,
            on_paper=False,
        ),
        claim(
            "H5 (ours): the free head memorises more: Classifier-R predicts more of its wrong "
            "training labels than prompt tuning in every cell",
            "worst cell of wrong labels fitted: Classifier-R - prompt (points)",
            fits_less,
            0.0,
            on_paper=False,
            over="worst",
        ),
        claim(
            "H6 (ours): nearest the paper's regime (most classes and shots, full checkpoint) prompt "
            "tuning meets the paper's margin: its drop ratio is below 0.5",
            "ratio in that cell",
            regime,
            0.5,
            "<",
            decimals=2,
            on_paper=False,
        ),
        claim(
            "H7 (earlier diagnostics): at CLIP's temperature 100 the drop ratio is higher than at "
            "the checkpoint's calibrated temperature",
            "ratio(T = 100) - ratio(calibrated), per cell",
            temperature_gap,
            0.0,
            decimals=2,
            on_paper=False,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    SHARED["backbone"].but(comment="the lab's snapshots are toy-rn's (ptnl/models/toy/checkpoints/lab/)"),
    Parameter("class_counts", [8, 32], "toy-objects-<C>: 8, 16, 32, 64"),
    Parameter("shot_counts", [4, 16]),
    Parameter(
        "checkpoints",
        ["step500", "default"],
        '"default": all 6000 steps; "step<k>": a snapshot of the same run',
    ),
    Parameter("class_names", ["fixed", "learned"], "fixed: prompt tuning; learned: CLS-Tuning"),
    Parameter("temperatures", [None], "None: the checkpoint's calibrated temperature; e.g. 100.0 (CLIP's)"),
    "noise_rate",
    SHARED["seeds"].but(default=[1, 2]),
    "epochs",
    "device",
    "group_size",
    "workers",
    "feature_mode",
    "experiment",
    "save_figures",
)

SECTION = Section(
    "09_toy_lab",
    "The toy lab (beyond the paper): classes, shots, embedding strength, class names, temperature",
    lab_runs,
    parameters=PARAMETERS,
)


def checkpoint_table(df: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Per checkpoint of the grid: pretraining steps, the temperature it learned and the one the
    shipped rule gave it (its json), zero-shot accuracy on the toy set's four tasks (its json,
    mean) and on each lab task (this grid's zero-shot runs), in percent."""
    import json

    from ptnl.models.weights import resolve_weights

    f = _frame(df)
    zs = f[f["method"] == "zeroshot"].pivot_table(index="checkpoint", columns="n_classes", values="acc")
    rows = []
    for ckpt in sorted(f["checkpoint"].unique(), key=strength):
        meta = json.loads(resolve_weights(backbone, ckpt).path.with_suffix(".json").read_text())
        toy = meta.get("zero_shot_test_acc", {})
        row = {
            "checkpoint": ckpt,
            "steps": strength(ckpt),
            "learned T": meta["temperature"]["learned"],
            "calibrated T": meta["temperature"]["shipped"],
            "toy set zero-shot": round(100 * float(np.mean(list(toy.values()))), 1) if toy else np.nan,
        }
        for c in zs.columns:
            row[f"zero-shot {c} cl."] = round(float(zs.loc[ckpt, c]), 1) if ckpt in zs.index else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
