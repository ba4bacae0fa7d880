"""Quantization: every weight to the mean of its most responsible component."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._inputs import as_mixture, as_weights
from .._native_recipe import assign as native_assign
from ._passes import real_layers

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .._inputs import WeightsLike
    from .._mixture import Mixture


def assign(weights: ArrayLike, mixture: Mixture, *, use_pi: bool = True) -> NDArray[np.intp]:
    """Index of the most responsible component of every weight (MAP).

    One native pass (:func:`softshare.assign`, ties to the lowest index),
    never an N x M array; the result as ``intp``.

    Parameters
    ----------
    weights : array_like
        The weights, any shape.
    mixture : Mixture
        The mixture.
    use_pi : bool, default True
        Weigh the components by their mixing proportions (MAP); False picks
        the nearest component in likelihood alone.

    Returns
    -------
    ndarray of intp
        The component index of every weight, shaped like ``weights``.
    """
    arr = real_layers({"weights": weights}, check_finite=False)["weights"]
    out = np.empty(arr.shape, dtype=np.intp)
    native_assign(arr, as_mixture(mixture), use_pi=use_pi, out=out)
    return out


def quantize(
    weights: WeightsLike, mixture: Mixture, *, use_pi: bool = True
) -> tuple[list[NDArray[np.floating]], list[NDArray[np.intp]]]:
    """Set every weight to the mean of its most responsible component.

    A zero component (mean exactly 0) gives exact zeros.

    Parameters
    ----------
    weights : array_like or list of array_like
        The weights.
    mixture : Mixture
        The mixture.
    use_pi : bool, default True
        As in :func:`assign`.

    Returns
    -------
    (quantized, indices)
        Lists with one entry per weight array: the quantized arrays (dtype and
        shape of the inputs) and the component index of every weight.
    """
    mix = as_mixture(mixture)
    w = as_weights(weights)
    quantized, indices = [], []
    for arr, shape in zip(w.flat, w.shapes):
        idx = assign(arr, mix, use_pi=use_pi).reshape(shape)
        indices.append(idx)
        with np.errstate(over="ignore"):
            q = mix.mu[idx].astype(arr.dtype)
        if not np.isfinite(q).all():
            bad = mix.mu[idx.reshape(-1)[np.flatnonzero(~np.isfinite(q.reshape(-1)))[0]]]
            msg = f"the mean {bad} in use is not finite in {arr.dtype}, the weights' dtype"
            raise ValueError(msg)
        quantized.append(q)
    return quantized, indices
