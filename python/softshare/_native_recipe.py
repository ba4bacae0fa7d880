"""The recipe's per-weight passes, native: assign, dequantize, offset_sums and sparse_counts.

Typed wrappers over ``csrc/bind_recipe.cpp``: inputs checked (``_recipe_inputs``), then one
parallel pass with the GIL released and no N x M array, bit-identical for every ``n_threads``.
:mod:`softshare.reference` holds their NumPy twins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from . import _core
from ._formulas import assign_constants
from ._inputs import as_mixture, thread_request
from ._recipe_inputs import (
    as_index_array,
    assign_inputs,
    dequantize_inputs,
    offset_inputs,
    sparse_parameters,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

    from ._mixture import Mixture

__all__ = ["SparseCounts", "assign", "assign_arrays", "dequantize", "offset_sums", "sparse_counts"]


class SparseCounts(NamedTuple):
    """The statistics of one layer's relative-index sparse stream (Han et al.)."""

    values: NDArray[np.int64]  #: (k,) how often each index occurs, stored or not
    nonzero: int  #: entries whose index is not ``zero_index``
    gaps: NDArray[np.int64]  #: (2**index_bits,) stored gaps d, counted at d - 1
    symbols: NDArray[np.int64]  #: (k,) the stored entries' indices, fillers included


def assign_arrays(
    weights: Sequence[NDArray[np.floating]],
    mixture: Mixture,
    out: Sequence[NDArray[np.integer]],
    *,
    use_pi: bool = True,
    n_threads: int | None = None,
) -> NDArray[np.int64] | None:
    """:func:`assign` for several flat arrays at once, with the component counts.

    Parameters
    ----------
    weights, out : sequence of ndarray
        1-D, contiguous, native float32/float64 weights, and for each an index
        array of its length (uint8/uint16/uint32/intp, holding M - 1, writeable,
        overlapping no weights) that receives the indices.
    mixture, use_pi, n_threads
        As :func:`assign`'s.

    Returns
    -------
    ndarray of int64, shape (M,) or None
        How many weights each component received; None (``out`` then
        meaningless) when some weight is not finite.
    """
    mix = as_mixture(mixture)
    base, inv2var = assign_constants(mix.log_var, mix.var, mix.log_pi, use_pi)
    counts: NDArray[np.int64] | None = _core.assign(
        list(weights), mix.mu, base, inv2var, list(out), thread_request(n_threads)
    )
    return counts


def assign(
    weights: ArrayLike,
    mixture: Mixture,
    *,
    use_pi: bool = True,
    out: NDArray[np.integer] | None = None,
    n_threads: int | None = None,
) -> NDArray[np.integer]:
    """Index of every weight's most responsible mixture component (its MAP component).

    ``argmax_j ln pi_j + ln N(w | mu_j, sigma_j^2)``, computed as
    ``base_j - (d * d) * inv2var_j`` with ``d = w - mu_j`` in float64
    (:func:`softshare._formulas.assign_scores`), ties to the lowest index as
    ``numpy.argmax``: bit for bit :func:`softshare.reference.assign`. One
    native pass; no N x M array.

    Parameters
    ----------
    weights : array_like
        One array of real numbers, any shape (float32 and float64 are used as
        they are, other real dtypes become float64).
    mixture : Mixture
        The prior.
    use_pi : bool, default True
        Weigh the components by their mixing proportions; False picks the most
        likely component, in likelihood alone.
    out : ndarray, optional
        Where to write the indices: a uint8, uint16, uint32 or intp array of the
        weights' shape whose dtype holds M - 1, C-contiguous, writeable and not
        overlapping the weights. Its contents are unspecified after an error.
    n_threads : int or None, default None
        As :func:`softshare.penalty`'s; the result is the same for every choice.

    Returns
    -------
    ndarray
        The indices in the weights' shape: ``out`` when given, else a new array
        of the smallest unsigned dtype that holds M - 1 (uint8 up to 256
        components).

    Raises
    ------
    TypeError
        If ``mixture`` is not a Mixture, the weights are not real numbers, or
        ``out`` is not an ndarray of an index dtype.
    ValueError
        If a weight is NaN or infinite (naming the first index), ``out`` has
        another shape, is not C-contiguous and writeable, cannot hold M - 1 or
        overlaps the weights, or ``n_threads`` is not None, -1 or a positive int.
    """
    mix = as_mixture(mixture)
    w, flat, result = assign_inputs(weights, out, mix.n_components)
    counts = assign_arrays([flat], mix, [result.reshape(-1)], use_pi=use_pi, n_threads=n_threads)
    if counts is None:  # the kernel met a weight that is not finite: name the first
        w.raise_if_not_finite()
    return result


def dequantize(
    indices: NDArray[np.integer] | Sequence[NDArray[np.integer]],
    book: NDArray[np.floating],
    out: NDArray[np.floating] | Sequence[NDArray[np.floating]],
    *,
    n_threads: int | None = None,
) -> NDArray[np.floating] | list[NDArray[np.floating]]:
    """``out[...] = book[indices]``, in place: every quantized weight from its codebook index.

    Parameters
    ----------
    indices : ndarray or list/tuple of ndarray
        uint8, uint16, uint32 or intp indices, any shape.
    book : ndarray
        The codebook, 1-D float32 or float64: the values' dtype.
    out : ndarray or list/tuple of ndarray
        Mirrors ``indices``: arrays of their shapes and the book's dtype,
        C-contiguous and writeable (a torch tensor's ``t.numpy()`` works), not
        overlapping the indices or the book.
    n_threads : int or None, default None
        As :func:`softshare.penalty`'s.

    Returns
    -------
    ndarray or list of ndarray
        ``out``.

    Raises
    ------
    TypeError
        For indices, ``out`` or a book of other dtypes.
    ValueError
        For an index not below ``len(book)`` (naming the first: array, flat position,
        value; ``out`` then partly written), or an ``out`` of another shape, not
        contiguous and writeable, or overlapping.
    """
    flat_idx, codebook, flat_out = dequantize_inputs(indices, book, out)
    _core.dequantize(flat_idx, codebook, flat_out, thread_request(n_threads))
    return out if isinstance(out, np.ndarray) else list(out)


def offset_sums(
    weights: ArrayLike | Sequence[ArrayLike],
    indices: ArrayLike | Sequence[ArrayLike],
    book: NDArray[np.floating],
    *,
    n_threads: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Per codebook index, the sum of the weights' offsets from its value, and their count.

    ``sums[v] = sum over idx_i = v of float64(w_i - book[v])`` (the difference
    in the weights' dtype) and ``counts[v]``: what refitting a codebook value
    to the mean of its weights needs (``book[v] + sums[v] / counts[v]``).
    Summed in a fixed order (``softshare._core.offset_sums_layout``), the same
    for every ``n_threads``.

    Parameters
    ----------
    weights : array_like or list/tuple of array_like
        float32 or float64 weights, any shape (a list: every layer under one codebook).
    indices : array_like or list/tuple of array_like
        Mirrors ``weights``: each weight's index into ``book`` (uint8, uint16,
        uint32 or intp), same shapes.
    book : ndarray
        The codebook, 1-D, of the weights' dtype.
    n_threads : int or None, default None
        As :func:`softshare.penalty`'s.

    Returns
    -------
    (ndarray of float64, ndarray of int64)
        ``sums`` and ``counts``, each of ``len(book)``.

    Raises
    ------
    TypeError, ValueError
        As :func:`dequantize`'s, for weights not float32/float64 and mismatched shapes.
    """
    flat_w, flat_i, codebook = offset_inputs(weights, indices, book)
    sums, counts = _core.offset_sums(flat_w, flat_i, codebook, thread_request(n_threads))
    return sums, counts


def sparse_counts(
    indices: ArrayLike,
    k: int,
    zero_index: int,
    index_bits: int,
    *,
    n_threads: int | None = None,
) -> SparseCounts:
    """The statistics of one layer's relative-index sparse stream, without listing it.

    Exactly the histograms of :func:`softshare.reference.sparse_entries`' gaps
    and symbols (filler entries included), the histogram of all the layer's
    indices and the count of those not ``zero_index``.

    Parameters
    ----------
    indices : array_like
        The layer's codebook indices in storage order (uint8, uint16, uint32 or
        intp; flattened in C order).
    k : int
        The codebook's size: every index must be below it.
    zero_index : int
        The index whose entries are not stored, in ``0 .. k``; ``k`` stores every entry.
    index_bits : int
        Width of the relative index, 1 .. 16: gaps above ``2**index_bits`` get fillers.
    n_threads : int or None, default None
        As :func:`softshare.penalty`'s.

    Returns
    -------
    SparseCounts
        ``values`` (k,), ``nonzero``, ``gaps`` (2**index_bits,), ``symbols`` (k,).

    Raises
    ------
    TypeError, ValueError
        For indices of another dtype, parameters not ints or out of range, an
        index not below ``k`` (naming the first).
    """
    size, zero, bits = sparse_parameters(k, zero_index, index_bits)
    flat = as_index_array(indices, "indices")
    values, nonzero, gaps, symbols = _core.sparse_counts(
        flat, size, zero, bits, thread_request(n_threads)
    )
    return SparseCounts(values, int(nonzero), gaps, symbols)
