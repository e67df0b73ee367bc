"""The bench's figures (notebook 10): accuracy per protocol, and how well each selector finds noise.

Like ``ptnl.report.figures``, every function takes frames the section computed
(``ptnl.sections.beyond``) and returns a matplotlib Figure; nothing is computed or written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ptnl.models.selectors import LABELS as SELECTOR_LABELS
from ptnl.report import plots
from ptnl.report.figures import colors_for, curve, label, panels

PROTOCOL_TITLES = {
    "symmetric": "ptnl: per-class relabelling",
    "ptnl": "PTNL's sampler (JoAPR's symflip)",
    "nlprompt_sym": "NLPrompt: pooled symmetric",
    "nlprompt_asym": "NLPrompt: pooled c -> c+1",
    "instance": "instance-dependent (Xia et al.)",
}


def protocol_curves(
    s: pd.DataFrame, protocols: Sequence[str], variants: Sequence[str], clean_kind: str, title=None
):
    """Test accuracy vs noise rate, one panel per protocol (and dataset), one line per method; the
    clean run (rate 0, ``clean_kind``'s few-shot set) starts every panel's lines, and zero-shot
    CLIP's accuracy is the dotted line."""
    datasets = sorted(s["dataset"].unique())
    cells = [(d, p) for d in datasets for p in protocols]
    fig, axes = panels(len(cells), ncols=len(protocols), width=2.5, height=2.4)
    colors = colors_for(list(variants))
    for ax, (ds, kind) in zip(axes, cells):
        zs = s[(s["dataset"] == ds) & (s["variant"] == "zeroshot")]
        if len(zs):  # needs no labels: the level the robust methods hold
            ax.axhline(
                float(zs["mean"].iloc[0]),
                color="#000000",
                linestyle=":",
                linewidth=1,
                label=label("zeroshot"),
            )
        for v in variants:
            rows = s[(s["dataset"] == ds) & (s["variant"] == v)]
            rows = rows[
                (rows["noise_kind"] == kind)
                | ((rows["noise_rate"] == 0) & (rows["noise_kind"] == clean_kind))
            ]
            if rows.empty:
                continue
            curve(ax, rows, "noise_rate", colors[v], {**plots.OURS_STYLE, "label": label(v)}, band=False)
        ax.set_title(PROTOCOL_TITLES.get(kind, kind) + ("" if len(datasets) == 1 else f"\n{ds}"), fontsize=8)
        ax.set_xlabel("noise rate (%)")
    axes[0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", fontsize=8, bbox_to_anchor=(1.0, 0.5))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def detection_heatmap(t: pd.DataFrame, metric: str = "AUROC", title=None):
    """A selector x setting heatmap of a ``detection_table`` (rows: score source and selector)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    values = t.set_index(["scores", "selector"])
    rows = [f"{label_selector(sel)}  [{src}]" for src, sel in values.index]
    data = pd.DataFrame(values.to_numpy(dtype=float), index=rows, columns=values.columns)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * data.shape[1], 0.9 + 0.32 * data.shape[0]))
    sns.heatmap(
        data,
        ax=ax,
        annot=True,
        fmt=".2f",
        vmin=0.5,
        vmax=1.0,
        cmap="viridis",
        cbar_kws={"label": metric},
        annot_kws={"fontsize": 7},
    )
    ax.grid(False)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=40, labelsize=7)
    ax.tick_params(axis="y", labelsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def label_selector(name: str) -> str:
    return SELECTOR_LABELS.get(name, name)
