"""The compressed model file: its layout, checksums and limits, written and read (docs/format.md).

``MAGIC`` and the version byte, the header stream's length, the header stream
(:mod:`softshare._fileheader`), its CRC-32, the layer stream (the native
entropy coder, ``_core.encode_layers``) and its CRC-32. A reader checks the
header's checksum before decoding it, every declared size against the limits
and the file's size before allocating anything, and the layers' checksum
before decoding them.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._atomic import replace_atomically
from ._fileheader import (
    LAYERS_PER_BYTE,
    MAX_CODEBOOK,
    MAX_DIM,
    MAX_NAME_BYTES,
    MAX_NDIM,
    NAME_BYTES_PER_BYTE,
    Header,
)
from ._fileheader import decode_header as _decode_header
from ._fileheader import encode_header as _encode_header

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from ._mixture import Mixture

MAGIC = b"SWS"
VERSION = 1
#: Limits on the weights a file may declare (bytes of the float arrays it decodes to).
MAX_BYTES = 1 << 34
MAX_RATIO = 4096  # declared bytes per byte of file ...
FREE_BYTES = 1 << 26  # ... once they exceed this


@dataclass(frozen=True)
class ModelFile:
    """A compressed model file's contents, and where its bytes go.

    Attributes
    ----------
    codebook : ndarray of float32 or float64
        The distinct values.
    indices : dict of str to ndarray of uint8, uint16 or uint32
        Every layer's codebook indices, in its shape.
    dtypes : dict of str to numpy dtype
        Every layer's dtype (float32 or float64).
    mixture : Mixture or None
        The mixture the file was quantized with, when it keeps one.
    file_bytes, codebook_bytes : int
        Bytes of the whole file, and of the codebook within its header.
    layer_bytes : dict of str to int
        Bytes of every layer's coded data.
    """

    codebook: NDArray[np.floating]
    indices: dict[str, NDArray[np.unsignedinteger]]
    dtypes: dict[str, np.dtype[Any]]
    mixture: Mixture | None
    file_bytes: int
    codebook_bytes: int
    layer_bytes: dict[str, int]

    @property
    def header_bytes(self) -> int:
        """Bytes of everything but the layers' data and the codebook (names, shapes, checks)."""
        return self.file_bytes - self.codebook_bytes - sum(self.layer_bytes.values())

    @property
    def n_weights(self) -> int:
        """Weights in all layers."""
        return sum(int(i.size) for i in self.indices.values())

    @property
    def ratio(self) -> float:
        """float32 size of all weights / the file's size."""
        return 4 * self.n_weights / self.file_bytes

    def layers(self) -> dict[str, NDArray[np.floating]]:
        """Every layer's quantized weights, in its dtype and shape."""
        return {
            n: self.codebook[i.reshape(-1)].astype(self.dtypes[n]).reshape(i.shape)  # 0-d too
            for n, i in self.indices.items()
        }

    def to_markdown(self) -> str:
        """The per-layer table: weights, non-zero %, distinct values, bytes, ratio to float32."""
        rows = [
            "| layer | shape | dtype | weights | non-zero % | distinct values | bytes | ratio |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        zero = np.flatnonzero(self.codebook == 0)
        for name, idx in self.indices.items():
            nz = idx.size - (int(np.count_nonzero(idx == zero[0])) if zero.size else 0)
            size = self.layer_bytes[name]
            ratio = f"{4 * idx.size / size:.1f}x" if size else "-"
            rows.append(
                f"| {name} | {tuple(idx.shape)} | {self.dtypes[name]} | {idx.size} | "
                f"{100 * nz / max(idx.size, 1):.2f} | {np.unique(idx).size} | {size} | {ratio} |"
            )
        k = self.codebook.size
        rows.append(f"| codebook | ({k},) | {self.codebook.dtype} | - | - | {k} | "
                    f"{self.codebook_bytes} | - |")  # fmt: skip
        rows.append(f"| header | - | - | - | - | - | {self.header_bytes} | - |")
        rows.append(
            f"| **total** | | | {self.n_weights} | | | {self.file_bytes} | **{self.ratio:.1f}x** |"
        )
        return "\n".join(rows)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 127) | (128 if n > 127 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _matrix(shape: tuple[int, ...]) -> tuple[int, int]:
    """A layer as the coder sees it: its first dimension by the rest."""
    return (shape[0], math.prod(shape[1:])) if shape else (1, 1)


def _check_layout(names: Sequence[object], shapes: Sequence[tuple[int, ...]]) -> None:
    """A ValueError for a name or shape the format cannot hold."""
    for name, shape in zip(names, shapes):
        if not isinstance(name, str):
            msg = f"layer names must be str, got {name!r}"
            raise TypeError(msg)
        try:
            size = len(name.encode())
        except UnicodeEncodeError:
            msg = f"layer name {name!r} is not valid UTF-8 text"
            raise ValueError(msg) from None
        if size > MAX_NAME_BYTES:
            msg = f"layer name {name[:40]!r}... is over {MAX_NAME_BYTES} bytes"
            raise ValueError(msg)
        if len(shape) > MAX_NDIM or math.prod(d for d in shape if d) > MAX_DIM:
            msg = f"layer {name!r}: shape {shape} is over {MAX_NDIM} dimensions or {MAX_DIM} values"
            raise ValueError(msg)


def write_model(
    path: str | os.PathLike[str],
    codebook: NDArray[np.floating],
    indices: dict[str, NDArray[Any]],
    float64: dict[str, bool],
    mixture: Mixture | None,
) -> ModelFile:
    """Write a file, exactly at ``path``, complete or not at all; return what it holds.

    ``codebook`` is 1-D, float32 or float64 and finite (checked by the caller);
    ``indices`` are integer arrays below its size (checked here by the coder).
    """
    k = int(codebook.size)
    if k > MAX_CODEBOOK:
        msg = f"the codebook may hold at most {MAX_CODEBOOK} values, got {k}"
        raise ValueError(msg)
    names = list(indices)
    shapes = [tuple(int(d) for d in a.shape) for a in indices.values()]
    _check_layout(names, shapes)
    width = np.uint8 if k <= 256 else np.uint16 if k <= 65_536 else np.uint32
    flat: list[NDArray[np.unsignedinteger]] = [
        np.ascontiguousarray(a.reshape(-1), dtype=width) for a in indices.values()
    ]
    header = Header(codebook, names, shapes, [float64[n] for n in names], mixture)
    head, codebook_bytes = _encode_header(header)
    n_names = sum(len(n.encode()) for n in names)
    if len(names) > LAYERS_PER_BYTE * len(head) + 64 or n_names > (
        NAME_BYTES_PER_BYTE * len(head) + MAX_NAME_BYTES
    ):  # a reader would refuse the header: it bounds both per byte
        msg = (
            f"{len(names)} layers with {n_names} bytes of names code to {len(head)} header "
            "bytes, more than a reader accepts: give the layers less repetitive names"
        )
        raise ValueError(msg)
    data, ends = _core.encode_layers(flat, [_matrix(s) for s in shapes], k)
    prefix = MAGIC + bytes([VERSION]) + _varint(len(head)) + head
    blob = b"".join(
        [
            prefix,
            zlib.crc32(prefix).to_bytes(4, "little"),
            data,
            zlib.crc32(data).to_bytes(4, "little"),
        ]
    )
    replace_atomically(path, lambda tmp: tmp.write_bytes(blob))
    return ModelFile(
        codebook=codebook,
        indices={n: f.reshape(s) for n, f, s in zip(names, flat, shapes)},
        dtypes={n: np.dtype(np.float64 if float64[n] else np.float32) for n in names},
        mixture=mixture,
        file_bytes=len(blob),
        codebook_bytes=codebook_bytes,
        layer_bytes={n: e - s for n, s, e in zip(names, [0, *ends], ends)},
    )


def _read_varint(raw: bytes | bytearray, at: int) -> tuple[int, int, bool]:
    """The LEB128 number at ``raw[at:]`` (at most 5 bytes, as ``_varint`` writes them).

    Returns the value, where it ends, and whether it ended within 5 bytes.
    """
    value = 0
    for shift in range(0, 35, 7):
        value |= (raw[at] & 127) << shift
        at += 1
        if raw[at - 1] < 128:
            return value, at, True
    return value, at, False


def _header_section(raw: bytes, where: str) -> tuple[bytes, int]:
    """The header stream's bytes and where the layer data starts, the checksum checked."""
    if len(raw) < 13 or raw[:3] != MAGIC:
        msg = f"{where}: not a softshare model file (it does not start with {MAGIC!r})"
        raise ValueError(msg)
    if raw[3] != VERSION:
        msg = f"{where}: format version {raw[3]} is not supported (this softshare reads {VERSION})"
        raise ValueError(msg)
    length, at, ended = _read_varint(raw, 4)
    if not ended or at + length + 8 > len(raw):
        msg = (
            f"{where}: the header's length does not fit in the file's {len(raw)} bytes (truncated?)"
        )
        raise ValueError(msg)
    end = at + length
    if zlib.crc32(raw[:end]) != int.from_bytes(raw[end : end + 4], "little"):
        msg = f"{where}: the header's checksum does not match (the file is corrupt)"
        raise ValueError(msg)
    return raw[at:end], end + 4


def read_model(path: str | os.PathLike[str]) -> ModelFile:
    """Read and check a file: a ValueError says what is wrong with it (or over which limit)."""
    if Path(path).exists() and not Path(path).is_file():  # a device, a pipe: never read
        msg = f"{os.fspath(path)}: not a regular file"
        raise ValueError(msg)
    return parse_model(Path(path).read_bytes(), os.fspath(path))


def parse_model(raw: bytes, where: str) -> ModelFile:
    """:func:`read_model` on a file's bytes; ``where`` names it in errors."""
    head, start = _header_section(raw, where)
    try:
        h = _decode_header(head)
    except ValueError as e:
        msg = f"{where}: {e}"
        raise ValueError(msg) from None
    for name, shape in zip(h.names, h.shapes):
        if math.prod(d for d in shape if d) > MAX_DIM:  # empty or not: no size past 2^48
            msg = f"{where}: layer {name!r} has shape {shape}: over {MAX_DIM} values"
            raise ValueError(msg)
    declared = sum(math.prod(s) * (8 if f else 4) for s, f in zip(h.shapes, h.float64))
    if declared > MAX_BYTES or declared > max(FREE_BYTES, MAX_RATIO * len(raw)):
        msg = (
            f"{where}: declares {declared} bytes of weights in {len(raw)} bytes of file: over "
            f"{MAX_BYTES} or {MAX_RATIO}x its size (a decompression bomb?)"
        )
        raise ValueError(msg)
    data = raw[start:-4]
    if zlib.crc32(data) != int.from_bytes(raw[-4:], "little"):
        msg = f"{where}: the layer data's checksum does not match (the file is corrupt)"
        raise ValueError(msg)
    k = int(h.codebook.size)
    try:
        flat, ends = _core.decode_layers(data, [_matrix(s) for s in h.shapes], k)
    except ValueError as e:
        msg = f"{where}: {e}"
        raise ValueError(msg) from None
    if len(data) - (ends[-1] if ends else 0) > 1:
        msg = f"{where}: the layer data holds {len(data) - ends[-1]} bytes beyond its values"
        raise ValueError(msg)
    return ModelFile(
        codebook=h.codebook,
        indices={n: f.reshape(s) for n, f, s in zip(h.names, flat, h.shapes)},
        dtypes={n: np.dtype(np.float64 if f else np.float32) for n, f in zip(h.names, h.float64)},
        mixture=h.mixture,
        file_bytes=len(raw),
        codebook_bytes=h.codebook_bytes,
        layer_bytes={n: e - s for n, s, e in zip(h.names, [0, *ends], ends)},
    )
