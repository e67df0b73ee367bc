"""The paper's figures, drawn from result summaries with the paper's numbers beside ours.

Every function takes summaries (``ptnl.report.tables.summarize``: one row per setting with ``mean``,
``std``, ``n``) and returns a matplotlib Figure; it computes nothing and writes nothing. The
notebooks save what they get with ``ptnl.report.plots.save_figure`` (byte-stable PNG + PDF).

Paper numbers (``tables.paper_summary``) are drawn dashed (``plots.PAPER_STYLE``) in the panel of
the same dataset when our run has it; otherwise (the toy world) in extra panels titled
"paper: <dataset>", so the shape of the paper's curves is always on the same figure as ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ptnl.report import plots
from ptnl.train import methods

_FALLBACK = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)


def label(variant: str) -> str:
    """How a figure names a variant (the method registry's label; the name itself if it has none)."""
    return methods.label(variant)


def colors_for(variants: Sequence[str], overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per variant: the method registry's house colours, then a fixed palette."""
    out, spare = {}, [c for c in _FALLBACK]
    for v in variants:
        if overrides and v in overrides:
            out[v] = overrides[v]
        elif v in methods.VARIANT_COLORS:
            out[v] = methods.VARIANT_COLORS[v]
    used = set(out.values())
    spare = [c for c in spare if c not in used] or list(_FALLBACK)
    for i, v in enumerate(v for v in variants if v not in out):
        out[v] = spare[i % len(spare)]
    return out


def sequential_colors(variants: Sequence[str], cmap: str = "viridis") -> dict[str, str]:
    """Colours along a colormap (for ordered variants such as context lengths)."""
    import matplotlib as mpl

    cm = mpl.colormaps[cmap]
    n = max(len(variants) - 1, 1)
    return {v: mpl.colors.to_hex(cm(0.85 * i / n)) for i, v in enumerate(variants)}


def panels(n: int, ncols: int, width: float = 2.6, height: float = 2.3):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.5), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def curve(ax, s: pd.DataFrame, x: str, color: str, style: dict, band: bool = True):
    s = s.sort_values(x)
    xs = s[x].to_numpy(dtype=float) * (100.0 if x == "noise_rate" else 1.0)
    ys = s["mean"].to_numpy(dtype=float)
    ax.plot(xs, ys, color=color, markersize=4, **style)
    if band and "std" in s and s["std"].notna().any():
        sd = s["std"].fillna(0).to_numpy(dtype=float)
        ax.fill_between(xs, ys - sd, ys + sd, color=color, alpha=0.15, linewidth=0)


def noise_curves(
    ours: pd.DataFrame,
    paper: pd.DataFrame | None = None,
    variants: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    colors: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    ncols: int = 4,
    ylabel: str = "test accuracy (%)",
):
    """Accuracy vs noise rate, one panel per dataset, one line per variant (Figures 1, 2, 5, 8, 9)."""
    from matplotlib.lines import Line2D

    variants = list(variants) if variants is not None else list(dict.fromkeys(ours["variant"]))
    ours = ours[ours["variant"].isin(variants)]
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(ours["dataset"]))
    paper = paper[paper["variant"].isin(variants)] if paper is not None else None
    extra = [d for d in dict.fromkeys(paper["dataset"]) if d not in datasets] if paper is not None else []
    colors = colors_for(variants, colors)
    names = {v: (labels or {}).get(v, label(v)) for v in variants}

    fig, axes = panels(len(datasets) + len(extra), ncols)
    for ax, d in zip(axes, [*datasets, *extra]):
        mine = d in datasets
        for v in variants:
            if mine:
                s = ours[(ours["dataset"] == d) & (ours["variant"] == v)]
                if len(s):
                    curve(
                        ax,
                        s.groupby("noise_rate", as_index=False)[["mean", "std"]].mean(),
                        "noise_rate",
                        colors[v],
                        plots.OURS_STYLE,
                    )
            if paper is not None:
                p = paper[(paper["dataset"] == d) & (paper["variant"] == v)]
                if len(p):
                    curve(
                        ax,
                        p.groupby("noise_rate", as_index=False)[["mean", "std"]].mean(),
                        "noise_rate",
                        colors[v],
                        plots.PAPER_STYLE,
                        band=False,
                    )
        ax.set_title(d if mine else f"paper: {d}")
        ax.set_xlabel("noise rate (%)")
        ax.set_xticks([0, 12.5, 25, 50])
        ax.set_xticklabels(["0", "12.5", "25", "50"])
    for ax in axes[:: max(1, min(ncols, len(axes)))]:
        ax.set_ylabel(ylabel)
    handles = [Line2D([], [], color=colors[v], **plots.OURS_STYLE, label=names[v]) for v in variants]
    handles.append(Line2D([], [], color="black", **plots.OURS_STYLE, label="ours (mean ± std over seeds)"))
    if paper is not None and len(paper):
        handles.append(Line2D([], [], color="black", **plots.PAPER_STYLE, label="paper"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(handles) > 4), 1, 1))
    return fig


def grad_ratio_curves(
    summary: pd.DataFrame,
    variants: Sequence[str],
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
    ncols: int = 4,
):
    """Noisy-to-clean gradient-norm ratio vs epoch, one panel per dataset (Figure 4).

    The paper prints no values for Figure 4, so there are no paper curves; the dotted line at 1
    marks where noisy and clean samples pull equally hard.
    """
    from matplotlib.lines import Line2D

    datasets = list(dict.fromkeys(summary["dataset"]))
    colors = colors_for(variants)
    names = {v: (labels or {}).get(v, label(v)) for v in variants}
    fig, axes = panels(len(datasets), ncols)
    for ax, d in zip(axes, datasets):
        for v in variants:
            s = summary[(summary["dataset"] == d) & (summary["variant"] == v)]
            if len(s):
                curve(ax, s, "epoch", colors[v], dict(linestyle="-", marker=None))
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
        ax.set_title(d)
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("noisy / clean gradient norm")
    handles = [Line2D([], [], color=colors[v], label=names[v]) for v in variants]
    handles.append(Line2D([], [], color="black", linestyle=":", label="ratio = 1 (paper prints no values)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def confusion_matrices(
    matrices: Mapping[str, np.ndarray],
    classnames: Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
    max_ticks: int = 16,
    ncols: int = 2,
):
    """Row-normalised confusion matrices (rows = true class), one panel each (Figure 6).

    Panel titles are the mapping's keys (a newline in a key keeps long titles apart)."""
    import matplotlib.pyplot as plt

    names = list(matrices)
    ncols = max(1, min(ncols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.8 * ncols, 4.4 * nrows), squeeze=False, layout="constrained"
    )
    flat = axes.ravel()
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(flat, names):
        m = np.asarray(matrices[name], dtype=float)
        rows = m.sum(1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        ax.grid(False)
        c = len(m)
        if classnames and name in classnames and c <= max_ticks:
            ax.set_xticks(range(c))
            ax.set_yticks(range(c))
            ax.set_xticklabels(classnames[name], rotation=90, fontsize=6)
            ax.set_yticklabels(classnames[name], fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=list(flat[: len(names)]), shrink=0.6, label="share of the true class")
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- the toy lab (notebook 09)

LAB_NAMES = {"fixed": "prompt tuning (names fixed)", "learned": "CLS-Tuning (names learned)"}


def _checkpoint_label(checkpoint: str, steps: int) -> str:
    return f"shipped ({steps} steps)" if checkpoint == "default" else f"{steps} steps"


def lab_heatmaps(
    t: pd.DataFrame, names: str = "fixed", regime: tuple[int, int] = (37, 16), title: str | None = None
):
    """The drop ratio over classes x shots, one panel per checkpoint (columns, weakest first) and
    temperature (rows), from ``ptnl.sections.lab.cell_table``; cells of the paper's regime
    (at least ``regime[0]`` classes, ``regime[1]`` shots) outlined."""
    import seaborn as sns
    from matplotlib.patches import Rectangle

    s = t[t["class_names"] == names]
    ckpts = s.drop_duplicates("checkpoint").sort_values("steps")[["checkpoint", "steps"]].to_numpy().tolist()
    temps = sorted(s["temperature"].unique(), key=lambda v: (v != "ckpt", v))
    classes, shots = sorted(s["n_classes"].unique()), sorted(s["shots"].unique())
    fig, axes = panels(
        len(ckpts) * len(temps), len(ckpts), width=0.75 * len(shots) + 1.6, height=0.45 * len(classes) + 1.2
    )
    inside = False
    for ax, (temp, (ckpt, steps)) in zip(axes, [(a, b) for a in temps for b in ckpts]):
        cell = s[(s["checkpoint"] == ckpt) & (s["temperature"] == temp)]
        grid = cell.pivot_table(index="n_classes", columns="shots", values="ratio").reindex(
            index=classes, columns=shots
        )
        sns.heatmap(
            grid,
            ax=ax,
            annot=True,
            fmt=".2f",
            cmap="vlag",
            vmin=0.0,
            vmax=1.0,
            center=0.5,
            cbar=False,
            linewidths=0.5,
            linecolor="white",
            annot_kws={"fontsize": 8},
        )
        for i, c in enumerate(classes):
            for j, k in enumerate(shots):
                if c >= regime[0] and k >= regime[1]:
                    inside = True
                    ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=2))
        ax.invert_yaxis()  # more classes upwards
        ax.set_xlabel("shots per class")
        ax.set_ylabel("classes")
        ax.grid(False)
        t_label = "calibrated T" if temp == "ckpt" else f"T = {temp}"
        ax.set_title(f"{_checkpoint_label(ckpt, steps)}, {t_label}")
    note = (
        f"outlined: the paper's regime ({regime[0]}+ classes, {regime[1]} shots)"
        if inside
        else f"the paper's regime ({regime[0]}+ classes, {regime[1]} shots) lies beyond this grid"
    )
    fig.suptitle(
        (title or f"drop ratio of {LAB_NAMES[names]} to Classifier-R (0 % -> 50 % noise)") + f"\n{note}"
    )
    fig.tight_layout()
    return fig


RATIO_CLIP = 2.0  # lab_factor_lines draws cell ratios above this at its edge (triangles)


def lab_factor_lines(t: pd.DataFrame, title: str | None = None):
    """Each factor of the lab on its own panel, per level, one line per class-name setting: the
    drop ratio (top; the ratio of the mean drops over the other factors' cells, as a drop-ratio
    table's mean row) and the accuracy at 50 % noise (bottom, averaged; Classifier-R dashed).
    Points are the cells behind each line; a cell ratio above ``RATIO_CLIP`` (Classifier-R lost
    almost nothing there) is drawn at the edge as a triangle."""
    from matplotlib.lines import Line2D

    factors = [
        ("n_classes", "classes"),
        ("shots", "shots per class"),
        ("steps", "pretraining steps"),
        ("temperature", "temperature"),
    ]
    factors = [(f, x) for f, x in factors if t[f].nunique() > 1] or factors[:1]
    colors = colors_for(["prompt", "cls_tuning", "classifier_r"])
    line_color = {"fixed": colors["prompt"], "learned": colors["cls_tuning"]}
    fig, axes = panels(2 * len(factors), len(factors), width=2.6, height=2.2)
    top, bottom = axes[: len(factors)], axes[len(factors) :]
    for (f, xlabel), ax_r, ax_a in zip(factors, top, bottom):
        levels = sorted(t[f].unique(), key=lambda v: (isinstance(v, str) and v != "ckpt", v))
        pos = {v: i for i, v in enumerate(levels)}
        for names, g in t.groupby("class_names", sort=True):
            xs, color = g[f].map(pos), line_color[names]
            over = g["ratio"] > RATIO_CLIP
            ax_r.scatter(xs[~over], g["ratio"][~over], s=8, color=color, alpha=0.3, linewidths=0)
            ax_r.scatter(
                xs[over], np.full(int(over.sum()), RATIO_CLIP), s=14, marker="^", color=color, alpha=0.5
            )
            ax_a.scatter(xs, g["noisy"], s=8, color=color, alpha=0.3, linewidths=0)
            by = g.groupby(f)
            pooled = (by["drop"].mean() / by["ref_drop"].mean()).reindex(levels)
            ax_r.plot(range(len(levels)), pooled.to_numpy(float), marker="o", markersize=4, color=color)
            acc = by["noisy"].mean().reindex(levels)
            ax_a.plot(range(len(levels)), acc.to_numpy(float), marker="o", markersize=4, color=color)
        ax_r.set_ylim(0, RATIO_CLIP * 1.05)
        ref = t[t["class_names"] == t["class_names"].iloc[0]].groupby(f)["ref_noisy"].mean().reindex(levels)
        ax_a.plot(
            range(len(levels)),
            ref.to_numpy(float),
            marker="s",
            markersize=3,
            linestyle="--",
            color=colors["classifier_r"],
        )
        ax_r.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        for ax in (ax_r, ax_a):
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels(["calibrated" if v == "ckpt" else str(v) for v in levels])
        ax_a.set_xlabel(xlabel)
    top[0].set_ylabel("drop ratio to Classifier-R")
    bottom[0].set_ylabel("accuracy at 50 % noise (%)")
    handles = [
        Line2D([], [], color=line_color[n], marker="o", markersize=4, label=LAB_NAMES[n])
        for n in sorted(t["class_names"].unique())
    ]
    handles.append(
        Line2D(
            [],
            [],
            color=colors["classifier_r"],
            marker="s",
            markersize=3,
            linestyle="--",
            label="Classifier-R",
        )
    )
    handles.append(Line2D([], [], color="grey", linestyle=":", label="the paper's margin (ratio 0.5)"))
    ncol = len(handles) if len(factors) > 2 else 2
    fig.legend(handles=handles, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07 if ncol == len(handles) else 0.12, 1, 1))
    return fig
