"""Export of quantized layers as a codebook and integer indices, and their exact reload."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._inputs import as_mixture
from ._quantize import assign

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray

    from .._mixture import Mixture

#: Largest codebook an export can index (uint16).
_MAX_CODEBOOK = 1 << 16


def export_indices(
    indices: Mapping[str, ArrayLike], codebook: ArrayLike
) -> dict[str, NDArray[Any]]:
    """Codebook and per-layer integer indices, keeping only the codebook values in use.

    Parameters
    ----------
    indices : mapping of layer name to array of int
        The codebook index of every weight of every layer (as from
        :func:`quantize`), any shapes.
    codebook : array_like, shape (K,)
        The values the indices point to.

    Returns
    -------
    dict of str to ndarray
        A flat dict for :func:`numpy.savez`: ``"codebook"`` (float32, the
        values that are used, in codebook order) and, per layer, ``"<name>"``
        (indices into that reduced codebook, with the layer's shape; uint8 when
        at most 256 values are used, else uint16).

    Raises
    ------
    ValueError
        If a layer is called ``"codebook"``, an index is not an integer in
        ``[0, K)``, or more than 65536 values are used.
    """
    if "codebook" in indices:
        msg = "a layer may not be called 'codebook'"
        raise ValueError(msg)
    book = np.asarray(codebook).reshape(-1)
    raw = {name: np.asarray(idx) for name, idx in indices.items()}
    for name, idx in raw.items():
        if idx.size and (
            idx.dtype.kind not in "iu" or int(idx.min()) < 0 or int(idx.max()) >= book.size
        ):
            msg = f"layer {name!r}: indices must be integers in [0, {book.size})"
            raise ValueError(msg)
    used = (
        np.unique(np.concatenate([v.reshape(-1) for v in raw.values()]))
        if raw
        else np.zeros(0, int)
    )
    if used.size > _MAX_CODEBOOK:
        msg = f"{used.size} codebook values are used; an export holds at most {_MAX_CODEBOOK}"
        raise ValueError(msg)
    remap = np.zeros(book.size, dtype=np.int64)
    remap[used] = np.arange(used.size)
    dtype = np.uint8 if used.size <= 256 else np.uint16
    out: dict[str, NDArray[Any]] = {"codebook": book[used].astype(np.float32)}
    for name, idx in raw.items():
        out[name] = remap[idx].astype(dtype)
    return out


def export_quantized(
    layers: Mapping[str, ArrayLike], mixture: Mixture, *, use_pi: bool = True
) -> dict[str, NDArray[Any]]:
    """Codebook and per-layer integer indices of the quantized weights.

    Parameters
    ----------
    layers : mapping of layer name to array_like
        The weights, any shapes.
    mixture : Mixture
        The mixture whose means are the codebook.
    use_pi : bool, default True
        As in :func:`assign`.

    Returns
    -------
    dict of str to ndarray
        As :func:`export_indices`: ``"codebook"`` (float32, the component
        means that are used, the zero first when present) and, per layer,
        ``"<name>"`` (uint8/uint16 indices into the codebook, the layer's shape).
    """
    mix = as_mixture(mixture)
    raw = {name: assign(np.asarray(a), mix, use_pi=use_pi) for name, a in layers.items()}
    return export_indices(raw, mix.mu)


def load_quantized(exported: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
    """Rebuild the quantized float32 layers from an export.

    Parameters
    ----------
    exported : mapping of str to ndarray
        What :func:`export_quantized` or :func:`export_indices` returned, or
        what :func:`numpy.load` read back from :func:`save_quantized`'s file.

    Returns
    -------
    dict of str to ndarray of float32
        Every layer's weights, with its shape.
    """
    book = np.asarray(exported["codebook"], dtype=np.float32)
    return {name: book[np.asarray(idx)] for name, idx in exported.items() if name != "codebook"}


def save_quantized(path: str | Path, exported: Mapping[str, NDArray[Any]]) -> None:
    """Write an export to a compressed ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        The file to write.
    exported : mapping of str to ndarray
        What :func:`export_quantized` or :func:`export_indices` returned.
    """
    arrays = {name: np.asarray(a) for name, a in exported.items()}
    np.savez_compressed(Path(path), **arrays)  # type: ignore[arg-type]
