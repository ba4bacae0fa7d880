"""Export of quantized layers as a codebook and integer indices, its file, and its exact reload."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._inputs import as_mixture
from .._recipe_inputs import index_dtype
from ._format import npz as _npzfile
from ._format.atomic import replace_atomically
from ._network import quantize_network

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray

    from .._mixture import Mixture


def _check_codebook(codebook: object) -> NDArray[np.float32]:
    """The codebook as float32, or a ValueError saying why it is not one."""
    book = np.asarray(codebook)
    if book.ndim != 1 or book.dtype.kind not in "fiu":
        msg = f"codebook must be a 1-D array of real numbers, got shape {book.shape} {book.dtype}"
        raise ValueError(msg)
    with np.errstate(over="ignore", invalid="ignore"):
        book32 = book.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(book32))
    if bad.size:
        msg = f"codebook[{bad[0]}] = {book[bad[0]]} is not finite in float32"
        raise ValueError(msg)
    return book32


def _check_indices(name: object, indices: object, k: int) -> NDArray[Any]:
    """One layer's indices, checked to be integers in ``[0, k)``."""
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        msg = f"layer {name!r}: indices must be an integer array, got dtype {idx.dtype}"
        raise TypeError(msg)
    bad = np.flatnonzero(((idx < 0) | (idx >= k)).reshape(-1))
    if bad.size:
        at = tuple(int(i) for i in np.unravel_index(bad[0], idx.shape))
        msg = f"layer {name!r}: index {idx.reshape(-1)[bad[0]]} at {at} is outside [0, {k})"
        raise ValueError(msg)
    return idx


def _checked(exported: Mapping[str, Any]) -> tuple[NDArray[np.float32], dict[str, NDArray[Any]]]:
    """An export's codebook (float32) and layers, every index checked against it."""
    if "codebook" not in exported:
        msg = f"an export needs a 'codebook' entry; it has {sorted(map(str, exported))[:8]}"
        raise ValueError(msg)
    book = _check_codebook(exported["codebook"])
    layers = {n: _check_indices(n, a, book.size) for n, a in exported.items() if n != "codebook"}
    return book, layers


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
        The values the indices point to; real and finite in float32.

    Returns
    -------
    dict of str to ndarray
        ``"codebook"`` (float32, the values used, in codebook order) and, per
        layer, ``"<name>"`` (indices into it, the layer's shape; uint8 for at
        most 256 values used, uint16 up to 65,536, else uint32).

    Raises
    ------
    TypeError
        If a layer's indices are not an integer array (bool, float, object).
    ValueError
        If a layer is called ``"codebook"``, the codebook is not 1-D, real and
        finite, or an index is outside ``[0, K)`` (naming layer and index).
    """
    if "codebook" in indices:
        msg = "a layer may not be called 'codebook'"
        raise ValueError(msg)
    book, raw = _checked({**indices, "codebook": codebook})
    in_use = np.zeros(book.size, dtype=bool)
    for idx in raw.values():
        in_use[idx.reshape(-1)] = True
    used = np.flatnonzero(in_use)
    remap = np.zeros(book.size, dtype=np.int64)
    remap[used] = np.arange(used.size)
    dtype = index_dtype(used.size)
    out: dict[str, NDArray[Any]] = {"codebook": book[used]}
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
        As :func:`export_indices`, the codebook being the means in use (the
        zero first when present).
    """
    if "codebook" in layers:
        msg = "a layer called 'codebook' cannot be exported beside the codebook"
        raise ValueError(msg)
    return quantize_network(layers, as_mixture(mixture), use_pi=use_pi).export()


def load_quantized(
    exported: Mapping[str, ArrayLike] | str | os.PathLike[str],
) -> dict[str, NDArray[np.float32]]:
    """Rebuild the quantized float32 layers from an export or its file.

    Parameters
    ----------
    exported : mapping of str to array, or str or PathLike
        What :func:`export_quantized` or :func:`export_indices` returned, or
        :func:`save_quantized`'s file. A file is read without pickles, and
        refused before its data is read with over 65,000 members, a member
        whose ``.npy`` header disagrees with its size or holds objects, or over
        4 GiB declared (or, above 64 MiB, 64 times the file's size: a zip bomb).

    Returns
    -------
    dict of str to ndarray of float32
        Every layer's weights, with its shape.

    Raises
    ------
    TypeError
        If a layer's indices are not an integer array.
    ValueError
        If ``"codebook"`` is missing, not 1-D, not real or not finite, an index
        is outside ``[0, K)`` (naming layer and index), or the file is not an
        ``.npz`` archive within the limits.
    """
    if isinstance(exported, (str, os.PathLike)):
        exported = _npzfile.read_npz(
            exported, max_members=_npzfile.MAX_MEMBERS, max_bytes=_npzfile.MAX_BYTES
        )
    book, layers = _checked(exported)
    return {n: book[i.reshape(-1)].reshape(i.shape) for n, i in layers.items()}  # 0-d too


def _member_name(name: object) -> str:
    """The archive member holding layer ``name``, or a ValueError naming the layer."""
    text = name if isinstance(name, str) else ""
    utf8 = text.encode("utf-8", "replace")  # a lone surrogate turns into "?"
    if not 0 < len(utf8) <= 60_000 or utf8.decode() != text or ".." in text or {*"/\\\0"} & {*text}:
        msg = f"layer name {name!r} cannot name an archive member (empty, '/', '\\', NUL, '..')"
        raise ValueError(msg)
    return f"{name}.npy"


def save_quantized(path: str | os.PathLike[str], exported: Mapping[str, ArrayLike]) -> None:
    """Write an export to a compressed ``.npz`` file, exactly at ``path``.

    Any layer name that is a valid file name works. The file appears complete
    or not at all (it is written beside ``path``, then moved into place).

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added).
    exported : mapping of str to array
        What :func:`export_quantized` or :func:`export_indices` returned.

    Raises
    ------
    TypeError, ValueError
        As :func:`load_quantized`; ValueError for a layer name that is empty,
        holds '/', '\\', NUL or '..', or is not UTF-8.
    """
    book, layers = _checked(exported)
    members = {"codebook.npy": book, **{_member_name(n): a for n, a in layers.items()}}

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, arr in members.items():
                with zf.open(member, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)

    replace_atomically(path, write)
