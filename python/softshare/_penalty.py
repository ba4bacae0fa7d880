"""The native penalty: :func:`penalty`, one fused pass of the compiled kernel."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _core
from ._inputs import (
    Weights,
    as_lam,
    as_mixture,
    as_n_threads,
    as_out,
    as_weights,
    thread_request,
)
from ._result import PenaltyResult, PenaltyTotals, build_result, checked_totals, new_totals

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from numpy.typing import NDArray

    from ._inputs import WeightsLike
    from ._mixture import Mixture

__all__ = ["penalty", "penalty_raw", "totals_raw"]


def penalty(
    weights: WeightsLike,
    mixture: Mixture,
    lam: float = 1.0,
    *,
    responsibilities: bool = False,
    n_threads: int | None = None,
    out: NDArray[np.floating] | Sequence[NDArray[np.floating]] | None = None,
    accumulate: bool = False,
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
        one per ``softshare._core.block_size`` weights in all (many short
        arrays are not enough work to share), and in
        a process started by ``fork()`` after ``softshare`` was imported (a
        ``multiprocessing`` "fork" worker, a torch ``DataLoader`` worker) the
        pass runs on the calling thread: GNU OpenMP cannot run threads after
        ``fork()``. The result is bit-identical for every choice.
    out : ndarray or list/tuple of ndarray, optional
        Where to write ``grad_w``, as NumPy's ``out=``: arrays shaped like the
        weights (one array, or one per array of a list), of the gradient's
        dtype (float32 for float32 weights, float64 otherwise), C-contiguous,
        writeable, overlapping neither the weights nor each other. A training loop that passes
        the same buffers every step allocates nothing per step. ``grad_w`` is
        then ``out`` itself (a list of the same arrays for a list). Without
        ``out``, a ``grad_w`` of 1 MiB or more reuses the memory of the last
        such gradient whose array (and every view of it) is gone, never one
        still referenced.
    accumulate : bool, default False
        Add the gradient to ``out`` instead of writing it there, in the same
        pass and without an N-sized temporary: ``out[i] = out[i] + g[i]`` in
        ``out``'s dtype, ``g`` being exactly the ``grad_w`` written otherwise,
        so that ``out`` ends as ``out_before + penalty(...).grad_w``, bit for
        bit, on every path (SIMD targets, threads, float64 rescue). Needs
        ``out``. Its values are not checked: a NaN or infinity in ``out``
        gives what IEEE addition gives (NaN stays NaN, inf plus a finite
        gradient stays inf). If the call raises (a non-finite weight, an
        overflow), ``out`` may hold the gradient of some weights and not of
        others.

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
        the weights are not real-valued (complex, object, strings), or ``out``
        is not an ndarray (or list of them) of the gradient's dtype.
    ValueError
        If a weight is NaN or infinite (the message names the array and the
        first bad index), ``lam`` is negative or not finite, ``n_threads``
        is not None, -1 or a positive int, ``out`` does not match the weights'
        shapes or overlaps them or another ``out``,
        ``accumulate`` is true without ``out``, or the penalty overflows ("the
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
    threads = thread_request(n_threads)  # resolved by the kernel (as_n_threads' rules)
    add = bool(accumulate)
    if add and out is None:
        msg = "accumulate=True needs out=: the arrays to add the gradient to"
        raise ValueError(msg)
    if type(weights) is np.ndarray and (out is None or type(out) is np.ndarray):
        # One array, the common case: the kernel makes the result itself unless
        # it declines the array or out (None: not float32/float64, native and
        # C-contiguous; out not of its dtype and shape, C-contiguous and
        # writeable) or flags something for Python to check (its tuple).
        args = (weights, mix.mu, mix.log_var, mix.logit, lam_f, threads, bool(responsibilities))
        if out is None:
            done = _core.penalty_array(*args, PenaltyResult)
        else:
            done = _core.penalty_array(*args, PenaltyResult, out=out, accumulate=add)
        if isinstance(done, PenaltyResult):
            return done
        if done is not None:
            w = as_weights(weights)
            totals, grads, gammas = _finish(done, w, mix, lam_f, accumulate=add)
            return build_result(totals, grads=grads, gammas=gammas, weights=w, out=out)
    w = as_weights(weights)
    flat_out = None if out is None else as_out(out, w)
    raw = _core.penalty(
        w.flat,
        mix.mu,
        mix.log_var,
        mix.logit,
        lam_f,
        threads,
        bool(responsibilities),
        flat_out,
        add,
    )
    totals, grads, gammas = _finish(raw, w, mix, lam_f, accumulate=add)
    return build_result(totals, grads=grads, gammas=gammas, weights=w, out=out)


def penalty_raw(
    segments: list[tuple[int, int, int, bool]],
    mixture: tuple[int, int, int, int, bool],
    lam: float,
    n_threads: int,
    out: tuple[int, int, int, bool],
    accumulate: Sequence[bool] = (),
) -> tuple[float | None, float, float, NDArray[np.float64]] | None:
    """The whole step for adapters whose tensors are not NumPy arrays (``softshare.torch``).

    ``segments`` are ``(weights address, grad_w address, n, float64?)``,
    ``mixture`` is ``(mu, log_var, logit addresses, M, float64?)`` and ``out``
    ``(grad_mu, grad_log_var, grad_logit addresses, float64?)``: live, contiguous buffers the caller
    keeps alive; ``lam`` is valid. ``accumulate``, empty or one flag per
    segment, adds a segment's ``grad_w`` to its buffer (``penalty``'s
    ``accumulate``). No Python runs between the kernel's start and its
    return, so this may run on another thread.

    Returns None for a mixture :class:`~softshare.Mixture` refuses (the caller
    raises its error). Otherwise ``(value, sum_l, check, stats)``: ``grad_w``
    is in the gradient buffers and, unless ``value`` is None, ``grad_mu``,
    ``grad_log_var`` and ``grad_logit`` in ``out`` (the formulas of
    ``_formulas.mixture_gradients``, computed natively). ``value`` None: the
    caller finishes with :func:`totals_raw`, which raises the errors of
    :func:`penalty` (non-finite weights, overflow).
    """
    threads = as_n_threads(n_threads, 1)
    if not accumulate:
        return _core.penalty_raw(segments, mixture, lam, threads, out)
    return _core.penalty_raw(segments, mixture, lam, threads, out, list(accumulate))


def totals_raw(
    raw: tuple[float | None, float, float, NDArray[np.float64]],
    mixture: Mixture,
    lam: float,
    views: Callable[[], tuple[Weights, Sequence[NDArray[np.floating] | None]]],
) -> PenaltyTotals:
    """Value and mixture gradients of :func:`penalty_raw`'s sums.

    The slow path, for a pass whose ``value`` came back None (and for tests):
    ``views()`` gives NumPy views of the weights and gradients (None for a
    segment that accumulated). Errors are those of :func:`penalty`.
    """
    _, sum_l, check, stats = raw
    w, grads = views()
    return checked_totals(sum_l, check, stats, w, grads, mixture, lam)


def _finish(
    raw: _core.PassTuple, w: Weights, mix: Mixture, lam: float, *, accumulate: bool
) -> tuple[PenaltyTotals, list[NDArray[np.floating]], list[NDArray[np.floating]] | None]:
    """Totals, flat grad_w and flat gamma of the kernel's tuple (``_core.penalty``'s).

    The kernel finishes the value and mixture gradients itself when nothing
    needs checking (``native``; for ``lam = 0`` exact zeros, ``grad_w``
    included, or +0 added); otherwise :func:`~softshare._result.checked_totals`
    does, with its errors.
    """
    sum_l, check, stats, grads, gammas, native = raw
    if native is None:
        checked = [None] * len(grads) if accumulate else grads
        return checked_totals(sum_l, check, stats, w, checked, mix, lam), grads, gammas
    value, grad_mu, g_sigma, grad_log_var, grad_logit = native
    totals = new_totals(value, grad_mu, g_sigma, grad_log_var, grad_logit, stats, w.n, sum_l)
    return totals, grads, gammas
