"""The compressed model file from NumPy: write quantized layers, read them back, inspect a file.

The format (docs/format.md) entropy-codes every layer's sparse positions and
codebook indices; :mod:`softshare.compress._format.model` writes and reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .._recipe_inputs import index_dtype
from ._export import _checked
from ._format.model import ModelFile, read_model, write_model
from ._network import QuantizedNetwork, quantize_network
from ._passes import value_counts

if TYPE_CHECKING:
    import os

    from numpy.typing import ArrayLike, NDArray

    from .._mixture import Mixture

__all__ = ["ModelFile", "inspect_file", "read_file", "write_file"]


def write_file(
    path: str | os.PathLike[str],
    layers: Mapping[str, ArrayLike] | QuantizedNetwork,
    mixture: Mixture | None = None,
    *,
    use_pi: bool = True,
    keep_mixture: bool = False,
) -> ModelFile:
    """Write quantized layers to a compressed model file, exactly at ``path``.

    The file appears complete or not at all. Layer names may be any text.

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added; ``.sws`` is the custom).
    layers : QuantizedNetwork or mapping of str to array_like
        A :class:`QuantizedNetwork` (from :func:`quantize_network`), written as
        it is (its mixture too, when it keeps one). With ``mixture``: the weights (any shapes), quantized to the means of
        their most responsible components; float32 layers are read back as
        float32, any other real dtype as float64. Without: an export, as from
        :func:`export_quantized` or :func:`export_indices` (a ``"codebook"``
        and integer indices per layer), read back as float32.
    mixture : Mixture, optional
        The mixture to quantize ``layers`` with.
    use_pi : bool, default True
        As in :func:`assign`.
    keep_mixture : bool, default False
        Also store the mixture (24 bytes per component) for :func:`inspect_file`.

    Returns
    -------
    ModelFile
        What the file holds and the bytes of every part (``file_bytes``,
        ``layer_bytes``, ``codebook_bytes``).

    Raises
    ------
    TypeError, ValueError
        As :func:`load_quantized` for an export; for weights that are not real
        or not finite (naming the layer); for a layer name that is not UTF-8 or
        is over 4096 bytes, a shape over 32 dimensions, a codebook over 2^24
        values.

    Examples
    --------
    >>> import numpy as np, softshare
    >>> from softshare import compress
    >>> mix = softshare.Mixture([0.0, -0.5, 0.5], [-9.0, -9.0, -9.0], [3.0, 0.0, 0.0])
    >>> w = {"fc.weight": np.array([[0.01, 0.49], [-0.51, 0.0]], np.float32)}
    >>> compress.write_file("model.sws", w, mix).file_bytes  # doctest: +SKIP
    """
    given: object = layers  # callers without type checking pass anything
    if isinstance(given, QuantizedNetwork):
        if mixture is not None:
            msg = "layers is a QuantizedNetwork, already quantized: write it without a mixture"
            raise ValueError(msg)
        return write_model(path, given)
    if not isinstance(given, Mapping):
        msg = (
            "layers must be a QuantizedNetwork or a mapping of names to arrays (or an export), "
            f"got {type(given).__name__}"
        )
        raise TypeError(msg)
    layers = given
    unsigned = [np.asarray(v).dtype.kind == "u" for k, v in layers.items() if k != "codebook"]
    if mixture is not None and "codebook" in layers and unsigned and all(unsigned):
        msg = "layers is an export (a codebook and index arrays): write it without a mixture"
        raise ValueError(msg)
    if mixture is None:
        if "codebook" not in layers:
            msg = "without a mixture, layers must be an export (with a 'codebook' entry)"
            raise ValueError(msg)
        book: NDArray[np.floating]
        book, indices = _checked(layers)
        width = index_dtype(book.size)
        network = QuantizedNetwork(
            codebook=book,
            indices={n: np.asarray(i).astype(width, copy=False) for n, i in indices.items()},
            dtypes={n: np.dtype(np.float32) for n in indices},
            counts=tuple(int(c) for c in value_counts(indices.values(), book.size)),
        )
        return write_model(path, network)
    network = quantize_network(layers, mixture, use_pi=use_pi, keep_mixture=keep_mixture)
    return write_model(path, network)


def read_file(path: str | os.PathLike[str]) -> dict[str, NDArray[np.floating]]:
    """The quantized layers of a compressed model file.

    Parameters
    ----------
    path : str or PathLike
        A file :func:`write_file` (or ``softshare.torch.save_compressed``) wrote.

    Returns
    -------
    dict of str to ndarray
        Every layer in its shape and dtype, bit-identical to what quantization
        gave (for an export, to :func:`load_quantized`).

    Raises
    ------
    ValueError
        If the file is not such a file, is truncated or corrupt (a checksum),
        or declares more than the limits allow, saying which: nothing is
        allocated for a declared size before it is checked against the file's.
    """
    return read_model(path).layers()


def inspect_file(path: str | os.PathLike[str]) -> ModelFile:
    """A compressed model file's contents and the bytes of its parts.

    ``inspect_file(path).to_markdown()`` is the table ``softshare inspect``
    prints. Raises as :func:`read_file`.
    """
    return read_model(path)
