"""The demo's figures: a function builds each (a matplotlib ``Figure``), ``_figures`` saves them.

One colour per component of the merged mixture in every figure
(:func:`component_colours`): the histogram's component curves, the scatter's
points and bands, and the mixture history's lines (a retraining component
takes the colour of the merged component it went into). Errors are in percent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import compress

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

    from .._mixture import Mixture


FIGURES = ("histogram", "scatter", "mixture", "budget")  # <model>_seed<k>_<figure>.png

ZERO_COLOUR = "#404040"  # the zero component (component 0)
PRUNED_COLOUR = "#a0a0a0"  # a retraining component pruned when merging
# tab10's hues, then tab20's light ones, greys left out: neighbours differ in hue
_PALETTE = (
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"),
    *("#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5"),
    *("#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5"),
)
_SPAN = 4.0  # the histogram's x range covers every component's mean +- _SPAN sigma
_BINS = 200


def component_colours(n: int) -> list[str]:
    """The colour of each of ``n`` components: dark grey for component 0, then distinct hues.

    Parameters
    ----------
    n : int
        The number of components.

    Returns
    -------
    list of str
        Hex colours, distinct up to 19 components (then the hues repeat).
    """
    return [ZERO_COLOUR] + [_PALETTE[(k - 1) % len(_PALETTE)] for k in range(1, n)]


def _title(kind: str, seed: int, what: str) -> str:
    return f"{kind}, seed {seed}: {what}"


def _new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot (no global state, no backend switch), laid out with its legends."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _gauss(xs: NDArray[np.float64], mu: Any, sigma: Any) -> NDArray[np.float64]:
    """The normal density N(xs; mu, sigma^2)."""
    out: NDArray[np.float64] = np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (
        sigma * np.sqrt(2 * np.pi)
    )
    return out


def histogram_figure(
    kind: str, seed: int, weights: NDArray[Any], mix: Mixture, comp: NDArray[Any]
) -> Figure:
    """The retrained weights' histogram (weights per bin, log scale) with the mixture's components.

    Curves are in the histogram's units (expected weights per bin: a density
    times a count times the bin width). Each coloured curve is a component's
    Gaussian scaled to the weights assigned to it (``comp``); the dashed one
    is the prior's own density, whose zero component holds ``pi_0`` of the
    mass (0.999 in the demo, fixed), so it lies below the other clusters. The
    x range covers every component's mean +- 4 sigma as well as every weight.

    Parameters
    ----------
    kind, seed : str, int
        The network and the seed, named in the title.
    weights : ndarray
        The retrained weights.
    mix : Mixture
        The merged mixture.
    comp : ndarray of int
        Each weight's component in ``mix``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; each component's curve has the gid ``"component k"``.
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    mu, sigma, pi = mix.mu, mix.sigma, mix.pi
    lo = min(float(w.min()), float(np.min(mu - _SPAN * sigma)))
    hi = max(float(w.max()), float(np.max(mu + _SPAN * sigma)))
    edges = np.linspace(lo, hi, _BINS + 1)
    width = float(edges[1] - edges[0])
    fig = _new_figure(7.5, 4.2)
    ax = fig.subplots()
    counts, _, _ = ax.hist(w, bins=edges.tolist(), color="#c8c8c8", label="retrained weights")
    ax.set_yscale("log")
    xs = np.linspace(lo, hi, 4000)
    colours = component_colours(mix.n_components)
    n_k = np.bincount(np.asarray(comp).ravel(), minlength=mix.n_components)
    for k in range(mix.n_components):
        (line,) = ax.plot(
            xs, n_k[k] * width * _gauss(xs, mu[k], sigma[k]), color=colours[k], lw=1.1
        )
        line.set_gid(f"component {k}")
        if k == 0:
            line.set_label(
                r"each component (colours: the scatter's key): "
                r"N($\mu$, $\sigma^2$) $\times$ its weights $\times$ bin width"
            )
    prior = (
        w.size * width * np.sum(pi[None, :] * _gauss(xs[:, None], mu[None, :], sigma[None, :]), 1)
    )
    (line,) = ax.plot(xs, prior, "k--", lw=0.8)
    line.set_label(rf"prior: p(w) $\times$ all weights $\times$ bin width ($\pi_0$ = {pi[0]:.3g})")
    line.set_gid("prior")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.5, 40.0 * max(float(np.max(counts)), 1.0))  # room for the legend
    ax.set_xlabel("weight value")
    ax.set_ylabel(f"weights per bin (bin width {width:.3g}, log scale)")
    ax.set_title(_title(kind, seed, "retrained weights and the mixture's components"))
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _component_labels(mix: Mixture, n_k: NDArray[Any] | None = None) -> list[str]:
    labels = []
    for k in range(mix.n_components):
        held = "" if n_k is None else f", {int(n_k[k])} weights"
        labels.append(f"{k}{' (zero)' if k == 0 else ''}: μ {mix.mu[k]:+.3f}{held}")
    return labels


def _key(ax: Axes, title: str) -> None:
    """The legend, outside the axes on the right: the colour key of the components."""
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=7,
        title=title,
        title_fontsize=7,
        markerscale=4,
        frameon=False,
    )


def scatter_figure(
    kind: str,
    seed: int,
    before: NDArray[Any],
    after: NDArray[Any],
    mix: Mixture,
    comp: NDArray[Any],
) -> Figure:
    """Each weight before (pretrained) and after retraining, coloured by its component.

    The bands are each component's mean +- 2 sigma; the legend is the colour
    key (component, mean, weights assigned).

    Parameters
    ----------
    kind, seed : str, int
        The network and the seed, named in the title.
    before, after : ndarray
        The pretrained and the retrained weights, in the same order.
    mix : Mixture
        The merged mixture.
    comp : ndarray of int
        Each weight's component in ``mix``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes, one scatter (and legend entry) per component.
    """
    w0 = np.asarray(before, dtype=np.float64).ravel()
    w1 = np.asarray(after, dtype=np.float64).ravel()
    comp = np.asarray(comp).ravel()
    colours = component_colours(mix.n_components)
    n_k = np.bincount(comp, minlength=mix.n_components)
    labels = _component_labels(mix, n_k)
    fig = _new_figure(7.5, 5.5)
    ax = fig.subplots()
    for k in range(mix.n_components):
        m, s = float(mix.mu[k]), float(mix.sigma[k])
        ax.axhspan(m - 2 * s, m + 2 * s, color=colours[k], alpha=0.12, lw=0)
        held = comp == k
        ax.scatter(w0[held], w1[held], color=colours[k], s=2, label=labels[k], rasterized=True)
    ax.set_xlim(float(w0.min()), float(w0.max()))
    pad = 0.03 * float(np.ptp(w1) or 1.0)
    ax.set_ylim(float(w1.min()) - pad, float(w1.max()) + pad)
    ax.set_xlabel("pretrained weight")
    ax.set_ylabel(r"retrained weight (bands: component mean ± 2$\sigma$)")
    ax.set_title(_title(kind, seed, "each weight before and after retraining"))
    _key(ax, "component: mean, weights")
    return fig


def merged_into(merge: compress.MergeReport | None, n_in: int) -> list[int | None]:
    """For each retraining component, the merged component it became (None: pruned).

    Without a report (or one of another size) each component is itself.

    Parameters
    ----------
    merge : MergeReport or None
        What :func:`softshare.compress.merge_components` did.
    n_in : int
        The number of components before merging.

    Returns
    -------
    list of int or None
        The merged component of each input component.
    """
    if merge is None:
        return list(range(n_in))
    gone = [j for group in merge.merged for j in group[1:]]
    if sorted([*merge.kept, *merge.pruned, *gone]) != list(range(n_in)):
        return list(range(n_in))
    out: list[int | None] = [None] * n_in
    for k, j in enumerate(merge.kept):
        out[j] = k
    for group in merge.merged:
        for j in group[1:]:
            out[j] = out[group[0]]
    return out


def mixture_figure(
    kind: str,
    seed: int,
    history: list[Any],
    mix: Mixture,
    merge: compress.MergeReport | None = None,
    kept_step: int | None = None,
) -> Figure:
    """The mixture's components during retraining: each mean, and a band of +- 2 sigma.

    ``history`` holds ``(step, mu, sigma)`` per validation check; a component
    is drawn in the colour of the merged component of ``mix`` it went into
    (``merge``, the :class:`softshare.compress.MergeReport`), grey and dashed
    where it was pruned. ``kept_step`` marks the retraining checkpoint kept.

    Parameters
    ----------
    kind, seed : str, int
        The network and the seed, named in the title.
    history : list of (int, ndarray, ndarray)
        The retraining checks' step, component means and widths.
    mix : Mixture
        The merged mixture (its means label the legend).
    merge : MergeReport, optional
        What merging did; without it component ``j`` keeps colour ``j``.
    kept_step : int, optional
        The step of the checkpoint kept.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; the legend is the colour key.
    """
    steps = np.array([h[0] for h in history], dtype=np.float64)
    mus = np.array([h[1] for h in history], dtype=np.float64)
    sigmas = np.array([h[2] for h in history], dtype=np.float64)
    into = merged_into(merge, mus.shape[1])
    target = [t if t is not None and t < mix.n_components else None for t in into]
    colours = component_colours(mix.n_components)
    fig = _new_figure(7.5, 4.5)
    ax = fig.subplots()
    for j in range(mus.shape[1]):
        k = target[j]
        colour = PRUNED_COLOUR if k is None else colours[k]
        lo, hi = mus[:, j] - 2 * sigmas[:, j], mus[:, j] + 2 * sigmas[:, j]
        ax.fill_between(steps, lo, hi, color=colour, alpha=0.22, lw=0)
        for edge in (lo, hi):
            ax.plot(steps, edge, color=colour, lw=0.4, alpha=0.7)
        ax.plot(steps, mus[:, j], color=colour, lw=1.3, ls="-" if k is not None else "--")
    labels = _component_labels(mix)
    for k in range(mix.n_components):
        sources = [j for j in range(len(target)) if target[j] == k]
        extra = f" ← {'+'.join(map(str, sources))}" if len(sources) > 1 else ""
        ax.plot([], [], color=colours[k], lw=1.3, label=labels[k] + extra)
    if None in target:
        ax.plot([], [], color=PRUNED_COLOUR, lw=1.3, ls="--", label="pruned")
    if kept_step is not None:
        ax.axvline(kept_step, color="k", lw=0.8, ls=":", label="checkpoint kept")
    top = float(np.max(np.abs(mus))) * 1.15 or 1.0
    ax.set_ylim(-top, top)  # the zero component's early width would hide the rest
    ax.set_xlabel("retraining step")
    ax.set_ylabel(r"weight: component mean, band ± 2$\sigma$")
    ax.set_title(_title(kind, seed, "the mixture's components during retraining"))
    _key(ax, "component: mean (← merged from)")
    return fig


def budget_figure(kind: str, seed: int, checks: list[dict[str, Any]]) -> Figure:
    """The error-budget search: validation errors (%) against the limit, the strength and the file.

    Parameters
    ----------
    kind, seed : str, int
        The network and the seed, named in the title.
    checks : list of dict
        ``RunResult.budget_history``: step, lam, error, trend, quantized_error,
        file_bytes, kept and limit of each check (errors as fractions).

    Returns
    -------
    matplotlib.figure.Figure
        Errors in percent above, the strength and the file's size below.
    """
    steps = np.array([c["step"] for c in checks])
    fig = _new_figure(6.5, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for key, label in (("error", "float weights"), ("trend", "moving average (bounded)")):
        top.plot(steps, [100 * c[key] for c in checks], lw=1, label=label)
    top.plot(steps, [100 * c["quantized_error"] for c in checks], lw=1, label="quantized")
    top.axhline(100 * checks[0]["limit"], color="tab:red", lw=0.8, label="limit: baseline + budget")
    kept = [c for c in checks if c["kept"]]
    for ax in (top, bottom):
        if kept:
            ax.axvline(kept[0]["step"], color="k", lw=0.8, ls=":", label="checkpoint kept")
    if not kept:  # restore_best then loads the check of lowest moving average
        top.plot([], [], " ", label="no check within the limit")
    low = min(100 * c["error"] for c in checks)
    top.set_ylim(max(0.0, low - 0.5), low + 3.0)
    top.set_ylabel("validation error (%)")
    top.set_title(_title(kind, seed, "the error-budget search for the prior's strength"))
    top.legend(fontsize=7)
    bottom.semilogy(steps, [c["lam"] for c in checks], color="tab:purple", lw=1, label="λ")
    bottom.set_ylabel("λ (per weight)")
    bottom.set_xlabel("retraining step")
    right = bottom.twinx()
    right.plot(steps, [c["file_bytes"] / 1000 for c in checks], color="tab:brown", lw=1)
    right.set_ylabel("file (kB, quantized now)", color="tab:brown")
    right.lines[0].set_label("file size (right axis)")
    handles = bottom.get_legend_handles_labels()[0] + right.lines[:1]
    right.legend(handles=handles, fontsize=7, loc="upper right")  # above both axes' lines
    return fig


def _figures(
    kind: str,
    seed: int,
    out: Path,
    pretrained: list[Any],
    retrained: list[Any],
    mix: Mixture,
    history: list[Any],
    budget: list[dict[str, Any]] | None = None,
    *,
    merge: compress.MergeReport | None = None,
    use_pi: bool = True,
) -> None:
    """Write the PNG figures of one run to ``out`` (nothing without matplotlib).

    ``pretrained`` and ``retrained`` are the parameters (tensors), ``mix``
    the merged mixture with its ``merge`` report and assignment rule
    (``use_pi``), ``history`` the retraining checks' ``(step, mu, sigma)``
    and ``budget`` the error-budget search's checks
    (``RunResult.budget_history``; its figure only where there are some).
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    w0 = np.concatenate([p.numpy().ravel() for p in pretrained])
    w1 = np.concatenate([p.numpy().ravel() for p in retrained])
    comp = compress.assign(w1, mix, use_pi=use_pi)
    kept = next((c["step"] for c in budget or [] if c["kept"]), None)
    figures = {
        "histogram": histogram_figure(kind, seed, w1, mix, comp),
        "scatter": scatter_figure(kind, seed, w0, w1, mix, comp),
        "mixture": mixture_figure(kind, seed, history, mix, merge, kept),
    }
    if budget:
        figures["budget"] = budget_figure(kind, seed, budget)
    for name, fig in figures.items():
        fig.savefig(out / f"{kind}_seed{seed}_{name}.png", dpi=110)
