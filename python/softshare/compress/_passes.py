"""The recipe's preparation of layers for the native passes, and its small per-weight helpers.

Layers as flat float32/float64 memory (:func:`real_layers`), the codebook's
dtype, component-to-codebook remapping and value counts; the passes
themselves are :mod:`softshare._native_recipe`'s (one native pass each, never
an N x M array), called by :mod:`softshare.compress._network`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._native_recipe import sparse_counts

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from numpy.typing import ArrayLike, NDArray


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def codebook_dtype(dtypes: Mapping[str, np.dtype[Any]]) -> np.dtype[Any]:
    """float32 when every layer is float32 (or there are none), else float64."""
    return np.dtype(np.float64 if np.dtype(np.float64) in dtypes.values() else np.float32)


def real_layers(
    layers: Mapping[str, ArrayLike], *, check_finite: bool = True
) -> dict[str, NDArray[np.floating]]:
    """Every layer as a float32 (kept) or float64 (any other real dtype) array, checked finite.

    TypeError for a layer of non-real numbers, ValueError for a non-finite
    weight (naming the layer and the index) unless ``check_finite`` is False
    (the caller's native pass then tells).
    """
    out: dict[str, NDArray[np.floating]] = {}
    for name, a in layers.items():
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            msg = f"layer {name!r} must hold real numbers, got dtype {arr.dtype}"
            raise TypeError(msg)
        if arr.dtype not in _FLOATS:
            arr = arr.astype(np.float64)
        if not arr.flags.c_contiguous:  # the native passes read flat memory (0-d stays 0-d)
            arr = arr.copy(order="C")
        if check_finite:
            raise_if_not_finite(name, arr)
        out[name] = arr
    return out


def raise_if_not_finite(name: str, arr: NDArray[np.floating]) -> None:
    """A ValueError naming the layer, the value and the index of its first weight that is not finite."""
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr.reshape(-1)))[0])
        at = tuple(int(i) for i in np.unravel_index(bad, arr.shape))
        msg = f"layer {name!r}: weight {arr.reshape(-1)[bad]} at {at} is not finite"
        raise ValueError(msg)


def remap_into(indices: NDArray[Any], table: NDArray[Any], out: NDArray[Any]) -> None:
    """``out[i] = table[indices[i]]``: component indices to codebook indices, in place allowed."""
    for i0 in range(0, indices.size, 1 << 20):
        out[i0 : i0 + (1 << 20)] = table[indices[i0 : i0 + (1 << 20)]]


def value_counts(indices: Iterable[NDArray[Any]], k: int) -> NDArray[np.int64]:
    """How many indices hold each of the ``k`` values, over all the arrays (one native pass each)."""
    counts = np.zeros(k, dtype=np.int64)
    for idx in indices:
        if idx.size:
            counts += sparse_counts(idx.reshape(-1), k, 0, 16).values
    return counts
