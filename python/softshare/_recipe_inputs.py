"""Input checks of the recipe's per-weight passes, shared by the native functions and the reference.

Index arrays, codebooks, ``out=`` arrays and the sparse stream's parameters:
each check raises ``TypeError`` for a wrong kind or dtype and ``ValueError``
for a wrong value or shape, with a message that names the argument.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from ._inputs import Weights, as_weights

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

#: The dtypes of codebook indices: the kernels read and write these.
INDEX_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.intp))
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def index_dtype(n_values: int) -> np.dtype[np.unsignedinteger]:
    """The smallest unsigned dtype that holds the indices ``0 .. n_values - 1``.

    Parameters
    ----------
    n_values : int
        How many values the indices point into (components, or a codebook's size).

    Returns
    -------
    numpy.dtype
        uint8 up to 256 values, uint16 up to 65536, else uint32.
    """
    for dt in (np.uint8, np.uint16):
        if n_values <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint32)


def holds(dtype: np.dtype[Any], largest: int) -> bool:
    """Whether ``dtype`` holds the index ``largest``."""
    return largest <= np.iinfo(dtype).max


def items(value: object, name: str) -> tuple[list[object], list[str], bool]:
    """One array or a list/tuple of arrays, as a list, its arrays' names and whether it was a list."""
    if isinstance(value, (list, tuple)):
        return list(value), [f"{name}[{k}]" for k in range(len(value))], True
    return [value], [name], False


def as_index_array(value: object, name: str) -> NDArray[np.integer]:
    """A flat, contiguous view (or copy) of an index array of one of :data:`INDEX_DTYPES`."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype not in INDEX_DTYPES or not arr.dtype.isnative:
        msg = f"{name} must hold uint8, uint16, uint32 or intp indices, got dtype {arr.dtype}"
        raise TypeError(msg)
    return np.ascontiguousarray(arr).reshape(-1)


def as_book(book: object, dtype: np.dtype[np.floating] | None = None) -> NDArray[np.floating]:
    """The codebook: a 1-D float32 or float64 array (of ``dtype`` when given), contiguous."""
    arr = book if isinstance(book, np.ndarray) else np.asarray(book)
    if arr.dtype not in VALUE_DTYPES or not arr.dtype.isnative:
        msg = f"book must be a float32 or float64 array, got dtype {arr.dtype}"
        raise TypeError(msg)
    if dtype is not None and arr.dtype != dtype:
        msg = f"book must have the weights' dtype {dtype}, got {arr.dtype}"
        raise TypeError(msg)
    if arr.ndim != 1:
        msg = f"book must be 1-D, got shape {arr.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(arr)


def as_out_array(
    out: object, name: str, shape: tuple[int, ...], dtypes: Sequence[np.dtype[np.generic]]
) -> NDArray[np.generic]:
    """A flat view of an ``out=`` array: an ndarray of one of ``dtypes`` and this shape,
    C-contiguous and writeable (written in place)."""
    if not isinstance(out, np.ndarray):
        msg = f"{name} must be a numpy.ndarray, got {type(out).__name__}"
        raise TypeError(msg)
    if out.dtype not in dtypes or not out.dtype.isnative:
        allowed = ", ".join(str(d) for d in dtypes)
        msg = f"{name} must have dtype {allowed}, got {out.dtype}"
        raise TypeError(msg)
    if out.shape != shape:
        msg = f"{name} must have the shape {shape}, got {out.shape}"
        raise ValueError(msg)
    if not (out.flags.c_contiguous and out.flags.writeable):
        msg = f"{name} must be C-contiguous and writeable"
        raise ValueError(msg)
    return out.reshape(-1)


def check_no_overlap(out: NDArray[np.generic], name: str, other: ArrayLike, what: str) -> None:
    """``ValueError`` if ``out`` shares memory with ``other`` (both contiguous: exact)."""
    if np.may_share_memory(out, other):
        msg = f"{name} overlaps {what}: it needs its own memory"
        raise ValueError(msg)


def assign_inputs(
    weights: object, out: object, m: int
) -> tuple[Weights, NDArray[np.floating], NDArray[np.integer]]:
    """``assign``'s weights (one array, as :func:`softshare.penalty` reads it), their flat
    float32/float64 array and the result array: ``out`` checked (an index dtype holding
    ``m - 1``, the weights' shape, C-contiguous, writeable, not overlapping them), or a new
    array of :func:`index_dtype`."""
    try:
        arr = weights if isinstance(weights, np.ndarray) else np.asarray(weights)
    except (TypeError, ValueError) as err:
        msg = f"weights could not be read as a numeric array: {err}"
        raise TypeError(msg) from err
    w = as_weights(arr)
    flat, shape = w.flat[0], w.shapes[0]
    if out is None:
        return w, flat, np.empty(shape, dtype=index_dtype(m))
    flat_out = as_out_array(out, "out", shape, INDEX_DTYPES)
    if not holds(flat_out.dtype, m - 1):
        msg = f"out's dtype {flat_out.dtype} cannot hold the component index {m - 1}"
        raise ValueError(msg)
    check_no_overlap(flat_out, "out", flat, "the weights")
    return w, flat, out  # type: ignore[return-value]


def bad_index_error(name: str, position: int, value: int, k: int) -> ValueError:
    """The error for an index that does not point into a codebook of ``k`` values."""
    return ValueError(
        f"{name} holds {value} at (flat) position {position}: not an index into a codebook "
        f"of {k} values (0 <= index < {k})"
    )


def raise_if_bad_indices(flat: NDArray[np.integer], name: str, k: int) -> None:
    """``ValueError`` naming the first index of ``flat`` not in ``0 .. k - 1``."""
    bad = np.flatnonzero((flat < 0) | (flat >= k))
    if bad.size:
        raise bad_index_error(name, int(bad[0]), int(flat[bad[0]]), k)


def dequantize_inputs(
    indices: object, book: object, out: object
) -> tuple[list[NDArray[np.integer]], NDArray[np.floating], list[NDArray[np.floating]]]:
    """``dequantize``'s flat index arrays, codebook and flat ``out`` arrays (mirroring the indices:
    their shapes, the book's dtype, C-contiguous, writeable, overlapping neither)."""
    codebook = as_book(book)
    idx_items, idx_names, is_list = items(indices, "indices")
    out_items, out_names, out_list = items(out, "out")
    if out_list != is_list or len(out_items) != len(idx_items):
        msg = "out must mirror indices: one array for one array, one per array for a list"
        raise ValueError(msg)
    raw = [np.asarray(a) for a in idx_items]
    flat_idx = [as_index_array(a, n) for a, n in zip(raw, idx_names)]
    flat_out = []
    for a, name, idx in zip(out_items, out_names, raw):
        f = as_out_array(a, name, idx.shape, (codebook.dtype,))
        check_no_overlap(f, name, codebook, "the codebook")
        for i in flat_idx:
            check_no_overlap(f, name, i, "the indices")
        flat_out.append(f)
    return flat_idx, codebook, flat_out  # type: ignore[return-value]


def offset_inputs(
    weights: object, indices: object, book: object
) -> tuple[list[NDArray[np.floating]], list[NDArray[np.integer]], NDArray[np.floating]]:
    """``offset_sums``' flat float32/float64 weights, flat indices (mirroring them) and codebook
    (of the weights' dtype)."""
    w_items, w_names, is_list = items(weights, "weights")
    i_items, i_names, i_list = items(indices, "indices")
    if i_list != is_list or len(i_items) != len(w_items):
        msg = "indices must mirror weights: one array for one array, one per array for a list"
        raise ValueError(msg)
    flat_w: list[NDArray[np.floating]] = []
    flat_i: list[NDArray[np.integer]] = []
    for wa, ia, wn, iname in zip(w_items, i_items, w_names, i_names):
        arr = np.asarray(wa)
        native = arr.dtype.newbyteorder("=")
        if native not in VALUE_DTYPES:
            msg = f"{wn} must be float32 or float64, got dtype {arr.dtype}"
            raise TypeError(msg)
        ia_arr = np.asarray(ia)
        idx = as_index_array(ia_arr, iname)
        if ia_arr.shape != arr.shape:
            msg = f"{iname} must have the shape of {wn}, {arr.shape}, got {ia_arr.shape}"
            raise ValueError(msg)
        flat_w.append(np.ascontiguousarray(arr, dtype=native).reshape(-1))
        flat_i.append(idx)
    return flat_w, flat_i, as_book(book, flat_w[0].dtype if flat_w else None)


def as_count(value: object, name: str, *, low: int, high: int) -> int:
    """An int (not a bool) in ``low .. high``: ``TypeError`` or ``ValueError`` otherwise."""
    if isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be an int, got {value!r}"
        raise TypeError(msg)
    try:
        k = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = f"{name} must be an int, got {type(value).__name__}"
        raise TypeError(msg) from None
    if not low <= k <= high:
        msg = f"{name} must be in {low} .. {high}, got {k}"
        raise ValueError(msg)
    return k


def sparse_parameters(k: object, zero_index: object, index_bits: object) -> tuple[int, int, int]:
    """The sparse stream's codebook size ``k >= 0``, ``zero_index`` in ``0 .. k`` (``k``:
    no zero component, every entry stored) and ``index_bits`` in ``1 .. 16``."""
    size = as_count(k, "k", low=0, high=2**32)
    zero = as_count(zero_index, "zero_index", low=0, high=size)
    bits = as_count(index_bits, "index_bits", low=1, high=16)
    return size, zero, bits
