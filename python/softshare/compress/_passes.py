"""The recipe's per-weight passes (assign, take, refit sums, sparse counts), never an N x M array.

Each works on one flat array at a time and allocates nothing of the weights'
size beyond its output; :mod:`softshare.compress._network` builds the quantized
network from them and :mod:`softshare.torch` writes through them into tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from numpy.typing import ArrayLike, NDArray

    from .._mixture import Mixture

#: Weights per chunk of the NumPy loops: bounds their temporaries (CHUNK x M float64 at most).
CHUNK = 1 << 15
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def index_dtype(k: int) -> np.dtype[Any]:
    """The smallest unsigned dtype that holds indices into ``k`` values: uint8, uint16 or uint32."""
    return np.dtype(np.uint8 if k <= 256 else np.uint16 if k <= 65_536 else np.uint32)


def codebook_dtype(dtypes: Mapping[str, np.dtype[Any]]) -> np.dtype[Any]:
    """float32 when every layer is float32 (or there are none), else float64."""
    return np.dtype(np.float64 if np.dtype(np.float64) in dtypes.values() else np.float32)


def real_layers(layers: Mapping[str, ArrayLike]) -> dict[str, NDArray[np.floating]]:
    """Every layer as a float32 (kept) or float64 (any other real dtype) array, checked finite.

    TypeError for a layer of non-real numbers, ValueError for a non-finite
    weight (naming the layer and the index).
    """
    out: dict[str, NDArray[np.floating]] = {}
    for name, a in layers.items():
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            msg = f"layer {name!r} must hold real numbers, got dtype {arr.dtype}"
            raise TypeError(msg)
        if arr.dtype not in _FLOATS:
            arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr.reshape(-1)))[0])
            at = tuple(int(i) for i in np.unravel_index(bad, arr.shape))
            msg = f"layer {name!r}: weight {arr.reshape(-1)[bad]} at {at} is not finite"
            raise ValueError(msg)
        out[name] = arr
    return out


def assign_terms(mixture: Mixture, *, use_pi: bool) -> tuple[NDArray[np.float64], ...]:
    """``(mu, base, inv2var)``: the score of component j at w is ``base_j - (w - mu_j)^2 inv2var_j``."""
    base = -0.5 * mixture.log_var + (mixture.log_pi if use_pi else 0.0)
    return mixture.mu, base, 0.5 / mixture.var


def assign_into(
    flat: NDArray[np.floating], mixture: Mixture, out: NDArray[Any], *, use_pi: bool
) -> NDArray[np.int64]:
    """Write each weight's most responsible component into ``out``; return the counts per component.

    Ties go to the lowest index (``np.argmax``). ``flat`` is finite (checked by the caller).
    """
    mu, base, inv2var = assign_terms(mixture, use_pi=use_pi)
    counts = np.zeros(mixture.n_components, dtype=np.int64)
    for i0 in range(0, flat.size, CHUNK):
        d = flat[i0 : i0 + CHUNK, None].astype(np.float64) - mu[None, :]
        best = np.argmax(base - d * d * inv2var, axis=1)
        out[i0 : i0 + CHUNK] = best
        counts += np.bincount(best, minlength=counts.size)
    return counts


def take_into(indices: NDArray[Any], book: NDArray[np.floating], out: NDArray[Any]) -> None:
    """``out[i] = book[indices[i]]`` for flat arrays (indices checked against ``book`` by the caller)."""
    for i0 in range(0, indices.size, CHUNK):
        np.take(book, indices[i0 : i0 + CHUNK], out=out[i0 : i0 + CHUNK])


def remap_into(indices: NDArray[Any], table: NDArray[Any], out: NDArray[Any]) -> None:
    """``out[i] = table[indices[i]]``: component indices to codebook indices, in place allowed."""
    for i0 in range(0, indices.size, CHUNK):
        out[i0 : i0 + CHUNK] = table[indices[i0 : i0 + CHUNK]]


def value_counts(indices: Iterable[NDArray[Any]], k: int) -> NDArray[np.int64]:
    """How many indices hold each of the ``k`` values, over all the arrays."""
    counts = np.zeros(k, dtype=np.int64)
    for idx in indices:
        flat = idx.reshape(-1)
        for i0 in range(0, flat.size, 1 << 20):
            counts += np.bincount(flat[i0 : i0 + (1 << 20)], minlength=k)[:k]
    return counts


def offset_sums(
    flat: NDArray[np.floating], indices: NDArray[Any], book: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Per codebook index, the float64 sum of ``w - book[index]`` (the difference in w's dtype)."""
    sums = np.zeros(book.size, dtype=np.float64)
    for i0 in range(0, flat.size, CHUNK):
        idx = indices[i0 : i0 + CHUNK]
        diff = flat[i0 : i0 + CHUNK] - book[idx]
        sums += np.bincount(idx, weights=diff.astype(np.float64), minlength=book.size)
    return sums


def sparse_counts(
    flat: NDArray[Any], k: int, zero_index: int, index_bits: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Counts of one layer's values, and of its sparse stream's gaps and symbols (fillers included).

    Han et al.'s relative-index stream (:func:`softshare.compress.sparse_entries`):
    every entry whose value is not ``zero_index`` is stored with its gap ``d``
    (1 .. 2^index_bits, counted at ``d - 1``) to the previous stored entry; a
    longer gap is bridged by filler entries of value ``zero_index`` and gap
    2^index_bits. Returns ``(values, gaps, symbols)``: counts of length ``k``,
    ``2^index_bits`` and ``k + 1`` (a ``zero_index`` of ``k`` is counted last).
    """
    values = np.zeros(k, dtype=np.int64)
    max_gap = 1 << index_bits
    gaps = np.zeros(max_gap, dtype=np.int64)
    symbols = np.zeros(k + 1, dtype=np.int64)
    prev = -1
    for i0 in range(0, flat.size, 1 << 20):
        chunk = flat[i0 : i0 + (1 << 20)]
        values += np.bincount(chunk, minlength=k)[:k]
        pos = np.flatnonzero(chunk != zero_index)
        if not pos.size:
            continue
        symbols += np.bincount(chunk[pos], minlength=k + 1)[: k + 1]
        d = np.diff(pos + i0, prepend=prev)
        prev = int(pos[-1]) + i0
        fillers = (d - 1) // max_gap
        symbols[zero_index] += int(fillers.sum())
        gaps[max_gap - 1] += int(fillers.sum())
        gaps += np.bincount(d - fillers * max_gap - 1, minlength=max_gap)
    return values, gaps, symbols
