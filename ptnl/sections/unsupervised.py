"""Section 5 (notebook 07): unsupervised prompt tuning, UPL and Robust UPL: the run grid, its
evaluation, Table 5 and the claims.

The grid is one ``Ensemble`` per (dataset, method, repeat) (``ptnl.train.ensemble``: its members,
ordinary prompt-tuning runs on pseudo-labels, and the ensemble's prediction); ``run`` sweeps what
is missing and evaluates every ensemble beside zero-shot CLIP, Table 5's 0-Shot column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ptnl.core.checks import as_list, is_int
from ptnl.data import on_disk
from ptnl.models.weights import weights_available
from ptnl.report import figures, reference
from ptnl.report.claims import claim
from ptnl.report.tables import SEEDS, acc, fmt, seed_values
from ptnl.sections.common import Section, pretrained_for
from ptnl.sections.common import config as run_config
from ptnl.sections.parameters import SHARED, Parameter
from ptnl.train.config import RunConfig
from ptnl.train.ensemble import (
    PAPER_N_PROMPTS,
    Ensemble,
    config,
    ensemble,
    is_done,
    member_seeds,
    members,
)
from ptnl.train.methods import ENSEMBLE_METHODS
from ptnl.train.sweep import sweep

MEMBERS_PER_GROUP = 4  # the members of one ensemble train together (one selection, one text pass)


def sec5_unsupervised(
    backbone: str,
    datasets: Sequence[str],
    n_prompts: int = PAPER_N_PROMPTS,
    seeds: Sequence[int] = (1,),
    epochs: int = 50,
    shots: int = 16,
    fill: str = "all",
    methods: Sequence[str] = tuple(ENSEMBLE_METHODS),
    feature_mode: str = "views",
    pretrained="default",
) -> list[Ensemble]:
    """Notebook 07: every (dataset, method, repeat) ensemble. Repeat ``s`` draws Robust UPL's
    images with ``selection_seed = s`` and trains prompts ``member_seeds(s, n_prompts)``."""
    if not is_int(n_prompts) or n_prompts < 1:
        raise ValueError(
            f"n_prompts must be an integer >= 1 (the paper ensembles 4 prompts), got {n_prompts!r}"
        )
    out = []
    for dataset in as_list(datasets, "datasets"):
        for method in as_list(methods, "methods"):
            for s in as_list(seeds, "seeds"):
                if not is_int(s) or s < 1:
                    raise ValueError(f"seeds are repeat numbers >= 1, got {s!r}")
                members = tuple(
                    config(
                        method,
                        dataset,
                        backbone,
                        seed=m,
                        selection_seed=s,
                        fill=fill,
                        shots=shots,
                        epochs=epochs,
                        feature_mode=feature_mode,
                        pretrained=pretrained_for(pretrained, backbone),
                    )
                    for m in member_seeds(s, n_prompts)
                )
                out.append(Ensemble(method, s, members))
    return out


def describe(ensembles: Sequence[Ensemble], experiment: str) -> str:
    """What ``run`` will do: ensembles, member runs done / to run, and what is missing on disk."""
    ms = members(ensembles)
    done = sum(is_done(c, experiment) for c in ms)
    pending = [c for c in ms if not is_done(c, experiment)]
    lines = [
        f"{len(ensembles)} ensembles ({len(ms)} member runs) in experiment {experiment!r}: {done} done, "
        f"{len(ms) - done} to run",
        f"  backbones: {', '.join(sorted({c.backbone for c in ms}))}; "
        f"datasets: {', '.join(dict.fromkeys(c.dataset for c in ms))}",
    ]
    missing_d = sorted({p.dataset for p in pending if not on_disk(p.dataset)})
    missing_w = sorted(
        {f"{p.backbone} ({p.pretrained})" for p in pending if not weights_available(p.backbone, p.pretrained)}
    )
    if missing_d:
        lines.append(f"  MISSING datasets: {', '.join(missing_d)}")
    if missing_w:
        lines.append(f"  MISSING weights: {', '.join(missing_w)}")
    return "\n".join(lines)


def zeroshot_configs(ensembles: Iterable[Ensemble]) -> list[RunConfig]:
    """The zero-shot run (engine method "zeroshot") of each dataset/backbone: Table 5's 0-Shot column."""
    seen = {}
    for e in ensembles:
        p = e.members[0]
        c = run_config(
            p.dataset,
            p.backbone,
            "zeroshot",
            pretrained=p.pretrained,
            precision=p.precision,
            epochs=p.epochs,
            shots=p.shots,
            feature_mode=p.feature_mode,
        )
        seen.setdefault(c.run_id, c)
    return list(seen.values())


def ensemble_rows(ensembles: Sequence[Ensemble], experiment: str, device=None) -> pd.DataFrame:
    """One row per ensemble: dataset, backbone, variant (method), repeat, ensemble and mean member
    accuracy (percent), pseudo-label accuracy of its training set and of the whole train split."""
    rows = []
    for e in ensembles:
        r = ensemble(e, experiment, device)
        p = e.members[0]
        rows.append(
            {
                "dataset": p.dataset,
                "backbone": p.backbone,
                "variant": e.method,
                "repeat": e.repeat,
                "n_prompts": r["n_prompts"],
                "fill": p.fill,
                "acc": 100 * r["test_acc"],
                "member_acc": 100 * float(np.mean(r["member_test_acc"])),
                "pl_acc": 100 * r["pseudo_label_acc"],
                "zeroshot_train_acc": 100 * r["zeroshot_train_acc"],
                "n_train": r["n_train"],
                "n_unique": r["n_unique"],
                "n_classes": r["n_classes"],
                "n_short_classes": r["n_short_classes"],
                "n_empty_classes": r["n_empty_classes"],
            }
        )
    return pd.DataFrame(rows)


def run(
    ensembles: Sequence[Ensemble],
    experiment: str,
    device=None,
    group_size: int = MEMBERS_PER_GROUP,
    progress: bool = False,
    workers: int = 1,
) -> pd.DataFrame:
    """Sweep what is missing (the zero-shot runs and every member, ``group_size`` members of an
    ensemble trained together, in ``workers`` processes) and evaluate every ensemble; the
    zero-shot test accuracy comes back as rows of variant "zeroshot"."""
    zcs = zeroshot_configs(ensembles)
    done = sweep(
        zcs + members(ensembles),
        experiment,
        group_size=group_size,
        device=device,
        progress=progress,
        workers=workers,
    )
    zs = done[: len(zcs)]
    df = ensemble_rows(ensembles, experiment, device)
    zrows = [
        {
            "dataset": c.dataset,
            "backbone": c.backbone,
            "variant": "zeroshot",
            "repeat": 1,
            "acc": 100 * m["test_acc"],
        }
        for c, m in zip(zcs, zs)
    ]
    out = pd.concat([pd.DataFrame(zrows), df], ignore_index=True)
    counts = ["n_prompts", "n_train", "n_unique", "n_classes", "n_short_classes", "n_empty_classes"]
    return out.astype({c: "Int64" for c in counts if c in out})  # integers, missing on zero-shot rows


# -- tables and claims -----------------------------------------------------------------------------

TABLE5_VARIANTS = ("zeroshot", "upl", "robust_upl_ce", "robust_upl_gce")


def summarize(df: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """Mean, std and count over repeats per (dataset, backbone, variant): ``ptnl.report.tables.summarize``'s shape."""
    rows = df.dropna(subset=[value])
    by = ["dataset", "backbone", "variant"]
    g = rows.groupby(by, sort=True)[value]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    if len(rows):  # each repeat's value, for the claims' verdicts (repeats are the seeds here)
        out[SEEDS] = seed_values(rows, by, value, seed="repeat")
    return out


def pseudo_label_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Pseudo-label accuracy of each selection as variants ``pl:upl`` / ``pl:robust_upl`` (the
    two Robust UPL losses share one training set), plus ``pl:all`` (the whole train split)."""
    rows = df[df["variant"] != "zeroshot"].copy()
    rows["variant"] = ["pl:upl" if v == "upl" else "pl:robust_upl" for v in rows["variant"]]
    rows = rows.drop_duplicates(["dataset", "backbone", "variant", "repeat"])
    every = rows.drop_duplicates(["dataset", "backbone", "repeat"]).assign(variant="pl:all")
    every["pl_acc"] = every["zeroshot_train_acc"]
    return summarize(pd.concat([rows, every], ignore_index=True), "pl_acc")


def paper_summary() -> pd.DataFrame:
    """Table 5 and the Caltech101 pseudo-label accuracies of Section 5 in ``summarize``'s shape."""
    t = reference.table("Table 5")
    out = pd.DataFrame(
        {
            "dataset": t["dataset"],
            "backbone": t["backbone"],
            "variant": t["method"],
            "mean": t["accuracy"],
            "std": np.nan,
            "n": 1,
        }
    )
    pl = pd.DataFrame(
        [
            {
                "dataset": "Caltech101",
                "backbone": "RN50",
                "variant": f"pl:{k}",
                "mean": v,
                "std": np.nan,
                "n": 1,
            }
            for k, v in reference.PSEUDO_LABEL_ACCURACY_CALTECH101.items()
        ]
    )
    return pd.concat([out, pl], ignore_index=True)


def table(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variants: Sequence[str] = TABLE5_VARIANTS,
    decimals: int = 1,
) -> pd.DataFrame:
    """Table 5's layout: one row per (source, dataset), one column per variant, "mean ± std" over
    repeats, and a "mean" row over datasets per source."""
    blocks = []
    for source, s in (("ours", ours), ("paper", paper)):
        if s is None or not len(s):
            continue
        s = s[s["variant"].isin(variants)]
        if not len(s):
            continue
        datasets = sorted(s["dataset"].unique())
        by = {(d, v): (m, sd) for d, v, m, sd in zip(s["dataset"], s["variant"], s["mean"], s["std"])}
        present = [v for v in variants if v in set(s["variant"])]
        cells = pd.DataFrame(
            {v: [fmt(*by[(d, v)], decimals) if (d, v) in by else "" for d in datasets] for v in present},
            index=datasets,
        )
        if len(datasets) > 1:
            cells.loc["mean"] = [f"{s[s['variant'] == v]['mean'].mean():.{decimals}f}" for v in present]
        cells.index = pd.MultiIndex.from_tuples(
            [(source, d) for d in cells.index], names=["source", "dataset"]
        )
        blocks.append(cells)
    return pd.concat(blocks).fillna("") if blocks else pd.DataFrame()


def claims_specs() -> list[dict]:
    """Section 5's claims, measured on ensemble accuracies and pseudo-label accuracies (one
    summary frame holding both: Table 5's variants and ``pl:*``)."""

    def best_other(s):
        return pd.concat([acc(s, "upl"), acc(s, "robust_upl_ce")], axis=1).max(axis=1)

    return [
        *(
            claim(
                f"{name} improves on zero-shot CLIP without any label",
                f"acc({v}) - acc(zero-shot)",
                lambda s, v=v: acc(s, v) - acc(s, "zeroshot"),
                0.0,
            )
            for v, name in (
                ("upl", "UPL"),
                ("robust_upl_ce", "Robust UPL (CE)"),
                ("robust_upl_gce", "Robust UPL (GCE)"),
            )
        ),
        claim(
            "Robust UPL with GCE is the best of the three on average",
            "acc(Robust GCE) - max(acc(UPL), acc(Robust CE))",
            lambda s: acc(s, "robust_upl_gce") - best_other(s),
            0.0,
        ),
        claim(
            "Robust UPL (GCE) beats UPL",
            "acc(Robust GCE) - acc(UPL)",
            lambda s: acc(s, "robust_upl_gce") - acc(s, "upl"),
            0.0,
        ),
        claim(
            "GCE improves Robust UPL over CE",
            "acc(Robust GCE) - acc(Robust CE)",
            lambda s: acc(s, "robust_upl_gce") - acc(s, "robust_upl_ce"),
            0.0,
        ),
        claim(
            "UPL's confident pseudo-labels are cleaner than Robust UPL's random ones (93% vs 83% on Caltech101)",
            "pseudo-label acc(UPL set) - pseudo-label acc(Robust UPL set)",
            lambda s: acc(s, "pl:upl") - acc(s, "pl:robust_upl"),
            0.0,
        ),
        claim(
            "The noisier but more diverse Robust UPL set does not hurt: Robust UPL (CE) matches or beats UPL",
            "acc(Robust CE) - acc(UPL) (matches = within 1 point)",
            lambda s: acc(s, "robust_upl_ce") - acc(s, "upl"),
            -1.0,
        ),
    ]


def figure(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variants: Sequence[str] = ("upl", "robust_upl_ce", "robust_upl_gce"),
):
    """Gain over zero-shot CLIP (accuracy points) per dataset, one bar per method: ours with the
    std over repeats, the paper's Table 5 in its own panel (different datasets in the toy world).
    The zero-shot accuracy each bar is measured from is written under the dataset's name."""
    sources = [("ours", ours)] + ([("paper", paper)] if paper is not None and len(paper) else [])
    colors = figures.colors_for(list(variants))
    fig, axes = plt.subplots(1, len(sources), figsize=(6.5 * len(sources), 3.4), squeeze=False)
    for ax, (source, s) in zip(axes[0], sources):
        zs = s[s["variant"] == "zeroshot"].set_index("dataset")["mean"]
        datasets = sorted(set(zs.index) & set(s.loc[s["variant"].isin(variants), "dataset"]))
        width = 0.8 / len(variants)
        for k, v in enumerate(variants):
            rows = s[s["variant"] == v].set_index("dataset").reindex(datasets)
            x = np.arange(len(datasets)) + (k - (len(variants) - 1) / 2) * width
            err = rows["std"].to_numpy(float) if source == "ours" and rows["std"].notna().any() else None
            ax.bar(
                x,
                rows["mean"].to_numpy(float) - zs.reindex(datasets).to_numpy(float),
                width,
                yerr=None if err is None else np.nan_to_num(err),
                color=colors[v],
                label=figures.label(v),
                capsize=2,
            )
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(datasets)))
        ax.set_xticklabels(
            [f"{d}\n(0-shot {zs[d]:.1f})" for d in datasets], rotation=30, ha="right", fontsize=7
        )
        ax.set_ylabel("accuracy - zero-shot (points)")
        spread = source == "ours" and s["std"].notna().any()
        ax.set_title(
            "paper: Table 5 (RN50)"
            if source == "paper"
            else "ours (mean ± std over repeats)"
            if spread
            else "ours (one ensemble per dataset)"
        )
    axes[0][0].legend(loc="best", fontsize=7)
    fig.tight_layout()
    return fig


def stored_configs(ensembles: Sequence[Ensemble]) -> list:
    """What the run store holds for ``ensembles``: the zero-shot runs, then every member."""
    return zeroshot_configs(ensembles) + members(ensembles)


# The notebook's parameters, in the order of its parameters cell (generated from them).
PARAMETERS = SHARED.pick(
    SHARED["backbone"].but(
        comment="pseudo-labels and prompt tuning (paper: RN50; toy-rn's zero-shot is the toy world's best)"
    ),
    "pretrained",
    SHARED["datasets"].but(
        default=["toy-shapes", "toy-fine", "toy-textures", "toy-scatter"],
        comment="paper: Table 5's eight datasets",
    ),
    Parameter("n_prompts", 4, "prompts per ensemble, trained from different seeds (paper: 4)"),
    SHARED["seeds"].but(
        default=[1], comment="repeats of the whole experiment (paper: one ensemble per dataset)"
    ),
    "epochs",
    SHARED["shots"].but(comment="K images per pseudo-class (paper: 16)"),
    Parameter(
        "fill",
        "all",
        'classes with fewer than K pseudo-labels: "all" (take them all) or "replace" (top up to K)',
    ),
    "device",
    "workers",
    "feature_mode",
    "experiment",
    "save_figures",
)

SECTION = Section(
    "07_unsupervised",
    "Section 5: unsupervised prompt tuning, UPL and Robust UPL (Table 5)",
    sec5_unsupervised,
    parameters=PARAMETERS,
    describe=describe,
    results=ensemble_rows,
    stored=stored_configs,
    group_size=MEMBERS_PER_GROUP,
)
