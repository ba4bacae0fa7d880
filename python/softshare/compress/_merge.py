"""Merging of components whose distributions nearly coincide, and pruning of dead ones.

:func:`softshare.compress.merge_components` and ``MixturePrior.merge_`` (torch) apply these rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._inputs import as_mixture
from .._mixture import Mixture
from .._penalty import penalty

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .._inputs import WeightsLike


def _symmetric_kl(mu: NDArray[np.float64], var: NDArray[np.float64]) -> NDArray[np.float64]:
    """Symmetric KL divergence between every pair of Gaussians ``N(mu_j, var_j)``, (M, M)."""
    ratio = var[:, None] / var[None, :]
    d2 = (mu[:, None] - mu[None, :]) ** 2
    return 0.5 * (ratio + 1.0 / ratio - 2.0) + 0.5 * d2 * (1.0 / var[:, None] + 1.0 / var[None, :])


def symmetric_kl(mixture: Mixture) -> NDArray[np.float64]:
    """Symmetric KL divergence between every pair of components.

    Parameters
    ----------
    mixture : Mixture
        The mixture.

    Returns
    -------
    ndarray, shape (M, M)
        ``KL(j || k) + KL(k || j)``, float64; zero on the diagonal.
    """
    return _symmetric_kl(mixture.mu, mixture.var)


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_components` did: merged groups and pruned components.

    Attributes
    ----------
    merged : list of tuple of int
        The groups of input components merged into one (the first one names it).
    pruned : list of int
        The input components pruned for lack of responsibility.
    kept : list of int
        The input components that remain, in the output's order.
    """

    merged: list[tuple[int, ...]] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(self.kept)} components kept"]
        if self.merged:
            parts.append("merged " + ", ".join("+".join(map(str, g)) for g in self.merged))
        if self.pruned:
            parts.append("pruned " + ", ".join(map(str, self.pruned)))
        return "; ".join(parts)


def merge_components(
    mixture: Mixture,
    weights: WeightsLike | None = None,
    *,
    threshold: float = 1.0,
    min_responsibility: float = 0.5,
    zero_component: bool = True,
) -> tuple[Mixture, MergeReport]:
    """Merge components whose distributions nearly coincide; prune dead ones.

    Two components merge when their symmetric KL divergence is below
    ``threshold`` (1.0: their means lie within about one sigma of each other and
    their widths are similar; retrained mixtures routinely have such pairs).
    Merging matches moments: ``pi = pi_a + pi_b``, the mean and variance of the
    pair as one distribution. With ``weights`` given, components whose total
    responsibility S0 is below ``min_responsibility`` are pruned first. The
    zero component (index 0) is never pruned and keeps mean 0 when merged.

    Parameters
    ----------
    mixture : Mixture
        The mixture, zero component (if any) at index 0.
    weights : array_like or list of array_like, optional
        The weights, for pruning; without them nothing is pruned.
    threshold : float, default 1.0
        Pairs with a symmetric KL divergence below this merge, closest first.
    min_responsibility : float, default 0.5
        Components with a smaller S0 over ``weights`` are pruned.
    zero_component : bool, default True
        Treat component 0 as the zero component.

    Returns
    -------
    (Mixture, MergeReport)
        The reduced mixture (zero component first) and what was done, in the
        input's component indices.

    Raises
    ------
    ValueError
        If ``threshold`` or ``min_responsibility`` is negative or NaN.
    """
    for name, value in (("threshold", threshold), ("min_responsibility", min_responsibility)):
        if not value >= 0:  # NaN too
            msg = f"{name} must be a number >= 0, got {value!r}"
            raise ValueError(msg)
    mix = as_mixture(mixture)
    m = mix.n_components
    pi = mix.pi.copy()
    mu = mix.mu.copy()
    var = mix.var.copy()
    pruned: list[int] = []
    alive = np.ones(m, dtype=bool)
    if weights is not None:
        s0 = penalty(weights, mix, 1.0).stats[0]
        for j in range(m):
            if s0[j] < min_responsibility and not (zero_component and j == 0):
                alive[j] = False
                pruned.append(j)
    groups: list[list[int]] = [[j] for j in range(m) if alive[j]]
    while len(groups) > 1:
        heads = [g[0] for g in groups]
        # each variance through its log, as the reduced Mixture would store it
        kl = _symmetric_kl(mu[heads], np.exp(np.array([math.log(var[j]) for j in heads])))
        np.fill_diagonal(kl, np.inf)
        a, b = np.unravel_index(int(np.argmin(kl)), kl.shape)
        if not kl[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        ia, ib = groups[a][0], groups[b][0]
        p = pi[ia] + pi[ib]
        m_new = (pi[ia] * mu[ia] + pi[ib] * mu[ib]) / p
        v_new = (pi[ia] * (var[ia] + mu[ia] ** 2) + pi[ib] * (var[ib] + mu[ib] ** 2)) / p - m_new**2
        if zero_component and 0 in (ia, ib):
            m_new = 0.0
        pi[ia], mu[ia], var[ia] = p, m_new, max(v_new, 1e-300)
        groups[a] = groups[a] + groups[b]
        del groups[b]
    kept = [g[0] for g in groups]
    merged = [tuple(g) for g in groups if len(g) > 1]
    order = sorted(kept, key=lambda j: (not (zero_component and j == 0), mu[j]))
    pis = np.array([pi[j] for j in order])
    out = Mixture(
        [mu[j] for j in order], [math.log(var[j]) for j in order], np.log(pis / pis.sum())
    )
    return out, MergeReport(merged=merged, pruned=pruned, kept=order)
