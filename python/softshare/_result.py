"""The result type of the penalty, and its assembly from the fused pass's sums."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from ._formulas import grad_sigma, mixture_gradients, overflow_error

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from ._inputs import Weights
    from ._mixture import Mixture

__all__ = ["PenaltyResult"]

#: One array, or a list of arrays in the order of the caller's weights.
ArrayOrList = Union["NDArray[np.floating]", "list[NDArray[np.floating]]"]


@dataclass(frozen=True)
class PenaltyResult:
    """The soft weight-sharing penalty and all its gradients.

    Attributes
    ----------
    value : float
        ``lam * Omega(w)`` with ``Omega = -sum_i ln p(w_i)``.
    grad_w : ndarray or list of ndarray
        ``d(lam * Omega) / dw``, with the shape(s) and dtype of the weights
        (float64 for integer or other non-float32 input).
    grad_mu, grad_sigma, grad_log_var, grad_logit : ndarray, shape (M,)
        Gradients with respect to the component means, standard deviations,
        log-variances and mixing logits (float64).
    stats : ndarray, shape (3, M)
        The component sums ``S0, S1, S2`` (without ``lam``), float64.
    n : int
        Number of weights.
    gamma : ndarray, list of ndarray, or None
        Responsibilities, shape ``(n_i, M)`` per array in the weights' dtype,
        when asked for with ``responsibilities=True``.
    """

    value: float
    grad_w: ArrayOrList
    grad_mu: NDArray[np.float64]
    grad_sigma: NDArray[np.float64]
    grad_log_var: NDArray[np.float64]
    grad_logit: NDArray[np.float64]
    stats: NDArray[np.float64]
    n: int
    gamma: ArrayOrList | None = None


def build_result(
    *,
    sum_l: float,
    stats: NDArray[np.float64],
    grads: list[NDArray[np.floating]],
    gammas: list[NDArray[np.floating]] | None,
    weights: Weights,
    mixture: Mixture,
    lam: float,
) -> PenaltyResult:
    """Turn the fused pass's sums into a :class:`PenaltyResult` (``docs/math.md``)."""
    if lam == 0.0:
        # No penalty: value and every gradient are exactly 0, whatever the sums
        # (0 times an infinite sum would otherwise be NaN).
        grads = [np.zeros_like(g) for g in grads]
        sum_l = 0.0
        stats_for_grads = np.zeros_like(stats)
    else:
        stats_for_grads = stats
    value = -lam * float(sum_l)
    if not math.isfinite(value):
        raise overflow_error(value)
    s0, s1, s2 = stats_for_grads
    var = mixture.var
    # A gradient beyond float64's range is +-inf, its correctly rounded value
    # (var is a normal number, so nothing here divides by zero or makes NaN).
    with np.errstate(over="ignore"):
        grad_mu, grad_log_var, grad_logit = mixture_gradients(
            s0, s1, s2, weights.n, lam, var, mixture.pi
        )
        g_sigma = grad_sigma(s0, s2, lam, mixture.sigma, var)
    return PenaltyResult(
        value=value + 0.0,  # never -0.0
        grad_w=weights.unflatten(grads),
        grad_mu=grad_mu,
        grad_sigma=g_sigma,
        grad_log_var=grad_log_var,
        grad_logit=grad_logit,
        stats=stats,
        n=weights.n,
        gamma=None if gammas is None else weights.unflatten_gamma(gammas),
    )
