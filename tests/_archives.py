"""Crafted .npz archives for the file tests: zero arrays of any size, a zip entry that lies.

Shared by format/test_files.py (the quantized export) and demo/test_data.py (the MNIST loaders).
"""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path


def zeros_npz(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "|u1") -> Path:
    """An .npz of zero arrays written in chunks (a zip bomb costs nothing to make)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, shape in shapes.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                header = {"descr": dtype, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                left = int(np.prod(shape)) * np.dtype(dtype).itemsize
                while left:
                    f.write(bytes(min(left, 1 << 22)))
                    left -= min(left, 1 << 22)
    return path


def declare(path: Path, member: str, size: int) -> Path:
    """Make the zip directory declare ``size`` bytes for ``member`` (its data unchanged)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # the first directory entry
    while True:
        n_name, n_extra, n_comment = (
            int.from_bytes(raw[at + i : at + i + 2], "little") for i in (28, 30, 32)
        )
        if raw[at + 46 : at + 46 + n_name] == member.encode():
            raw[at + 24 : at + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(raw))
            return path
        at += 46 + n_name + n_extra + n_comment
