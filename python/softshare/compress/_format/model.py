"""The compressed model file: its layout, checksums and limits, written and read (docs/format.md).

``MAGIC`` and the version byte, the header stream's length, the header stream
(:mod:`softshare.compress._format.header`), its CRC-32, the layer stream (the native
entropy coder, ``_core.encode_layers``: in versions 3 and 4 segments coded on every
thread, version 4's large parts by rANS) and its CRC-32. A reader checks the
header's checksum before decoding it, every declared size against the limits
and the file's size before allocating anything, and the layers' checksum
before decoding them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import _core
from ..._recipe_inputs import index_dtype
from .._network import QuantizedNetwork
from .._passes import value_counts
from .atomic import replace_atomically
from .header import (
    EXACT_DTYPES,
    LAYERS_PER_BYTE,
    MAX_CODEBOOK,
    MAX_DIM,
    MAX_NAME_BYTES,
    MAX_NDIM,
    NAME_BYTES_PER_BYTE,
    Header,
)
from .header import decode_header as _decode_header
from .header import encode_header as _encode_header

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import NDArray

    from ..._mixture import Mixture

MAGIC = b"SWS"
VERSION = 4  # the format version written; versions 1 to 3 are read too
VERSIONS = (1, 2, 3, 4)
#: Limits on the weights a file may declare (bytes of the float arrays it decodes to).
MAX_BYTES = 1 << 34
MAX_RATIO = 4096  # declared bytes per byte of file ...
FREE_BYTES = 1 << 26  # ... once they exceed this


@dataclass(frozen=True)
class ModelFile:
    """A compressed model file's contents, and where its bytes go.

    Attributes
    ----------
    network : QuantizedNetwork
        What the file holds: the codebook, every layer's indices and dtype, the
        mixture when kept, and the tensors stored exactly.
    file_bytes, codebook_bytes : int
        Bytes of the whole file, and of the codebook within its header.
    layer_bytes : dict of str to int
        Bytes of every quantized layer's coded data.
    exact_bytes : dict of str to int
        Bytes of every tensor stored exactly.
    """

    network: QuantizedNetwork
    file_bytes: int
    codebook_bytes: int
    layer_bytes: dict[str, int]
    exact_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def codebook(self) -> NDArray[np.floating]:
        """The distinct values (float32, or float64 when a layer is)."""
        return self.network.codebook

    @property
    def indices(self) -> dict[str, NDArray[np.unsignedinteger]]:
        """Every layer's codebook indices, in its shape."""
        return self.network.indices

    @property
    def dtypes(self) -> dict[str, np.dtype[Any]]:
        """Every layer's dtype (float32 or float64)."""
        return self.network.dtypes

    @property
    def mixture(self) -> Mixture | None:
        """The mixture the file was quantized with, when it keeps one."""
        return self.network.mixture

    @property
    def header_bytes(self) -> int:
        """Bytes of everything but the layers' data, the exact tensors and the codebook."""
        data = sum(self.layer_bytes.values()) + sum(self.exact_bytes.values())
        return self.file_bytes - self.codebook_bytes - data

    @property
    def n_weights(self) -> int:
        """Quantized weights in all layers."""
        return self.network.n_weights

    @property
    def ratio(self) -> float:
        """What the network takes uncompressed (float32 weights, exact tensors as they are) / the file."""
        return (4 * self.n_weights + sum(self.exact_bytes.values())) / self.file_bytes

    def layers(self) -> dict[str, NDArray[Any]]:
        """Every layer's quantized weights, in its dtype and shape, then the exact tensors."""
        return self.network.layers()

    def to_markdown(self) -> str:
        """The per-layer table: weights, non-zero %, distinct values, bytes, ratio to float32."""
        rows = [
            "| layer | shape | dtype | weights | non-zero % | distinct values | bytes | ratio |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        zero = self.network.zero_index
        for name, idx in self.indices.items():
            values = np.bincount(idx.reshape(-1), minlength=self.codebook.size)
            nz = idx.size - (int(values[zero]) if zero < values.size else 0)
            size = self.layer_bytes[name]
            ratio = f"{4 * idx.size / size:.1f}x" if size else "-"
            rows.append(
                f"| {name} | {tuple(idx.shape)} | {self.dtypes[name]} | {idx.size} | "
                f"{100 * nz / max(idx.size, 1):.2f} | {np.count_nonzero(values)} | {size} | "
                f"{ratio} |"
            )
        for name, arr in self.network.exact.items():
            rows.append(
                f"| {name} (exact) | {tuple(arr.shape)} | {arr.dtype} | {arr.size} | - | - | "
                f"{self.exact_bytes[name]} | 1.0x |"
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


def write_model(path: str | os.PathLike[str], network: QuantizedNetwork) -> ModelFile:
    """Write a network to a file, exactly at ``path``, complete or not at all; return what it holds.

    Format version 4 (versions 1 to 3 are read only). The network's codebook
    is finite in every layer's dtype (its maker checked); its indices are
    checked here by the coder.
    """
    codebook, indices = network.codebook, network.indices
    k = int(codebook.size)
    if k > MAX_CODEBOOK:
        msg = f"the codebook may hold at most {MAX_CODEBOOK} values, got {k}"
        raise ValueError(msg)
    names = list(indices)
    shapes = [tuple(int(d) for d in a.shape) for a in indices.values()]
    exact = {n: np.asarray(a) for n, a in network.exact.items()}
    for name, arr in exact.items():
        if arr.dtype.name not in EXACT_DTYPES:
            msg = f"tensor {name!r} has dtype {arr.dtype}: a file stores {EXACT_DTYPES} exactly"
            raise TypeError(msg)
    _check_layout([*names, *exact], [*shapes, *(a.shape for a in exact.values())])
    width = index_dtype(k)
    flat: list[NDArray[np.unsignedinteger]] = [
        np.ascontiguousarray(a.reshape(-1), dtype=width) for a in indices.values()
    ]
    header = Header(
        codebook,
        names,
        shapes,
        [network.dtypes[n] == np.float64 for n in names],
        network.mixture,
        exact_names=list(exact),
        exact_shapes=[tuple(int(d) for d in a.shape) for a in exact.values()],
        exact_dtypes=[a.dtype.name for a in exact.values()],
    )
    version = max(VERSION, 2) if exact else VERSION  # tests set VERSION to 1-3: older formats
    head, codebook_bytes = _encode_header(header, version)
    n_names = sum(len(n.encode()) for n in [*names, *exact])
    if len(names) + len(exact) > LAYERS_PER_BYTE * len(head) + 64 or n_names > (
        NAME_BYTES_PER_BYTE * len(head) + MAX_NAME_BYTES
    ):  # a reader would refuse the header: it bounds both per byte
        msg = (
            f"{len(names) + len(exact)} layers with {n_names} bytes of names code to {len(head)} "
            "header bytes, more than a reader accepts: give the layers less repetitive names"
        )
        raise ValueError(msg)
    data, ends = _core.encode_layers(flat, [_matrix(s) for s in shapes], k, version)
    raw = [
        np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in exact.values()
    ]
    prefix = MAGIC + bytes([version]) + _varint(len(head)) + head
    body = b"".join([data, *raw])
    blob = b"".join(
        [
            prefix,
            zlib.crc32(prefix).to_bytes(4, "little"),
            body,
            zlib.crc32(body).to_bytes(4, "little"),
        ]
    )
    replace_atomically(path, lambda tmp: tmp.write_bytes(blob))
    stored = dataclasses.replace(
        network, indices={n: f.reshape(s) for n, f, s in zip(names, flat, shapes)}, exact=exact
    )
    return ModelFile(
        network=stored,
        file_bytes=len(blob),
        codebook_bytes=codebook_bytes,
        layer_bytes={n: e - s for n, s, e in zip(names, [0, *ends], ends)},
        exact_bytes={n: len(r) for n, r in zip(exact, raw)},
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


def _check_start(raw: bytes, where: str) -> int:
    """The format version of a file starting with ``raw``; a ValueError if it is not one."""
    if len(raw) < 4 or raw[:3] != MAGIC:
        msg = f"{where}: not a softshare model file (it does not start with {MAGIC!r})"
        raise ValueError(msg)
    if raw[3] not in VERSIONS:
        msg = f"{where}: format version {raw[3]} is not supported (this softshare reads 1 to {VERSION})"
        raise ValueError(msg)
    return raw[3]


def _header_section(raw: bytes, where: str) -> tuple[bytes, int]:
    """The header stream's bytes and where the layer data starts, the checksum checked."""
    _check_start(raw, where)
    if len(raw) < 13:
        msg = f"{where}: {len(raw)} bytes are too few for a softshare model file (truncated?)"
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
    """Read and check a file: a ValueError says what is wrong with it (or over which limit).

    The magic bytes and the version are checked before the rest is read.
    """
    where = os.fspath(path)
    if Path(path).exists() and not Path(path).is_file():  # a device, a pipe: never read
        msg = f"{where}: not a regular file"
        raise ValueError(msg)
    with Path(path).open("rb") as f:
        _check_start(f.read(4), where)
        f.seek(0)
        raw = f.read()
    return parse_model(raw, where)


def parse_model(raw: bytes, where: str) -> ModelFile:
    """:func:`read_model` on a file's bytes; ``where`` names it in errors."""
    head, start = _header_section(raw, where)
    try:
        h = _decode_header(head, raw[3])
    except ValueError as e:
        msg = f"{where}: {e}"
        raise ValueError(msg) from None
    for name, shape in [*zip(h.names, h.shapes), *zip(h.exact_names, h.exact_shapes)]:
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
    sizes = [math.prod(s) * np.dtype(d).itemsize for s, d in zip(h.exact_shapes, h.exact_dtypes)]
    if start + sum(sizes) + 4 > len(raw):
        msg = f"{where}: its exact tensors take {sum(sizes)} bytes, more than the file holds"
        raise ValueError(msg)
    body = raw[start:-4]
    if zlib.crc32(body) != int.from_bytes(raw[-4:], "little"):
        msg = f"{where}: the layer data's checksum does not match (the file is corrupt)"
        raise ValueError(msg)
    data = body[: len(body) - sum(sizes)]
    k = int(h.codebook.size)
    try:
        flat, ends, counts = _core.decode_layers(
            data, [_matrix(s) for s in h.shapes], k, raw[3], 0, True
        )
    except ValueError as e:
        msg = f"{where}: {e}"
        raise ValueError(msg) from None
    if raw[3] < 3 and len(data) - (ends[-1] if ends else 0) > 1:  # versions 3, 4: per segment
        msg = f"{where}: the layer data holds {len(data) - ends[-1]} bytes beyond its values"
        raise ValueError(msg)
    exact, at = {}, len(data)
    for name, shape, dtype, size in zip(h.exact_names, h.exact_shapes, h.exact_dtypes, sizes):
        little = np.dtype(dtype).newbyteorder("<")
        exact[name] = np.frombuffer(body[at : at + size], dtype=little).astype(dtype).reshape(shape)
        at += size
    indices = {n: f.reshape(s) for n, f, s in zip(h.names, flat, h.shapes)}
    network = QuantizedNetwork(
        codebook=h.codebook,
        indices=indices,
        dtypes={n: np.dtype(np.float64 if f else np.float32) for n, f in zip(h.names, h.float64)},
        counts=tuple(
            int(c) for c in (value_counts(indices.values(), k) if counts is None else counts)
        ),
        mixture=h.mixture,
        exact=exact,
    )
    return ModelFile(
        network=network,
        file_bytes=len(raw),
        codebook_bytes=h.codebook_bytes,
        layer_bytes={n: e - s for n, s, e in zip(h.names, [0, *ends], ends)},
        exact_bytes=dict(zip(h.exact_names, sizes)),
    )
