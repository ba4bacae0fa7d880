"""Quantization: every weight to the mean of its most responsible component."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._assign import assign_components
from .._inputs import as_mixture, as_weights

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from .._inputs import WeightsLike
    from .._mixture import Mixture


def assign(weights: ArrayLike, mixture: Mixture, *, use_pi: bool = True) -> NDArray[np.intp]:
    """Index of the most responsible component of every weight (MAP).

    Chunked: never more than 32768 x M log-terms at once.

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
    return assign_components(weights, mixture, use_pi=use_pi)


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
        quantized.append(mix.mu[idx].astype(arr.dtype))
    return quantized, indices
