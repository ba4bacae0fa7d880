"""The demo's figures: weight histogram with the mixture density, weight movement, mixture history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import compress
from ..reference import log_terms

if TYPE_CHECKING:
    from pathlib import Path

    from .._mixture import Mixture


FIGURES = ("histogram", "scatter", "mixture", "budget")  # <model>_seed<k>_<figure>.png


def _figures(
    kind: str,
    seed: int,
    out: Path,
    pretrained: list[Any],
    retrained: list[Any],
    mix: Mixture,
    history: list[Any],
    budget: list[dict[str, Any]] | None = None,
) -> None:
    """Write the PNG figures of one run to ``out`` (nothing without matplotlib).

    The weight histogram with the mixture, the weights' movement, the
    mixture's history, and (given the error-budget search's checks, as
    ``RunResult.budget_history``) the search's validation curve.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    w0 = np.concatenate([p.numpy().ravel() for p in pretrained])
    w1 = np.concatenate([p.numpy().ravel() for p in retrained])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(w1, bins=200, density=True, alpha=0.6, log=True, label="retrained weights")
    xs = np.linspace(w1.min(), w1.max(), 2000)
    dens = np.sum(np.exp(log_terms(xs, mix)), axis=1)
    ax.plot(xs, dens, "k-", lw=1, label="mixture density")
    ax.set_ylim(bottom=1e-4)
    ax.set_xlabel("weight")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_histogram.png", dpi=110)
    plt.close(fig)

    comp = compress.assign(w1, mix)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(w0, w1, c=comp, s=2, cmap="tab20")
    lo, hi = float(w0.min()), float(w0.max())
    for m_, s_ in zip(mix.mu, mix.sigma):
        ax.axhspan(m_ - 2 * s_, m_ + 2 * s_, color="grey", alpha=0.15)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("pretrained weight")
    ax.set_ylabel("retrained weight")
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_scatter.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.array([h[0] for h in history])
    for j in range(len(history[0][1])):
        mu_j = np.array([h[1][j] for h in history])
        s_j = np.array([h[2][j] for h in history])
        ax.plot(steps, mu_j, lw=1)
        ax.fill_between(steps, mu_j - 2 * s_j, mu_j + 2 * s_j, alpha=0.1)
    ax.set_xlabel("retraining step")
    ax.set_ylabel("component mean ± 2 sigma")
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_mixture.png", dpi=110)
    plt.close(fig)
    if budget:
        _budget_figure(plt, out / f"{kind}_seed{seed}_budget.png", kind, budget)


def _budget_figure(plt: Any, path: Path, kind: str, checks: list[dict[str, Any]]) -> None:
    """The error-budget search: validation errors against the limit, the strength and the file."""
    steps = np.array([c["step"] for c in checks])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    for key, label in (("error", "float weights"), ("trend", "moving average (bounded)")):
        top.plot(steps, [100 * c[key] for c in checks], lw=1, label=label)
    top.plot(steps, [100 * c["quantized_error"] for c in checks], lw=1, label="quantized")
    top.axhline(100 * checks[0]["limit"], color="tab:red", lw=0.8, label="limit: baseline + budget")
    kept = [c for c in checks if c["kept"]]
    if kept:
        top.axvline(kept[0]["step"], color="k", lw=0.8, ls="--", label="checkpoint kept")
    low = min(100 * c["error"] for c in checks)
    top.set_ylim(max(0.0, low - 0.5), low + 3.0)
    top.set_ylabel("validation error (%)")
    top.set_title(f"{kind}: the error-budget search for the prior's strength")
    top.legend(fontsize=7)
    bottom.semilogy(steps, [c["lam"] for c in checks], color="tab:purple", lw=1, label="λ")
    bottom.set_ylabel("λ (per weight)")
    bottom.set_xlabel("retraining step")
    right = bottom.twinx()
    right.plot(steps, [c["file_bytes"] / 1000 for c in checks], color="tab:orange", lw=1)
    right.set_ylabel("file (kB, quantized now)", color="tab:orange")
    bottom.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
