"""A starting mixture for retraining, laid over pretrained weights.

:func:`softshare.compress.init_mixture`, and ``MixturePrior.from_weights`` on the torch side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._inputs import as_weights
from .._mixture import Mixture

_CHUNK = 1 << 16  # weights per float64 chunk when summing

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


def _std(flat: list[NDArray[np.floating]]) -> float:
    """The standard deviation of all the weights together, in float64 chunks (no copy of them all)."""
    n, total, squares = 0, 0.0, 0.0
    for a in flat:
        v = a.reshape(-1)
        for i0 in range(0, v.size, _CHUNK):
            c = v[i0 : i0 + _CHUNK].astype(np.float64)
            n, total, squares = n + c.size, total + float(c.sum()), squares + float(c @ c)
    mean = total / n
    return float(np.sqrt(max(squares / n - mean * mean, 0.0)))


def init_mixture(
    weights: WeightsLike,
    n_components: int = 17,
    *,
    zero_component: bool = True,
    pi_zero: float = 0.999,
    spread: str = "range",
    sigma: float | None = None,
    sigma_std: float | None = None,
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
        of the means (unless ``sigma_std`` is given).
    sigma_std : float, optional
        The shared initial standard deviation as this multiple of the weights'
        own standard deviation (``softshare demo`` and
        ``softshare.torch.MixturePrior.from_weights`` use 2: a zero component
        wide enough to pull the small weights in). Not with ``sigma``.

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
    if sigma is not None and sigma_std is not None:
        msg = "give sigma or sigma_std, not both"
        raise ValueError(msg)
    if sigma_std is not None:
        if not (np.isfinite(sigma_std) and sigma_std > 0):
            msg = f"sigma_std must be finite and positive, got {sigma_std}"
            raise ValueError(msg)
        sigma = sigma_std * _std(flat)
        if not sigma > 0:
            msg = "sigma_std needs weights that are not all equal (their standard deviation is 0)"
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
