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

from . import _core
from ._formulas import assign_constants, assign_scores, log_term_offset
from ._formulas import log_terms as _terms
from ._inputs import as_lam, as_mixture, as_n_threads, as_weights, cpu_count
from ._native_recipe import SparseCounts
from ._recipe_inputs import (
    as_index_array,
    assign_inputs,
    dequantize_inputs,
    offset_inputs,
    raise_if_bad_indices,
    sparse_parameters,
)
from ._result import PenaltyResult, build_result, totals_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

    from ._inputs import WeightsLike
    from ._mixture import Mixture

__all__ = ["assign", "dequantize", "log_terms", "offset_sums", "penalty", "sparse_counts"]

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


def assign(
    weights: ArrayLike,
    mixture: Mixture,
    *,
    use_pi: bool = True,
    out: NDArray[np.integer] | None = None,
    n_threads: int | None = None,
) -> NDArray[np.integer]:
    """:func:`softshare.assign` in plain NumPy: ``np.argmax`` of 32768 x M scores at a time.

    Same parameters, result and exceptions; ``n_threads`` is checked, then unused.
    """
    mix = as_mixture(mixture)
    w, flat, result = assign_inputs(weights, out, mix.n_components)
    as_n_threads(n_threads, cpu_count())
    w.raise_if_not_finite()
    x = flat.astype(np.float64)
    res = result.reshape(-1)
    base, inv2var = assign_constants(mix.log_var, mix.var, mix.log_pi, use_pi)
    with np.errstate(over="ignore"):  # far weights: d * d = inf, a score of -inf
        for i0 in range(0, x.size, _CHUNK):
            d = x[i0 : i0 + _CHUNK, None] - mix.mu[None, :]
            res[i0 : i0 + _CHUNK] = np.argmax(assign_scores(d, base, inv2var), axis=1)
    return result


def dequantize(
    indices: NDArray[np.integer] | Sequence[NDArray[np.integer]],
    book: NDArray[np.floating],
    out: NDArray[np.floating] | Sequence[NDArray[np.floating]],
    *,
    n_threads: int | None = None,
) -> NDArray[np.floating] | list[NDArray[np.floating]]:
    """:func:`softshare._native_recipe.dequantize` in NumPy: ``out[...] = book[indices]``."""
    flat_idx, codebook, flat_out = dequantize_inputs(indices, book, out)
    as_n_threads(n_threads, cpu_count())
    for k, (idx, res) in enumerate(zip(flat_idx, flat_out)):
        name = f"indices[{k}]" if isinstance(indices, (list, tuple)) else "indices"
        raise_if_bad_indices(idx, name, codebook.size)
        res[...] = codebook[idx]
    return out if isinstance(out, np.ndarray) else list(out)


def offset_sums(
    weights: ArrayLike | Sequence[ArrayLike],
    indices: ArrayLike | Sequence[ArrayLike],
    book: NDArray[np.floating],
    *,
    n_threads: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """:func:`softshare._native_recipe.offset_sums` in NumPy, bit for bit.

    ``np.bincount`` adds in position order, as the kernel does: over each
    block of ``_core.offset_sums_layout(k)``'s length, each of its interleaved
    runs, added up in run order, then the blocks in order.
    """
    flat_w, flat_i, codebook = offset_inputs(weights, indices, book)
    as_n_threads(n_threads, cpu_count())
    k = codebook.size
    block, copies = _core.offset_sums_layout(k)
    sums = np.zeros(k)
    counts = np.zeros(k, dtype=np.int64)
    for s, (w, i) in enumerate(zip(flat_w, flat_i)):
        raise_if_bad_indices(i, f"indices[{s}]" if len(flat_w) > 1 else "indices", k)
        idx = i.astype(np.intp)
        diff = (w - codebook[idx]).astype(np.float64)  # the difference in the weights' dtype
        for b0 in range(0, w.size, block):
            ib, db = idx[b0 : b0 + block], diff[b0 : b0 + block]
            part = np.bincount(ib[::copies], weights=db[::copies], minlength=k)
            for r in range(1, copies):
                part = part + np.bincount(ib[r::copies], weights=db[r::copies], minlength=k)
            sums += part
        counts += np.bincount(idx, minlength=k)
    return sums, counts


def sparse_counts(
    indices: ArrayLike,
    k: int,
    zero_index: int,
    index_bits: int,
    *,
    n_threads: int | None = None,
) -> SparseCounts:
    """:func:`softshare._native_recipe.sparse_counts` from :func:`sparse_entries`."""
    size, zero, bits = sparse_parameters(k, zero_index, index_bits)
    as_n_threads(n_threads, cpu_count())
    flat = as_index_array(indices, "indices").astype(np.intp)
    raise_if_bad_indices(flat, "indices", size)
    gaps, symbols = sparse_entries(flat, zero, bits)
    return SparseCounts(
        values=np.bincount(flat, minlength=size),
        nonzero=int(np.count_nonzero(flat != zero)),
        gaps=np.bincount(np.asarray(gaps, dtype=np.intp) - 1, minlength=1 << bits),
        symbols=np.bincount(np.asarray(symbols, dtype=np.intp), minlength=size),
    )


def sparse_entries(
    values: NDArray[np.integer], zero_index: int, index_bits: int
) -> tuple[list[int], list[int]]:
    """Han et al.'s relative-index sparse stream of one layer.

    Each stored entry has a gap ``d`` (1 .. 2^index_bits) to the previous
    stored entry; a longer gap is bridged with filler zeros (entries with
    ``zero_index`` at the largest gap).

    Parameters
    ----------
    values : array of int
        Codebook indices in storage order.
    zero_index : int
        The index whose entries are not stored.
    index_bits : int
        Width of the relative index.

    Returns
    -------
    (gaps, symbols)
        ``gaps[k] - 1`` is what the index stream stores; ``symbols[k]`` the
        codebook index of entry k.
    """
    flat = np.asarray(values).reshape(-1)
    positions = np.flatnonzero(flat != zero_index)
    max_gap = 1 << index_bits
    gaps: list[int] = []
    symbols: list[int] = []
    prev = -1
    for p in positions.tolist():
        d = p - prev
        while d > max_gap:
            gaps.append(max_gap)
            symbols.append(zero_index)
            d -= max_gap
        gaps.append(d)
        symbols.append(int(flat[p]))
        prev = p
    return gaps, symbols
