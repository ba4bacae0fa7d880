"""The demo's figures read without the code: titles, axis labels, colour keys, percent errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the figures need matplotlib")

from matplotlib.colors import same_color

import softshare
from softshare import compress
from softshare.demo import plots

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# a zero component holding nearly all the prior's mass, and the outermost cluster far out
MEANS = np.array([0.0, -0.6, -0.2, 0.3, 1.4])
SIGMAS = np.array([0.01, 0.02, 0.015, 0.02, 0.03])
HELD = np.array([4000, 150, 120, 200, 40])


def _mixture() -> softshare.Mixture:
    pi = np.r_[0.999, np.full(4, 0.00025)]
    return softshare.Mixture(MEANS, np.log(SIGMAS**2), np.log(pi))


def _weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    after = np.concatenate([rng.normal(m, s / 2, n) for m, s, n in zip(MEANS, SIGMAS, HELD)])
    before = after + rng.normal(0, 0.1, after.size)
    return before, after, compress.assign(after, _mixture())


def _history(n_steps: int = 12) -> list[Any]:
    """Six retraining components (in the prior's order), merged into MEANS' five."""
    ends = np.array([0.3, -0.6, 0.0, 1.4, -0.2, -0.58])
    starts = ends * 0.2
    out = []
    for i in range(n_steps):
        t = (i + 1) / n_steps
        mu = starts + t * (ends - starts)
        mu[2] = 0.0
        out.append((10 * (i + 1), mu, np.full(6, 0.3 * (1 - t) + 0.02)))
    return out


# retraining components 2 (zero), 1+5 merged, 4, 0, 3 -> merged components 0..4 by mean
MERGE = compress.MergeReport(merged=[(1, 5)], pruned=[], kept=[2, 1, 4, 0, 3])


def _checks() -> list[dict[str, Any]]:
    return [
        {
            "step": 10 * (i + 1),
            "lam": 1e-6 * 1.25**i,
            "error": 0.02 + 0.001 * i,
            "trend": 0.02 + 0.0008 * i,
            "quantized_error": 0.025 + 0.001 * i,
            "file_bytes": 3000 - 100 * i,
            "kept": i == 4,
            "limit": 0.03,
        }
        for i in range(8)
    ]


def _axes_read(fig: Figure, kind: str = "mlp", seed: int = 3) -> list[Axes]:
    """Every axes has labelled x and y axes; the figure's title names the network and seed."""
    titles = [ax.get_title() for ax in fig.axes] + [fig.get_suptitle()]
    assert any(f"{kind}, seed {seed}" in t for t in titles), titles
    for ax in fig.axes:
        assert ax.get_ylabel(), ax
        if ax.get_xaxis().get_visible() and ax.get_xticklabels():
            assert ax.get_xlabel() or any(
                a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax)
            )
    return list(fig.axes)


def test_histogram_curves_are_in_the_histogram_units_and_cover_every_component() -> None:
    _, after, comp = _weights()
    mix = _mixture()
    fig = plots.histogram_figure("mlp", 3, after, mix, comp)
    (ax,) = _axes_read(fig)
    assert "weights per bin" in ax.get_ylabel()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("$\\pi_0$ = 0.999" in t for t in texts), texts  # the prior's small curves, explained
    lo, hi = ax.get_xlim()
    assert lo <= float(np.min(MEANS - 3 * SIGMAS))
    assert hi >= float(np.max(MEANS + 3 * SIGMAS))
    counts = np.array([p.get_height() for p in ax.patches])
    edges = np.array([p.get_x() for p in ax.patches])
    colours = plots.component_colours(mix.n_components)
    for k, (m, s) in enumerate(zip(MEANS, SIGMAS)):
        (line,) = [ln for ln in ax.lines if ln.get_gid() == f"component {k}"]
        assert same_color(line.get_color(), colours[k])
        x, y = line.get_data()
        near = np.abs(x - m) < 3 * s
        assert near.any(), f"component {k} is not drawn"  # the outermost one too
        bars = counts[np.abs(edges - m) < 3 * s]
        # the component's curve peaks at the height of its cluster (not 30-100x below)
        assert 0.3 < np.max(y[near]) / bars.max() < 3.0, k


def test_scatter_has_a_colour_key_with_one_colour_per_component() -> None:
    before, after, comp = _weights()
    mix = _mixture()
    fig = plots.scatter_figure("mlp", 3, before, after, mix, comp)
    (ax,) = _axes_read(fig)
    legend = ax.get_legend()
    assert legend is not None
    entries = legend.legend_handles
    assert len(entries) == mix.n_components
    colours = plots.component_colours(mix.n_components)
    assert len(set(colours)) == mix.n_components
    for k, (handle, text) in enumerate(zip(entries, legend.get_texts())):
        assert same_color(handle.get_facecolor()[0], colours[k])
        assert text.get_text().startswith(f"{k}")
        assert f"{MEANS[k]:+.3f}" in text.get_text()


def test_mixture_history_uses_the_scatter_colours_and_visible_bands() -> None:
    mix = _mixture()
    fig = plots.mixture_figure("mlp", 3, _history(), mix, MERGE, kept_step=80)
    (ax,) = _axes_read(fig)
    colours = plots.component_colours(mix.n_components)
    target = plots.merged_into(MERGE, 6)
    assert target == [3, 1, 0, 4, 2, 1]
    means = [ln for ln in ax.lines if ln.get_linewidth() > 1.0 and len(ln.get_xdata()) > 1]
    assert len(means) == 6
    for j, line in enumerate(means):
        assert same_color(line.get_color(), colours[target[j]])
        assert line.get_ydata()[-1] == pytest.approx(MEANS[target[j]], abs=0.03)
    bands = ax.collections
    assert len(bands) == 6
    assert all(b.get_alpha() >= 0.2 for b in bands)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len([t for t in texts if t[:1].isdigit()]) == mix.n_components
    assert any("← 1+5" in t for t in texts)
    assert "checkpoint kept" in texts


def test_budget_figure_shows_errors_in_percent_with_its_legends() -> None:
    fig = plots.budget_figure("mlp", 3, _checks())
    axes = _axes_read(fig)
    top = axes[0]
    assert "%" in top.get_ylabel()
    assert max(top.lines[0].get_ydata()) == pytest.approx(100 * (0.02 + 0.007))
    legends = [ax.get_legend() for ax in axes if ax.get_legend() is not None]
    assert len(legends) == 2
    labels = [t.get_text() for lg in legends for t in lg.get_texts()]
    assert "limit: baseline + budget" in labels
    assert "file size (right axis)" in labels


def test_merged_into_without_a_matching_report_is_the_identity() -> None:
    assert plots.merged_into(None, 3) == [0, 1, 2]
    assert plots.merged_into(MERGE, 4) == [0, 1, 2, 3]
    pruned = compress.MergeReport(merged=[], pruned=[1], kept=[0, 2])
    assert plots.merged_into(pruned, 3) == [0, None, 1]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_quick_run_writes_every_figure_and_prints_errors_in_percent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch", reason="the demo needs PyTorch")
    pytest.importorskip("sklearn", reason="the demo's default data ships with scikit-learn")
    from softshare import demo

    data = demo.load_data(None, 0)
    demo.run_network("mlp", data, demo.Config.quick(), 0, tmp_path, progress=True, plots=True)
    for name in plots.FIGURES:
        assert (tmp_path / f"mlp_seed0_{name}.png").stat().st_size > 1000, name
    err = capsys.readouterr().err
    shown = re.findall(r"val err ([\d.]+)( %)?", err)
    assert shown, err
    assert all(re.fullmatch(r"\d+\.\d\d", value) and pct for value, pct in shown), shown


def test_mixture_history_without_a_report_greys_only_the_components_it_cannot_place() -> None:
    fig = plots.mixture_figure("mlp", 3, _history(), _mixture())  # 6 components drawn, 5 merged
    (ax,) = _axes_read(fig)
    means = [ln for ln in ax.lines if ln.get_linewidth() > 1.0 and len(ln.get_xdata()) > 1]
    colours = plots.component_colours(5)
    assert [same_color(ln.get_color(), c) for ln, c in zip(means, colours)] == [True] * 5
    assert same_color(means[5].get_color(), plots.PRUNED_COLOUR)
