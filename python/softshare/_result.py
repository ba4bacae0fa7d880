"""The result type of the penalty, and its assembly from the fused pass's sums."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, Union

import numpy as np

from ._formulas import grad_sigma, mixture_gradients, overflow_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

    from ._inputs import Weights
    from ._mixture import Mixture

__all__ = ["PenaltyResult", "PenaltyTotals", "checked_totals", "from_partial_sums", "new_totals"]

_T = TypeVar("_T")

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
    sum_log_density : float
        ``sum_i L_i = -Omega``: the weights' log-likelihood under the mixture.
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
    sum_log_density: float = math.nan

    @property
    def partial_sums(self) -> NDArray[np.float64]:
        """This call's sums as one float64 vector ``[sum L, n, S0, S1, S2]``, length 3M + 2.

        The vectors of calls over disjoint pieces of the weights add up to the
        vector of one call over all of them; :func:`softshare.from_partial_sums`
        turns a (summed) vector into the value and every mixture gradient. The
        weight gradient needs no reduction: each piece's ``grad_w`` is final.
        """
        return np.concatenate([[self.sum_log_density, float(self.n)], self.stats.reshape(-1)])


@dataclass(frozen=True)
class PenaltyTotals:
    """The penalty's value and mixture gradients from its sums alone (no ``grad_w``).

    Attributes are those of :class:`PenaltyResult` with the same names.
    """

    value: float
    grad_mu: NDArray[np.float64]
    grad_sigma: NDArray[np.float64]
    grad_log_var: NDArray[np.float64]
    grad_logit: NDArray[np.float64]
    stats: NDArray[np.float64]
    n: int
    sum_log_density: float


def new_totals(
    value: float,
    grad_mu: NDArray[np.float64],
    grad_sigma: NDArray[np.float64],
    grad_log_var: NDArray[np.float64],
    grad_logit: NDArray[np.float64],
    stats: NDArray[np.float64],
    n: int,
    sum_log_density: float,
) -> PenaltyTotals:
    """A :class:`PenaltyTotals` of its fields, made as fast as a tuple."""
    return _frozen(
        PenaltyTotals,
        value=value,
        grad_mu=grad_mu,
        grad_sigma=grad_sigma,
        grad_log_var=grad_log_var,
        grad_logit=grad_logit,
        stats=stats,
        n=n,
        sum_log_density=sum_log_density,
    )


def from_partial_sums(partials: ArrayLike, mixture: Mixture, lam: float = 1.0) -> PenaltyTotals:
    """The value and every mixture gradient from a (summed) partial-sum vector.

    Parameters
    ----------
    partials : array_like, shape (3M + 2,)
        ``[sum L, n, S0 (M), S1 (M), S2 (M)]``: one call's
        :attr:`PenaltyResult.partial_sums`, or the sum of such vectors over
        pieces of the weights (computed by any engine: MPI, Dask, Ray, ...).
    mixture : Mixture
        The mixture every piece was computed with.
    lam : float, default 1.0
        Penalty strength, finite and >= 0.

    Returns
    -------
    PenaltyTotals
        As one call over all the weights gives it (to float64 rounding).

    Raises
    ------
    ValueError
        If the vector's length is not 3M + 2, it holds a NaN or an infinite
        count or sum (``partials[0]`` may be -inf: the value overflowed),
        ``n`` is not a non-negative whole number, or the value overflows.

    Examples
    --------
    >>> import numpy as np, softshare
    >>> mix = softshare.Mixture([0.0, 0.3], [-4.0, -4.0], [0.0, 0.0])
    >>> pieces = np.array_split(np.linspace(-0.5, 0.5, 1001), 3)
    >>> total = sum(softshare.penalty(p, mix, 0.1).partial_sums for p in pieces)
    >>> once = softshare.penalty(np.concatenate(pieces), mix, 0.1)
    >>> bool(np.isclose(softshare.from_partial_sums(total, mix, 0.1).value, once.value))
    True
    """
    from ._inputs import as_lam, as_mixture

    mix = as_mixture(mixture)
    lam_f = as_lam(lam)
    vec = np.asarray(partials, dtype=np.float64)
    m = mix.n_components
    if vec.shape != (3 * m + 2,):
        msg = f"partials must have shape (3M + 2,) = ({3 * m + 2},) for M = {m}, got {vec.shape}"
        raise ValueError(msg)
    if math.isnan(vec[0]):  # a NaN came in: no overflow made it (an overflowed sum is -inf)
        msg = "partials[0] (the sum of log-densities) is NaN: a partial sum that was added is NaN"
        raise ValueError(msg)
    n = float(vec[1])
    if not (np.all(np.isfinite(vec[1:])) and n >= 0 and n == math.floor(n)):
        msg = "partials must be finite, with n = partials[1] a whole number >= 0"
        raise ValueError(msg)
    return totals_of(float(vec[0]), vec[2:].reshape(3, m), int(n), mix, lam_f)


def totals_of(
    sum_l: float, stats: NDArray[np.float64], n: int, mixture: Mixture, lam: float
) -> PenaltyTotals:
    """Value and mixture gradients from sum L, S0/S1/S2 and n (``docs/math.md``)."""
    if lam == 0.0:
        # No penalty: value and every gradient exactly 0, whatever the sums
        # (0 times an infinite sum would otherwise be NaN).
        zero = np.zeros(mixture.n_components)
        return PenaltyTotals(0.0, zero, zero, zero, zero, stats, n, sum_l)
    value = -lam * sum_l
    if not math.isfinite(value):
        raise overflow_error(value)
    s0, s1, s2 = stats
    var = mixture.var
    # A gradient beyond float64's range is +-inf, its correctly rounded value
    # (var is a normal number, so nothing here divides by zero or makes NaN).
    with np.errstate(over="ignore"):
        grad_mu, grad_log_var, grad_logit = mixture_gradients(s0, s1, s2, n, lam, var, mixture.pi)
        g_sigma = grad_sigma(s0, s2, lam, mixture.sigma, var)
    value += 0.0  # never -0.0
    return PenaltyTotals(value, grad_mu, g_sigma, grad_log_var, grad_logit, stats, n, sum_l)


def _frozen(cls: type[_T], **fields: object) -> _T:
    """An instance of the frozen dataclass ``cls`` given every field.

    What its ``__init__`` makes, without a frozen ``__setattr__`` call per
    field (about 3 µs of a 20 µs small call for the two results of a pass).
    """
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


def build_result(
    totals: PenaltyTotals,
    *,
    grads: list[NDArray[np.floating]],
    gammas: list[NDArray[np.floating]] | None,
    weights: Weights,
    out: ArrayOrList | Sequence[NDArray[np.floating]] | None = None,
) -> PenaltyResult:
    """A :class:`PenaltyResult` of the totals and the flat per-weight outputs.

    ``grads`` are flat; with ``out`` (the caller's arrays they are views of)
    ``grad_w`` is ``out`` itself.
    """
    grad_w = weights.unflatten(grads)
    if out is not None:  # the caller's own arrays (grads are flat views of them)
        grad_w = list(out) if weights.is_sequence else out  # type: ignore[assignment]
    return _frozen(
        PenaltyResult,
        value=totals.value,
        grad_w=grad_w,
        grad_mu=totals.grad_mu,
        grad_sigma=totals.grad_sigma,
        grad_log_var=totals.grad_log_var,
        grad_logit=totals.grad_logit,
        stats=totals.stats,
        n=totals.n,
        gamma=None if gammas is None else weights.unflatten_gamma(gammas),
        sum_log_density=totals.sum_log_density,
    )


def checked_totals(
    sum_l: float,
    check: float,
    stats: NDArray[np.float64],
    w: Weights,
    grads: Sequence[NDArray[np.floating] | None],
    mix: Mixture,
    lam: float,
) -> PenaltyTotals:
    """Totals of the pass's sums, after the checks of what the kernel flagged.

    ``check`` is not finite when a weight, a ``grad_w`` or a sum is not.
    ``grads`` holds each array's ``grad_w``, or None for one the kernel added
    into the caller's values (``accumulate``): those are not zeroed for
    ``lam = 0`` (the kernel added +0) nor searched for NaN (the caller's own
    values may hold some; the kernel makes none for finite weights).
    """
    if not math.isfinite(check):
        w.raise_if_not_finite()
    # Raises "the penalty overflowed" when the value is not finite.
    totals = totals_of(float(sum_l), stats, w.n, mix, lam)
    if lam == 0.0:  # no penalty: exact zeros (0 times an infinite sum is NaN)
        for g in grads:
            if g is not None:
                g.fill(0.0)
    if not math.isfinite(check):  # the kernel flags a NaN in grad_w or the sums
        _raise_if_nan(grads, stats, w, mix)
    return totals


def _raise_if_nan(
    grads: Sequence[NDArray[np.floating] | None],
    stats: NDArray[np.float64],
    weights: Weights,
    mixture: Mixture,
) -> None:
    """Raise ``ValueError`` if ``grad_w`` or the component sums hold a NaN.

    An output beyond the range of its dtype is +-inf, its correctly rounded
    value; NaN is never an answer. The kernel makes none for finite weights
    with a finite value; the sum S1 of a component can still be inf - inf when
    terms beyond float64's range of both signs meet.
    """
    for grad, shape, name in zip(grads, weights.shapes, weights.names):
        if grad is None:
            continue
        bad = np.flatnonzero(np.isnan(grad))
        if bad.size:
            index = tuple(int(i) for i in np.unravel_index(int(bad[0]), shape)) if shape else ()
            msg = f"the penalty overflowed: its gradient for {name} at index {index} is NaN"
            raise ValueError(msg)
    bad = np.flatnonzero(np.isnan(stats))
    if bad.size:
        row, j = divmod(int(bad[0]), mixture.n_components)
        msg = (
            f"the penalty overflowed: the sum S{row} of component {j} (mu[{j}] = "
            f"{mixture.mu[j]}, log_var[{j}] = {mixture.log_var[j]}) adds terms of both signs "
            "beyond float64's range; rescale the weights and the mixture"
        )
        raise ValueError(msg)
