"""Reading ``.npz`` archives safely: limits and headers checked before any data is read."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from numpy.typing import NDArray

    Headers = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]

__all__ = ["MAX_BYTES", "MAX_MEMBERS", "read_npz"]

#: Limits on a file :func:`load_quantized` reads (a ZIP64 end record is refused too).
MAX_MEMBERS = 65_000
MAX_BYTES = 1 << 32  # declared uncompressed bytes, all members together
_MAX_RATIO = 64  # declared bytes per byte of file ...
_FREE_BYTES = 1 << 26  # ... once they exceed this (any ratio of a small file is harmless)


def _npy_header(f: Any, where: str, size: int) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype a ``.npy`` stream of ``size`` bytes declares, its data not read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}[version]
        shape, _, dtype = read(f)
    except (KeyError, ValueError) as e:
        msg = f"{where}: not a readable .npy member ({e})"
        raise ValueError(msg) from e
    if dtype.hasobject:
        msg = f"{where}: holds Python objects, which are never read"
        raise ValueError(msg)
    if int(f.tell()) + math.prod(shape) * dtype.itemsize != size:
        msg = f"{where}: declares {shape} {dtype}, which is not its size"
        raise ValueError(msg)
    return tuple(shape), dtype


def _archive(fh: Any, where: str, max_members: int, max_bytes: int) -> zipfile.ZipFile:
    """The zip archive in ``fh``, its directory checked against the limits first."""
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - 22 - 65_535))
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")  # the end record, read before zipfile reads the directory
    problem, zf = "", None
    if at < 0 or len(tail) - at < 22:
        problem = "not an .npz archive (a zip file of .npy arrays)"
    elif at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
        problem = "a ZIP64 archive (over 65,535 members or 4 GiB) is not read"
    elif int.from_bytes(tail[at + 10 : at + 12], "little") > max_members:
        problem = f"more than {max_members} members"
    try:
        zf = None if problem else zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, NotImplementedError) as e:
        problem = f"not an .npz archive ({e})"
    infos = zf.infolist() if zf else []
    names = {i.filename for i in infos if i.filename.endswith(".npy") and not i.flag_bits & 1}
    declared = sum(i.file_size for i in infos)
    if len(names) != len(infos):
        problem = "its members must be distinct, unencrypted .npy arrays"
    elif declared > max_bytes or declared > max(_MAX_RATIO * size, _FREE_BYTES):
        problem = f"{declared} bytes from {size}: over {max_bytes} or {_MAX_RATIO}x (a zip bomb)"
    if problem or zf is None:
        msg = f"{where}: {problem}"
        raise ValueError(msg)
    return zf


def read_npz(
    path: str | os.PathLike[str],
    *,
    max_members: int,
    max_bytes: int,
    check: Callable[[Headers], None] | None = None,
) -> dict[str, NDArray[Any]]:
    """The arrays of an ``.npz`` file, every limit checked before any data is read.

    ``check`` sees each member's shape and dtype (from the headers) first, and
    may raise. A ValueError says what is wrong with the file or over a limit.
    """
    where = os.fspath(path)
    with open(path, "rb") as fh, _archive(fh, where, max_members, max_bytes) as zf:
        try:
            headers: Headers = {}
            for info in zf.infolist():
                with zf.open(info) as f:
                    where_f = f"{where}: member {info.filename!r}"
                    headers[info.filename[:-4]] = _npy_header(f, where_f, info.file_size)
            if check is not None:
                check(headers)
            out = {}
            for info in zf.infolist():
                with zf.open(info) as f:
                    try:
                        out[info.filename[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
                    except ValueError as e:  # data ending early, its CRC matching
                        raise zipfile.BadZipFile(e) from e
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as e:
            msg = f"{where}: a corrupt .npz archive ({e})"
            raise ValueError(msg) from e
    return out
