"""ptnl.report.figures: what is drawn where, and byte-stable files."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ptnl.report import (
    figures,
    plots,  # noqa: E402
    tables,
)
from ptnl.train.methods import VARIANT_COLORS


def _summary(datasets=("toy-shapes", "toy-fine"), variants=("prompt", "linear_probe")):
    rows = []
    for d in datasets:
        for i, v in enumerate(variants):
            for r in (0.0, 0.125, 0.25, 0.5):
                rows.append(
                    {
                        "dataset": d,
                        "variant": v,
                        "noise_rate": r,
                        "mean": 80 - 10 * i - 40 * r * (i + 1),
                        "std": 1.0,
                        "n": 3,
                    }
                )
    return pd.DataFrame(rows)


def _visible(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_noise_curves_add_paper_panels_for_datasets_we_did_not_run():
    paper = tables.paper_summary("Table 1")  # OxfordPets, Food101, DTD, UCF101 (prompt only of our variants)
    fig = figures.noise_curves(_summary(), paper, variants=["prompt", "linear_probe"], ncols=3)
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes] == [
        "toy-shapes",
        "toy-fine",
        "paper: OxfordPets",
        "paper: Food101",
        "paper: DTD",
        "paper: UCF101",
    ]
    assert len(axes[0].get_lines()) == 2  # our two variants
    paper_lines = axes[4].get_lines()
    assert len(paper_lines) == 1 and paper_lines[0].get_linestyle() == "--"
    np.testing.assert_allclose(paper_lines[0].get_ydata(), [62.86, 58.90, 53.62, 46.19])
    np.testing.assert_allclose(axes[0].get_lines()[0].get_xdata(), [0, 12.5, 25, 50])
    assert axes[0].get_lines()[0].get_color() == VARIANT_COLORS["prompt"]
    plt.close(fig)


def test_noise_curves_overlay_paper_on_the_same_dataset():
    ours = _summary(datasets=("DTD",), variants=("prompt",))
    fig = figures.noise_curves(ours, tables.paper_summary("Table 1"), variants=["prompt"], datasets=["DTD"])
    axes = _visible(fig)
    assert [ax.get_title() for ax in axes][0] == "DTD"
    styles = sorted(line.get_linestyle() for line in axes[0].get_lines())
    assert styles == ["-", "--"]
    plt.close(fig)


def test_grad_ratio_and_confusion_figures():
    rows = [
        {"dataset": "a", "variant": v, "epoch": e, "mean": m, "std": 0.1, "n": 2}
        for v, m in (("prompt", 0.5), ("classifier_r", 1.2))
        for e in range(1, 6)
    ]
    fig = figures.grad_ratio_curves(pd.DataFrame(rows), ["prompt", "classifier_r"])
    ax = _visible(fig)[0]
    ys = [tuple(line.get_ydata()) for line in ax.get_lines()]
    assert (0.5,) * 5 in ys and (1.2,) * 5 in ys and (1, 1) in ys  # both curves and the line at ratio 1
    plt.close(fig)
    m = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    fig = figures.confusion_matrices({"toy": m}, {"toy": ["x", "y", "z"]})
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(shown, [[0.8, 0.2, 0], [0.5, 0.5, 0], [0, 0, 0]])
    plt.close(fig)


def test_colors_fall_back_deterministically():
    c = figures.colors_for(["prompt", "ctx-4", "ctx-8"])
    assert c["prompt"] == VARIANT_COLORS["prompt"]
    assert c["ctx-4"] != c["ctx-8"] and c == figures.colors_for(["prompt", "ctx-4", "ctx-8"])
    seq = figures.sequential_colors(["ctx-0", "ctx-4", "ctx-16"])
    assert len(set(seq.values())) == 3


def test_saved_figure_is_byte_stable(tmp_path):
    plots.use_style()
    paths = []
    for run in ("a", "b"):
        fig = figures.noise_curves(_summary(), tables.paper_summary("Table 1"))
        paths.append(plots.save_figure(fig, "fig", folder=tmp_path / run))
        plt.close(fig)
    for p, q in zip(*paths):
        assert p.read_bytes() == q.read_bytes()
