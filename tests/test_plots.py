import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ptnl.report import plots  # noqa: E402
from ptnl.train.methods import VARIANT_COLORS  # noqa: E402


def _draw():
    plots.use_style()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 12.5, 25, 50], [80, 75, 70, 60], **plots.OURS_STYLE, color=VARIANT_COLORS["prompt"])
    return fig


def test_figures_are_byte_stable(tmp_path):
    a = plots.save_figure(_draw(), "f", tmp_path / "a")
    b = plots.save_figure(_draw(), "f", tmp_path / "b")
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    assert {p.suffix for p in a} == {".png", ".pdf"}
    assert not list((tmp_path / "a").glob("*.tmp-*"))


def test_only_the_toy_set_writes_the_committed_figures(tmp_path, monkeypatch):
    from ptnl.core import paths

    monkeypatch.setenv("PTNL_FIGURES", str(tmp_path / "figures"))
    assert paths.figures_dir("toy") == paths.figures_dir() == tmp_path / "figures"
    written = plots.save_figure(_draw(), "f", experiment="paper")
    assert [p.parent for p in written] == [tmp_path / "figures" / "paper"] * 2
    assert not (tmp_path / "figures" / "f.png").exists()
