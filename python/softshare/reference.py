"""The soft weight-sharing penalty in plain NumPy: the oracle, not the fast path.

Every function here has the signature and result type of its native twin in
:mod:`softshare` and computes the same quantities straight from the equations
of docs/math.md in float64 and log space, materialising the responsibilities chunk
by chunk. It is slow (tens to hundreds of times slower than
:func:`softshare.penalty`) and exists so that tests, and users who doubt a
number, can check the native kernel against the textbook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._formulas import log_term_offset
from ._formulas import log_terms as _terms
from ._inputs import as_lam, as_mixture, as_n_threads, as_weights, cpu_count
from ._result import PenaltyResult, build_result, totals_of

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._inputs import WeightsLike
    from ._mixture import Mixture

__all__ = ["log_terms", "penalty"]

_CHUNK = 1 << 15


def log_terms(w: NDArray[np.float64], mixture: Mixture) -> NDArray[np.float64]:
    """The log-terms ``l_ij = ln pi_j + ln N(w_i | mu_j, sigma_j^2)``, shape (n, M).

    Parameters
    ----------
    w : ndarray, shape (n,)
        Weights, float64.
    mixture : Mixture
        The prior.

    Returns
    -------
    ndarray, shape (n, M)
        float64 log-terms.
    """
    return _log_terms_of_d(np.asarray(w, dtype=np.float64)[:, None] - mixture.mu[None, :], mixture)


def _log_terms_of_d(d: NDArray[np.float64], mixture: Mixture) -> NDArray[np.float64]:
    """``log_terms`` from the differences ``d = w_i - mu_j``, shape (n, M)."""
    terms: NDArray[np.float64] = _terms(
        d, log_term_offset(mixture.log_pi, mixture.log_var), 1.0 / mixture.var
    )
    return terms


def penalty(
    weights: WeightsLike,
    mixture: Mixture,
    lam: float = 1.0,
    *,
    responsibilities: bool = False,
    n_threads: int | None = None,
) -> PenaltyResult:
    """Soft weight-sharing penalty and gradients in plain NumPy (slow reference).

    Same parameters, result and exceptions as :func:`softshare.penalty`;
    ``n_threads`` is checked and then ignored (NumPy runs this serially).

    Parameters
    ----------
    weights : array_like or list/tuple of array_like
        The weights, any shape, or a list/tuple of arrays.
    mixture : Mixture
        The prior.
    lam : float, default 1.0
        Penalty strength, finite and >= 0.
    responsibilities : bool, default False
        Also return the responsibilities ``gamma``.
    n_threads : int or None, default None
        Checked like the native function's, otherwise unused.

    Returns
    -------
    PenaltyResult
        As :func:`softshare.penalty`. Everything is computed in float64;
        ``grad_w`` and ``gamma`` are then cast to the weights' dtype.
    """
    mix = as_mixture(mixture)
    lam_f = as_lam(lam)
    as_n_threads(n_threads, cpu_count())
    w = as_weights(weights)
    w.raise_if_not_finite()

    m = mix.n_components
    stats = np.zeros((3, m))
    sum_l = 0.0
    grads: list[NDArray[np.floating]] = []
    gammas: list[NDArray[np.floating]] | None = [] if responsibilities else None
    # Far weights underflow exp() to 0 on purpose; overflow ends as a non-finite
    # value, which build_result reports as an error.
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for arr in w.flat:
            x = arr.astype(np.float64)
            grad = np.empty(x.shape[0])
            gamma_all = np.empty((x.shape[0], m)) if gammas is not None else None
            for i0 in range(0, x.shape[0], _CHUNK):
                xc = x[i0 : i0 + _CHUNK]
                d = xc[:, None] - mix.mu[None, :]
                log_t = _log_terms_of_d(d, mix)
                top = np.max(log_t, axis=1, keepdims=True)
                shifted = log_t - top
                lse = np.log(np.sum(np.exp(shifted), axis=1))
                big_l = top[:, 0] + lse
                # gamma from the shifted terms: log_t - big_l would lose them to
                # rounding where |l_ij| is huge (weights far out, all alike)
                gamma = np.exp(shifted - lse[:, None])
                sum_l += float(np.sum(big_l))
                grad[i0 : i0 + _CHUNK] = lam_f * np.sum(gamma * d / mix.var, axis=1)
                stats[0] += np.sum(gamma, axis=0)
                stats[1] += np.sum(gamma * d, axis=0)
                stats[2] += np.sum(gamma * d * d, axis=0)
                if gamma_all is not None:
                    gamma_all[i0 : i0 + _CHUNK] = gamma
            grads.append(grad.astype(arr.dtype, copy=False))
            if gammas is not None and gamma_all is not None:
                gammas.append(gamma_all.astype(arr.dtype, copy=False))
    totals = totals_of(sum_l, stats, w.n, mix, lam_f)  # raises "the penalty overflowed"
    if lam_f == 0.0:  # no penalty: exact zeros (0 times an infinite sum is NaN)
        grads = [np.zeros_like(g) for g in grads]
    return build_result(totals, grads=grads, gammas=gammas, weights=w)
