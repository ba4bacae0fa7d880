"""A starting mixture for retraining, laid over pretrained weights.

:func:`softshare.compress.init_mixture`, and ``MixturePrior.from_weights`` on the torch side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._inputs import as_weights
from .._mixture import Mixture

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .._inputs import WeightsLike


def _range(flat: list[NDArray[np.floating]]) -> tuple[float, float]:
    """The weights' smallest and largest value, one pass each over every array, no copy.

    NaN or inf anywhere makes one of them non-finite: a ValueError.
    """
    if not any(a.size for a in flat):
        msg = "init_mixture needs at least one weight"
        raise ValueError(msg)
    lo = min(float(np.min(a)) for a in flat if a.size)
    hi = max(float(np.max(a)) for a in flat if a.size)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        msg = "weights must be finite"
        raise ValueError(msg)
    return lo, hi


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
        Means evenly over [min, max] of the weights (one pass each, no copy),
        or at evenly spaced quantiles of them (a sorted float64 copy of all).
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
    flat = as_weights(weights).flat
    lo, hi = _range(flat)
    n_free = n_components - (1 if zero_component else 0)
    if n_free < 1:
        msg = f"n_components must be >= {2 if zero_component else 1}, got {n_components}"
        raise ValueError(msg)
    if zero_component and not 0.0 < pi_zero < 1.0:
        msg = f"pi_zero must be in (0, 1), got {pi_zero}"
        raise ValueError(msg)
    if spread == "range":
        means = np.linspace(lo, hi, n_free) if n_free > 1 else np.array([0.5 * (lo + hi)])
    elif spread == "quantile":
        w = np.concatenate([a.astype(np.float64, copy=False).reshape(-1) for a in flat])
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
