"""The closed-form EM update of a mixture for fixed weights, and the likelihood it climbs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._inputs import as_mixture
from .._mixture import Mixture
from .._penalty import penalty

if TYPE_CHECKING:
    from .._inputs import WeightsLike


def log_likelihood(weights: WeightsLike, mixture: Mixture) -> float:
    """Log-likelihood of the weights under the mixture.

    Parameters
    ----------
    weights : array_like or list of array_like
        The weights, one array or a list of arrays.
    mixture : Mixture
        The prior.

    Returns
    -------
    float
        ``sum_i ln p(w_i)`` (= -Omega).
    """
    return -penalty(weights, mixture, 1.0).value


def em_step(weights: WeightsLike, mixture: Mixture, *, min_var: float = 1e-12) -> Mixture:
    """One EM update of the mixture for fixed weights, from S0, S1, S2 (SPEC).

    ``pi_j = S0_j / N``, ``mu_j += S1_j / S0_j``, ``sigma_j^2 = S2_j / S0_j -
    (S1_j / S0_j)^2`` (floored at ``min_var``). A component with no
    responsibility (S0_j = 0) keeps its mean and variance and gets the
    smallest positive proportion. The log-likelihood never decreases.

    Parameters
    ----------
    weights : array_like or list of array_like
        The weights, held fixed.
    mixture : Mixture
        The current mixture.
    min_var : float, default 1e-12
        Floor of the updated variances.

    Returns
    -------
    Mixture
        The updated mixture (the input itself when there are no weights).

    Raises
    ------
    ValueError
        If ``min_var`` is not a finite number above 0, or as :func:`softshare.penalty`.
    """
    mix = as_mixture(mixture)
    floor: object = min_var  # callers without type checking pass anything
    if (
        isinstance(floor, bool)
        or not isinstance(floor, (int, float, np.floating, np.integer))
        or not 0.0 < float(floor) < np.inf
    ):
        msg = f"min_var must be a finite number above 0, got {min_var!r}"
        raise ValueError(msg)
    r = penalty(weights, mix, 1.0)
    if r.n == 0:
        return mix
    s0, s1, s2 = r.stats
    alive = s0 > 0
    safe = np.where(alive, s0, 1.0)
    shift = np.where(alive, s1 / safe, 0.0)
    mu = mix.mu + shift
    var = np.where(alive, np.maximum(s2 / safe - shift * shift, min_var), mix.var)
    pi = np.where(alive, s0 / r.n, np.finfo(np.float64).tiny)
    return Mixture(mu, np.log(var), np.log(pi))
