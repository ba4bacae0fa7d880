"""The native penalty: :func:`penalty`, one fused pass of the compiled kernel."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import _core
from ._inputs import as_lam, as_mixture, as_n_threads, as_weights
from ._result import PenaltyResult, build_result

if TYPE_CHECKING:
    from ._inputs import Weights, WeightsLike
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
        positive int that many threads. Whatever the choice, at most as many
        threads run as this process has cores (``os.sched_getaffinity``) and
        as there are blocks of ``softshare._core.block_size`` weights, and in
        a process started by ``fork()`` after ``softshare`` was imported (a
        ``multiprocessing`` "fork" worker, a torch ``DataLoader`` worker) the
        pass runs on the calling thread: GNU OpenMP cannot run threads after
        ``fork()``. The result is bit-identical for every choice.

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
        first bad index), ``lam`` is negative or not finite, ``n_threads``
        is not None, -1 or a positive int, or the penalty overflows ("the
        penalty overflowed": a weight so far from every component that its
        log-density is not representable in float64). No output is ever NaN;
        a gradient beyond the range of its dtype is +-inf (its rounding).
    MemoryError
        If the kernel's working buffers (about 1 to 1.5 KB per component and
        thread) cannot be allocated.

    Notes
    -----
    Inputs beyond what float32 arithmetic holds (``|mu|`` above 3.4e38,
    ``log_var`` outside about [-177, 174], ``lam`` below 1.2e-38 or above
    3.4e38, weights whose ``(w - mu) / sigma`` overflows float32) are computed
    in float64, block by block, and the float32 outputs rounded from that;
    blocks whose float64 sums still overflow are computed again by a scalar
    path that skips far components instead of forming ``0 * inf``. Slower, but
    the float64 answer, rounded to the outputs' dtypes.

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
    # Raises "the penalty overflowed" when the value is not finite.
    result = build_result(
        sum_l=sum_l, stats=stats, grads=grads, gammas=gammas, weights=w, mixture=mix, lam=lam_f
    )
    if not math.isfinite(check):  # the kernel flags a NaN in grad_w or the sums
        _raise_if_nan(result, w, mix)
    return result


def _raise_if_nan(result: PenaltyResult, weights: Weights, mixture: Mixture) -> None:
    """Raise ``ValueError`` if ``grad_w`` or the component sums hold a NaN.

    An output beyond the range of its dtype is +-inf, its correctly rounded
    value; NaN is never an answer. The kernel makes none for finite weights
    with a finite value; the sum S1 of a component can still be inf - inf when
    terms beyond float64's range of both signs meet.
    """
    grads = result.grad_w if isinstance(result.grad_w, list) else [result.grad_w]
    for grad, shape, name in zip(grads, weights.shapes, weights.names):
        bad = np.flatnonzero(np.isnan(grad))
        if bad.size:
            index = tuple(int(i) for i in np.unravel_index(int(bad[0]), shape)) if shape else ()
            msg = f"the penalty overflowed: its gradient for {name} at index {index} is NaN"
            raise ValueError(msg)
    bad = np.flatnonzero(np.isnan(result.stats))
    if bad.size:
        row, j = divmod(int(bad[0]), mixture.n_components)
        msg = (
            f"the penalty overflowed: the sum S{row} of component {j} (mu[{j}] = "
            f"{mixture.mu[j]}, log_var[{j}] = {mixture.log_var[j]}) adds terms of both signs "
            "beyond float64's range; rescale the weights and the mixture"
        )
        raise ValueError(msg)
