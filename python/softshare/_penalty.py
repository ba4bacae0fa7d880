"""The native penalty: :func:`penalty`, one fused pass of the compiled kernel."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import _core
from ._inputs import as_lam, as_mixture, as_n_threads, as_weights
from ._result import PenaltyResult, build_result

if TYPE_CHECKING:
    from ._inputs import WeightsLike
    from ._mixture import Mixture

__all__ = ["penalty"]


def penalty(
    weights: WeightsLike,
    mixture: Mixture,
    lam: float = 1.0,
    *,
    responsibilities: bool = False,
    n_threads: int | None = None,
) -> PenaltyResult:
    """Soft weight-sharing penalty ``lam * Omega(w)`` and all its gradients.

    One fused, parallel pass over the weights computes, for every weight, the
    log-sum-exp over the mixture components, the responsibilities, the value,
    ``grad_w`` and the component sums S0, S1, S2 from which every mixture
    gradient follows (PRML 5.138-5.147). No N x M array is made unless
    ``responsibilities=True``.

    Parameters
    ----------
    weights : array_like or list/tuple of array_like
        The weights, any shape; a list or tuple of arrays is treated as one set
        under one mixture (every layer of a network) without concatenating it.
        float32 and float64 are used as they are; other real dtypes become
        float64.
    mixture : Mixture
        The prior.
    lam : float, default 1.0
        Penalty strength, finite and >= 0.
    responsibilities : bool, default False
        Also return the responsibilities ``gamma`` (costs N x M memory).
    n_threads : int or None, default None
        None uses OpenMP's default (``OMP_NUM_THREADS``), -1 all cores, a
        positive int that many threads. The result is bit-identical for every
        choice.

    Returns
    -------
    PenaltyResult
        ``value``, ``grad_w`` (shaped like ``weights``), ``grad_mu``,
        ``grad_sigma``, ``grad_log_var``, ``grad_logit``, ``stats``, ``n`` and
        ``gamma``.

    Raises
    ------
    TypeError
        If ``mixture`` is not a :class:`Mixture`, ``lam`` is not a real number,
        or the weights are not real-valued (complex, object, strings).
    ValueError
        If a weight is NaN or infinite (the message names the array and the
        first bad index), ``lam`` is negative or not finite, or ``n_threads``
        is not None, -1 or a positive int.

    See Also
    --------
    softshare.reference.penalty : The same computation in plain NumPy (slow).

    Examples
    --------
    >>> import numpy as np, softshare
    >>> mix = softshare.Mixture.from_pi_sigma([0.9, 0.1], [0.0, 0.3], [0.01, 0.05])
    >>> r = softshare.penalty(np.array([0.0, 0.1, 0.3], np.float32), mix, lam=1e-3)
    >>> r.grad_w.dtype
    dtype('float32')
    """
    mix = as_mixture(mixture)
    lam_f = as_lam(lam)
    threads = as_n_threads(n_threads, _core.default_threads())
    w = as_weights(weights)
    sum_l, check, stats, grads, gammas = _core.penalty(
        w.flat, mix.mu, mix.log_var, mix.logit, lam_f, threads, bool(responsibilities)
    )
    if not math.isfinite(check):
        w.raise_if_not_finite()
    return build_result(
        sum_l=sum_l, stats=stats, grads=grads, gammas=gammas, weights=w, mixture=mix, lam=lam_f
    )
