"""Beyond the paper (notebook 10): the noisy-label prompt-learning bench.

Robust prompt learning moved on after the paper: JoAPR (CVPR 2024) partitions the few-shot set
into clean and noisy parts and refurbishes labels; NLPrompt (CVPR 2025) trains with MAE and
purifies with optimal transport. Their code bases each use their own noise protocol, so their
numbers do not sit side by side. Here every method runs on one engine under every protocol:

- methods (``BENCH_METHODS``): CoOp with CE, GCE and the active-passive NCE+RCE (the paper's recipe),
  NLPrompt's PromptMAE, NLPrompt, PromptOT + CE, and JoAPR (``ptnl.train.methods.nlprompt``, ``ptnl.train.methods.joapr``);
- protocols (``RunConfig.noise_kind``): ptnl's nested per-class relabelling (``symmetric``),
  PTNL's own sampler (``ptnl``, which JoAPR's ``symflip`` also is), NLPrompt's pooled rate-based
  flips (``nlprompt_sym``, ``nlprompt_asym``: c -> c + 1) and Xia et al.'s instance-dependent
  noise (``instance``), each at every rate of ``noise_rates``; each method also runs once clean;
- detection: the four selectors of ``ptnl.models.selectors`` scored from zero-shot CLIP and from
  the trained CoOp prompt (``select_zeroshot``, ``select_prompt``) at every noisy setting, beside
  the selections NLPrompt (OT) and JoAPR (GMM) make inside their own training.

Published numbers: the paper's own (PTNL protocol, Tables 1 and 6: prompt tuning) are reference
data (``ptnl.report.reference``) and ``published_table`` sets them beside our CoOp runs under
the ``ptnl`` protocol on the datasets they report. NLPrompt's tables (its main table holds
JoAPR rows as NLPrompt ran them) are not in the reference data yet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ptnl.core.checks import as_list
from ptnl.models.selectors import SELECTORS
from ptnl.report import reference
from ptnl.report.claims import claim
from ptnl.report.tables import ACC_DECIMALS, SEEDS, acc, seed_values, select, summarize, tidy
from ptnl.sections.common import Section, check_rate, config, shared_fields, unique
from ptnl.sections.parameters import RUN_SETTINGS, SHARED, Parameter
from ptnl.train.config import RunConfig
from ptnl.train.methods import METHODS as METHODS_REGISTRY
from ptnl.train.methods import label, short, variant

BENCH_METHODS = (
    ("prompt", "ce"),
    ("prompt", "gce"),
    ("prompt", "nce_rce"),
    ("nlprompt_mae", "ce"),
    ("nlprompt", "ce"),
    ("nlprompt_ot_ce", "ce"),
    ("joapr", "ce"),
)
SELECTOR_METHODS = ("select_zeroshot", "select_prompt")
PROTOCOLS = ("symmetric", "ptnl", "nlprompt_sym", "nlprompt_asym", "instance")
CLEAN_KIND = "symmetric"  # the clean run of each method: ptnl's few-shot set at rate 0
# The learners that select clean samples inside their own training: "<selector> (in <method>)".
IN_METHOD = {n: f"{m.selector} (in {m.label})" for n, m in METHODS_REGISTRY.items() if m.selector}
DETECTION = ("noise_precision", "noise_recall", "noise_auroc")
HIGH = 0.5


def bench_runs(
    backbone: str,
    datasets: Sequence[str],
    protocols,
    seeds: Sequence[int],
    epochs: int,
    shots: int = 16,
    feature_mode: str = "views",
    noise_rates: Sequence[float] | None = None,
    methods: Sequence = BENCH_METHODS,
    real_noise_datasets: Sequence[str] = (),
    pretrained="default",
) -> list[RunConfig]:
    """Every method under every protocol at its rates (plus once clean), and the selectors at every
    noisy setting, on every dataset. ``protocols`` maps each noise kind to its noisy rates
    (``{"ptnl": [0.25, 0.5], "instance": [0.5]}``), or lists kinds that all run at ``noise_rates``.
    On each of ``real_noise_datasets`` (Food101N, CIFAR10N-*, CIFAR100N: noisy as shipped) every
    method and selector runs once per seed, on its own labels."""
    common = shared_fields(backbone, pretrained, epochs, shots, feature_mode)
    pairs = [tuple(m) if not isinstance(m, str) else (m, "ce") for m in as_list(methods, "methods")]
    settings = noisy_settings(protocols, noise_rates)
    if not datasets and not real_noise_datasets:
        raise ValueError("give datasets (synthetic noise) or real_noise_datasets (noisy as shipped), or both")
    out = []
    for ds in as_list(datasets, "datasets") if datasets else ():
        out.append(config(ds, method="zeroshot", **common))
        for seed in as_list(seeds, "seeds"):
            for method, loss in pairs:
                out.append(config(ds, method=method, loss=loss, seed=seed, noise_kind=CLEAN_KIND, **common))
                for kind, rate in settings:
                    out.append(
                        config(
                            ds,
                            method=method,
                            loss=loss,
                            seed=seed,
                            noise_kind=kind,
                            noise_rate=rate,
                            **common,
                        )
                    )
            for method in SELECTOR_METHODS:
                for kind, rate in settings:
                    out.append(
                        config(ds, method=method, seed=seed, noise_kind=kind, noise_rate=rate, **common)
                    )
    for ds in as_list(real_noise_datasets, "real_noise_datasets") if real_noise_datasets else ():
        out.append(config(ds, method="zeroshot", **common))
        for seed in as_list(seeds, "seeds"):
            for method, loss in [*pairs, *((m, "ce") for m in SELECTOR_METHODS)]:
                out.append(config(ds, method=method, loss=loss, seed=seed, **common))
    return unique(out)


def noisy_settings(protocols, noise_rates=None) -> list[tuple[str, float]]:
    """(noise kind, rate) pairs from a mapping kind -> rates, or a list of kinds at ``noise_rates``;
    rate 0 is dropped (every method runs clean once anyway)."""
    if isinstance(protocols, dict):
        items = [(k, as_list(v, f"protocols[{k!r}]")) for k, v in protocols.items()]
    else:
        if noise_rates is None:
            raise ValueError(
                "protocols is a list of noise kinds: give noise_rates too, or map each kind to its rates"
            )
        items = [(k, as_list(noise_rates, "noise_rates")) for k in as_list(protocols, "protocols")]
    out = []
    for kind, rates in items:
        if kind not in PROTOCOLS:
            raise ValueError(
                f"protocols: {kind!r} is not one of the bench's noise kinds {', '.join(PROTOCOLS)}"
            )
        for r in rates:
            check_rate(r)
            if r > 0:
                out.append((kind, float(r)))
    return out


# ------------------------------------------------------------------------------------- tables


def setting(kind: str, rate: float) -> str:
    """A column name: ``clean`` at rate 0 (on a real noisy-label set: its labels as shipped)."""
    return "clean" if rate == 0 else f"{kind} {100 * rate:g}%"


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy (mean ± sd over seeds) per method (rows) and protocol at each rate (columns)."""
    s = summarize(tidy(df[~df["method"].isin(SELECTOR_METHODS)]))
    s["setting"] = [setting(k, r) for k, r in zip(s["noise_kind"], s["noise_rate"])]
    s["cell"] = [_pm(m, sd) for m, sd in zip(s["mean"], s["std"])]
    order = ["clean"] + [setting(k, r) for k in PROTOCOLS for r in sorted(s["noise_rate"].unique()) if r > 0]
    t = s.pivot_table(index=["dataset", "variant"], columns="setting", values="cell", aggfunc="first")
    t = t[[c for c in order if c in t.columns]]
    keep = [variant(m, loss) for m, loss in BENCH_METHODS] + ["zeroshot"]
    t = t.reset_index()
    t["variant"] = pd.Categorical(t["variant"], [v for v in keep if v in set(t["variant"])], ordered=True)
    t = t.sort_values(["dataset", "variant"])
    t["variant"] = t["variant"].astype(str).map(label)
    t = t.fillna("")
    return t.rename(columns={"variant": "method"}).reset_index(drop=True)


def _pm(mean, sd):
    if np.isnan(sd):
        return f"{mean:.{ACC_DECIMALS}f}"
    return f"{mean:.{ACC_DECIMALS}f} ± {sd:.{ACC_DECIMALS}f}"


def detection_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, selector): its detection scores, with the score source it read."""
    rows = []
    for _, r in df.iterrows():
        if r["method"] in SELECTOR_METHODS:
            source = "zero-shot CLIP" if r["method"] == "select_zeroshot" else "trained CoOp"
            found = [(name, f"{name}_", source) for name in SELECTORS]
        elif r["method"] in IN_METHOD and (r["noise_rate"] > 0 or r.get("n_noisy", 0) > 0):
            found = [(IN_METHOD[r["method"]], "selection_", "its own training")]
        else:
            continue
        for name, prefix, source in found:
            row = {k: r[k] for k in ("dataset", "noise_kind", "noise_rate", "seed")}
            row.update(selector=name, scores=source)
            for k in (*DETECTION, "wrong_to_right", "right_to_wrong"):
                v = r.get(prefix + k)
                row[k] = float(v) if v is not None and not pd.isna(v) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def detection_table(det: pd.DataFrame, metric: str = "noise_auroc") -> pd.DataFrame:
    """``metric`` (mean over seeds and datasets) per selector and score source, per protocol and rate."""
    if det.empty:
        return pd.DataFrame()
    d = det.copy()
    d["setting"] = [setting(k, r) for k, r in zip(d["noise_kind"], d["noise_rate"])]
    t = d.pivot_table(index=["scores", "selector"], columns="setting", values=metric, aggfunc="mean")
    order = list(dict.fromkeys(setting(k, r) for k in PROTOCOLS for r in sorted(d["noise_rate"].unique())))
    return t[[c for c in order if c in t.columns]].round(3).reset_index()


def correction_table(det: pd.DataFrame) -> pd.DataFrame:
    """Label-correction accounting where a selector relabels (OT's transported labels, JoAPR's
    refurbished ones): training samples turned wrong -> right and right -> wrong, mean over seeds."""
    d = det.dropna(subset=["wrong_to_right"])
    if d.empty:
        return pd.DataFrame()
    d = d.assign(setting=[setting(k, r) for k, r in zip(d["noise_kind"], d["noise_rate"])])
    g = d.groupby(["scores", "selector", "setting"])[["wrong_to_right", "right_to_wrong"]].mean()
    t = g.round(1).reset_index()
    t["net"] = t["wrong_to_right"] - t["right_to_wrong"]
    t = t.melt(["scores", "selector", "setting"], var_name="count").pivot_table(
        index=["scores", "selector", "count"], columns="setting", values="value", aggfunc="first"
    )
    order = list(dict.fromkeys(setting(k, r) for k in PROTOCOLS for r in sorted(d["noise_rate"].unique())))
    t = t[[c for c in order if c in t.columns]].reset_index()
    t["count"] = pd.Categorical(t["count"], ["wrong_to_right", "right_to_wrong", "net"], ordered=True)
    return t.sort_values(["scores", "selector", "count"]).reset_index(drop=True)


def published_table(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's published prompt-tuning accuracy (its PTNL protocol; Tables 6, which holds
    Table 1's rows) beside our CoOp-CE runs under ``noise_kind="ptnl"``, on the datasets both have.
    Empty on the toy world (no published numbers exist for it)."""
    ref = reference.table("Table 6")
    ref = ref[(ref["method"] == "prompt")]
    s = summarize(tidy(df[(df["method"] == "prompt") & (df["loss"] == "ce")]))
    s = s[(s["noise_kind"] == "ptnl") | (s["noise_rate"] == 0)]
    rows = []
    for _, p in ref.iterrows():
        mine = s[(s["dataset"] == p["dataset"]) & np.isclose(s["noise_rate"], p["noise_rate"])]
        if mine.empty:
            continue
        rows.append(
            {
                "dataset": p["dataset"],
                "noise_rate": p["noise_rate"],
                "ours (CoOp, ptnl protocol)": round(float(mine["mean"].iloc[0]), ACC_DECIMALS),
                "published (Wu et al. 2023, Table 6)": p["accuracy"],
            }
        )
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- claims


def bench_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy summary (``tables.summarize``) with the selectors' mean AUROC rows added as
    variants ``auroc:<scores>:<selector>`` (mean in AUROC units), for the claims."""
    s = summarize(tidy(df[~df["method"].isin(SELECTOR_METHODS)]))
    det = detection_frame(df)
    if not det.empty:
        keys = ["dataset", "noise_kind", "noise_rate", "scores", "selector"]
        g = det.groupby(keys, dropna=False, sort=True)["noise_auroc"].mean()
        g = g.reset_index()
        extra = pd.DataFrame(
            {
                "dataset": g["dataset"],
                "variant": "auroc:" + g["scores"] + ":" + g["selector"],
                "noise_kind": g["noise_kind"],
                "noise_rate": g["noise_rate"],
                "mean": g["noise_auroc"],
                SEEDS: seed_values(det, keys, "noise_auroc"),  # per seed, for the verdicts
            }
        )
        s = pd.concat([s, extra], ignore_index=True)
    return s


def beyond_claims(s: pd.DataFrame, high: float = HIGH) -> list[dict]:
    """The bench's claims, each a statement of a later paper (or of this one) put to our runs."""
    pct = f"{100 * high:g}%"

    # Each reads the frame it is given (the verdicts resample it), not ``s`` as it was.
    def gap(s, a, b, kind, rate=high):
        return acc(s, a, rate, noise_kind=kind) - acc(s, b, rate, noise_kind=kind)

    def auroc(s, scores, selector, kinds=PROTOCOLS):
        rows = select(s, variant=f"auroc:{scores}:{selector}", noise_kind=list(kinds))
        return rows.groupby("dataset")["mean"].mean()

    def beats(text, a, b, kind):
        """A claim that variant ``a`` is more accurate than ``b`` at the high rate of ``kind``."""
        return claim(
            text,
            f"acc({short(a)}) - acc({short(b)}), {kind} {pct}",
            lambda s: gap(s, a, b, kind),
            0.0,
            on_paper=False,
        )

    return [
        beats(
            f"NLPrompt beats CoOp + GCE at {pct} symmetric noise (NLPrompt's protocol)",
            "nlprompt",
            "prompt_gce",
            "nlprompt_sym",
        ),
        beats(
            f"PromptMAE beats CoOp (CE) at {pct} symmetric noise (NLPrompt's MAE ablation)",
            "nlprompt_mae",
            "prompt",
            "nlprompt_sym",
        ),
        beats(
            f"OT purification adds to MAE: NLPrompt beats PromptMAE at {pct} symmetric noise",
            "nlprompt",
            "nlprompt_mae",
            "nlprompt_sym",
        ),
        beats(
            f"JoAPR beats CoOp (CE) at {pct} noise under PTNL's sampler (JoAPR's symflip protocol)",
            "joapr",
            "prompt",
            "ptnl",
        ),
        beats(
            f"NLPrompt beats CoOp (CE) under asymmetric (c -> c + 1) noise at {pct}",
            "nlprompt",
            "prompt",
            "nlprompt_asym",
        ),
        claim(
            "OT selection detects noisy labels better than small-loss (both on the trained CoOp prompt)",
            "AUROC(OT) - AUROC(small-loss), mean over protocols and rates",
            lambda s: auroc(s, "trained CoOp", "ot") - auroc(s, "trained CoOp", "small_loss"),
            0.0,
            decimals=3,
            on_paper=False,
        ),
        claim(
            "The trained CoOp prompt reads the noise better than zero-shot CLIP (small-loss AUROC)",
            "AUROC(small-loss on trained CoOp) - AUROC(small-loss on zero-shot), mean",
            lambda s: auroc(s, "trained CoOp", "small_loss") - auroc(s, "zero-shot CLIP", "small_loss"),
            0.0,
            decimals=3,
            on_paper=False,
        ),
        claim(
            f"PTNL's sampler and ptnl's relabelling give CoOp the same accuracy at {pct} (within 2 points)",
            f"|acc(CoOp CE, ptnl {pct}) - acc(CoOp CE, symmetric {pct})|",
            lambda s: (
                acc(s, "prompt", high, noise_kind="ptnl") - acc(s, "prompt", high, noise_kind="symmetric")
            ).abs(),
            2.0,
            direction="<",
            on_paper=False,
        ),
    ]


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    "backbone",
    "pretrained",
    SHARED["datasets"].but(default=["toy-shapes"], comment=""),
    Parameter(
        "protocols",
        {
            "symmetric": [0.5],
            "ptnl": [0.25, 0.5],
            "nlprompt_sym": [0.25, 0.5],
            "nlprompt_asym": [0.5],
            "instance": [0.5],
        },
        "each noise protocol and its noisy rates (every method also runs once clean)",
        comment_above=True,
    ),
    Parameter(
        "real_noise_datasets",
        [],
        "noisy as shipped, trained on their own labels: Food101N, CIFAR10N-worse, CIFAR100N, ...",
    ),
    SHARED["seeds"].but(default=[1, 2]),
    *RUN_SETTINGS,
)

SECTION = Section(
    "10_beyond",
    "Beyond the paper: the noisy-label prompt-learning bench (NLPrompt, JoAPR, noise protocols)",
    bench_runs,
    parameters=PARAMETERS,
)
