"""A starting mixture for retraining, laid over pretrained weights.

:func:`softshare.compress.init_mixture`, and ``MixturePrior.from_weights`` on the torch side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._inputs import as_weights
from ._mixture import Mixture

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._inputs import WeightsLike


def _flat64(weights: WeightsLike) -> NDArray[np.float64]:
    """All the weights as one float64 vector (empty for no weights)."""
    w = as_weights(weights)
    if not w.flat:
        return np.zeros(0)
    return np.concatenate([a.astype(np.float64, copy=False) for a in w.flat])


def init_mixture(
    weights: WeightsLike,
    n_components: int = 17,
    *,
    zero_component: bool = True,
    pi_zero: float = 0.999,
    spread: str = "range",
    sigma: float | None = None,
) -> Mixture:
    """A mixture to start retraining from, laid over trained weights.

    Parameters
    ----------
    weights : array_like or list of array_like
        The pretrained weights.
    n_components : int, default 17
        Number of components M, the zero component included.
    zero_component : bool, default True
        Component 0 has mean exactly 0 and mixing proportion ``pi_zero``.
    pi_zero : float, default 0.999
        Initial mixing proportion of the zero component (0 < pi_zero < 1).
    spread : {"range", "quantile"}, default "range"
        Means evenly over [min, max] of the weights, or at evenly spaced
        quantiles of them.
    sigma : float, optional
        Shared initial standard deviation; by default a quarter of the spacing
        of the means.

    Returns
    -------
    Mixture
        Components ordered as: zero component (if any), then means ascending.

    Raises
    ------
    ValueError
        If there are no weights or some are not finite, or an argument is out
        of its range.
    """
    w = _flat64(weights)
    if w.size == 0:
        msg = "init_mixture needs at least one weight"
        raise ValueError(msg)
    if not np.all(np.isfinite(w)):
        msg = "weights must be finite"
        raise ValueError(msg)
    n_free = n_components - (1 if zero_component else 0)
    if n_free < 1:
        msg = f"n_components must be >= {2 if zero_component else 1}, got {n_components}"
        raise ValueError(msg)
    if zero_component and not 0.0 < pi_zero < 1.0:
        msg = f"pi_zero must be in (0, 1), got {pi_zero}"
        raise ValueError(msg)
    lo, hi = float(np.min(w)), float(np.max(w))
    if spread == "range":
        means = np.linspace(lo, hi, n_free) if n_free > 1 else np.array([0.5 * (lo + hi)])
    elif spread == "quantile":
        means = np.quantile(w, np.linspace(0.0, 1.0, n_free + 2)[1:-1])
    else:
        msg = f"spread must be 'range' or 'quantile', got {spread!r}"
        raise ValueError(msg)
    if sigma is None:
        span = max(hi - lo, 1e-8)
        sigma = 0.25 * span / max(n_free - 1, 1)
    if not sigma > 0:
        msg = f"sigma must be positive, got {sigma}"
        raise ValueError(msg)
    if zero_component:
        mu = np.concatenate([[0.0], means])
        pi = np.concatenate([[pi_zero], np.full(n_free, (1.0 - pi_zero) / max(n_free, 1))])
    else:
        mu = means
        pi = np.full(n_free, 1.0 / n_free)
    return Mixture.from_pi_sigma(pi, mu, np.full(mu.shape, sigma))
