"""Each weight's most responsible mixture component: shared by the recipe and the torch file API."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._inputs import as_mixture

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray

    from ._mixture import Mixture

_CHUNK = 1 << 15


def assign_components(
    weights: ArrayLike, mixture: Mixture, *, use_pi: bool = True
) -> NDArray[np.intp]:
    """Index of the most responsible component of every weight (MAP), in chunks.

    Never more than 32768 x M log-terms at once. ``use_pi=False`` picks the
    nearest component in likelihood alone. See :func:`softshare.compress.assign`.
    """
    mix = as_mixture(mixture)
    arr = np.asarray(weights, dtype=np.float64)
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.intp)
    base = -0.5 * mix.log_var + (mix.log_pi if use_pi else 0.0)
    inv2var = 0.5 / mix.var
    for i0 in range(0, flat.size, _CHUNK):
        d = flat[i0 : i0 + _CHUNK, None] - mix.mu[None, :]
        out[i0 : i0 + _CHUNK] = np.argmax(base - d * d * inv2var, axis=1)
    return out.reshape(arr.shape)


def quantize_layers(
    layers: Mapping[str, ArrayLike], mixture: Mixture, *, use_pi: bool = True
) -> tuple[NDArray[np.floating], dict[str, NDArray[np.intp]], dict[str, bool]]:
    """Codebook (the means in use), every layer's indices into it, and which layers are float64.

    float32 layers stay float32; every other real dtype is held as float64. The
    codebook is float32 when every layer is, else the means in float64, so that
    ``codebook[indices].astype(dtype)`` is exactly what quantization gives.
    Raises TypeError for a layer of non-real numbers and ValueError for a
    non-finite weight, naming the layer.
    """
    mix = as_mixture(mixture)
    raw: dict[str, NDArray[np.intp]] = {}
    float64: dict[str, bool] = {}
    for name, a in layers.items():
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            msg = f"layer {name!r} must hold real numbers, got dtype {arr.dtype}"
            raise TypeError(msg)
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
        if bad.size:
            at = tuple(int(i) for i in np.unravel_index(bad[0], arr.shape))
            msg = f"layer {name!r}: weight {arr.reshape(-1)[bad[0]]} at {at} is not finite"
            raise ValueError(msg)
        float64[name] = arr.dtype != np.float32
        raw[name] = assign_components(arr, mix, use_pi=use_pi)
    in_use = np.zeros(mix.n_components, dtype=bool)
    for idx in raw.values():
        in_use[idx.reshape(-1)] = True
    used = np.flatnonzero(in_use)
    if not used.size:  # no weights at all: keep one value so that the codebook is never empty
        used = np.zeros(1, dtype=np.intp)
    remap = np.zeros(mix.n_components, dtype=np.intp)
    remap[used] = np.arange(used.size)
    with np.errstate(over="ignore"):
        book = mix.mu[used] if any(float64.values()) else mix.mu[used].astype(np.float32)
    if not np.all(np.isfinite(book)):
        msg = f"a mixture mean in use ({mix.mu[used][~np.isfinite(book)][0]}) is not finite in float32"
        raise ValueError(msg)
    return book, {n: remap[i] for n, i in raw.items()}, float64
