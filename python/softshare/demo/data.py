"""The demo's data: scikit-learn's 8x8 digits or MNIST (checked), split three ways."""

from __future__ import annotations

import functools
import gzip
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..compress import read_npz

_SIDE = 28  # MNIST's images: 28 x 28 pixels
_MAX_BYTES = 1 << 28  # per IDX file or .npz (MNIST's largest, its training images: 47 MB)
_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass
class Data:
    """Images in [0, 1] (N, side, side) and int64 labels, in three splits.

    Attributes
    ----------
    x_train, y_train, x_val, y_val, x_test, y_test : ndarray
        The splits; validation is carved out of the training data.
    side : int
        Image side in pixels (8 for digits, 28 for MNIST).
    name : str
        "digits" or "mnist".
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    side: int
    name: str


def _check_shape(where: str, key: str, shape: tuple[int, ...]) -> None:
    """Images are (n, 28, 28), labels (n,); a ValueError naming ``where`` otherwise."""
    images = key.startswith("x")
    ok = len(shape) == 3 and shape[1:] == (_SIDE, _SIDE) if images else len(shape) == 1
    if ok:
        return
    want = f"(n, {_SIDE}, {_SIDE}) (n images of {_SIDE}x{_SIDE} pixels)" if images else "(n,)"
    msg = f"{where}: {key} must have shape {want}; found {shape}"
    raise ValueError(msg)


def _read_idx(path: Path, key: str) -> np.ndarray:
    """One IDX file of unsigned bytes (optionally gzipped), its header checked against its size.

    At most the declared size (itself capped) plus one byte is read, so a
    gzip bomb costs no more than an honest file.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            ndim = head[3] if len(head) == 4 and head[:3] == b"\0\0\x08" else 0
            dims = f.read(4 * ndim)
            shape = tuple(int.from_bytes(dims[i : i + 4], "big") for i in range(0, len(dims), 4))
            if ndim == 0 or len(dims) != 4 * ndim:
                msg = f"{path}: not an IDX file of unsigned bytes (a header cut short or wrong)"
                raise ValueError(msg)
            _check_shape(str(path), key, shape)
            size = math.prod(shape)
            if size > _MAX_BYTES:
                msg = f"{path}: declares {shape}, {size} bytes (at most {_MAX_BYTES} are read)"
                raise ValueError(msg)
            data, extra = f.read(size), f.read(1)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        msg = f"{path}: not a readable gzip file ({e})"
        raise ValueError(msg) from e
    if len(data) != size or extra:
        held = f"{len(data)}{' and more' if extra else ''}"
        msg = f"{path}: the header declares {shape}, {size} bytes of data; the file holds {held}"
        raise ValueError(msg)
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _check_npz(where: str, headers: dict[str, tuple[tuple[int, ...], np.dtype[Any]]]) -> None:
    """The four MNIST arrays, of the right shapes and dtypes, judged from their headers."""
    if set(headers) != set(_IDX_FILES):
        msg = f"{where}: an MNIST .npz holds exactly {sorted(_IDX_FILES)}; found {sorted(headers)}"
        raise ValueError(msg)
    for key, (shape, dtype) in headers.items():
        _check_shape(where, key, shape)
        if (dtype != np.uint8) if key.startswith("x") else (dtype.kind not in "iu"):
            want = "uint8 pixels" if key.startswith("x") else "integer labels"
            msg = f"{where}: {key} must hold {want}; found {dtype}"
            raise ValueError(msg)


def _check_splits(arrays: dict[str, np.ndarray], where: dict[str, str]) -> None:
    """As many labels as images per split, every label a digit, and enough of them."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        wx, wy = where[f"x_{split}"], where[f"y_{split}"]
        if len(x) != len(y):
            msg = f"{wx} holds {len(x)} images but {wy} holds {len(y)} labels"
            raise ValueError(msg)
        bad = np.flatnonzero((y < 0) | (y > 9))
        if bad.size:
            msg = f"{wy}: label {y[bad[0]]} at position {bad[0]} is not a digit 0..9"
            raise ValueError(msg)
    if len(arrays["y_train"]) < 2 or len(arrays["y_test"]) < 1:
        msg = f"{where['x_train']}: the demo needs at least 2 training images and 1 test image"
        raise ValueError(msg)


def load_mnist(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST from ``mnist.npz`` (keys x_train, y_train, x_test, y_test) or a folder of IDX files.

    Everything is checked before it is returned: images (n, 28, 28) of uint8,
    labels (n,) integers in 0..9, as many labels as images per split; an IDX
    header against the file's size (no truncation, no extra bytes); an
    ``.npz`` holding exactly the four arrays (read without pickles, its
    shapes and dtypes judged from their headers before any data is read). At
    most 256 MiB are read per IDX file or ``.npz`` (and, above 64 MiB, 64
    bytes per byte of ``.npz``), so a zip or gzip bomb is refused.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file, or a folder holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).

    Returns
    -------
    (x_train, y_train, x_test, y_test)
        The arrays as stored (uint8 for IDX files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist, or is a folder missing one of the IDX files.
    ValueError
        If ``path`` is neither an ``.npz`` archive nor a folder, or anything
        above does not hold (the message names the file and what is wrong).
    """
    p = Path(path)
    if p.is_dir():
        arrays, where = {}, {}
        for key, stem in _IDX_FILES.items():
            cands = [p / stem, p / (stem + ".gz"), p / stem.replace("-idx", ".idx")]
            hit = next((c for c in cands if c.is_file()), None)
            if hit is None:
                msg = f"{p}: no {stem}[.gz] (MNIST in IDX form) and not an .npz file"
                raise FileNotFoundError(msg)
            arrays[key], where[key] = _read_idx(hit, key), str(hit)
    elif not p.exists():
        msg = f"{p}: no such file or folder (MNIST as an .npz file or a folder of IDX files)"
        raise FileNotFoundError(msg)
    elif not zipfile.is_zipfile(p):
        msg = f"{p}: not an .npz archive or a folder of IDX files"
        raise ValueError(msg)
    else:
        check = functools.partial(_check_npz, str(p))
        arrays = read_npz(p, max_members=len(_IDX_FILES), max_bytes=_MAX_BYTES, check=check)
        where = {key: f"{p}[{key}]" for key in arrays}
    _check_splits(arrays, where)
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def load_data(
    path: str | None, seed: int, *, val_fraction: float = 0.2, max_val: int = 5000
) -> Data:
    """The demo's data, with a validation split drawn from the training data.

    Parameters
    ----------
    path : str or None
        MNIST (as :func:`load_mnist` reads it); None for scikit-learn's digits,
        with a fixed test set of 360 images.
    seed : int
        Seed of the train/validation split.
    val_fraction : float, default 0.2
        Share of the training data held out for validation...
    max_val : int, default 5000
        ...but at most this many images (MNIST: 55,000 training, 5,000 validation).

    Returns
    -------
    Data
        Images scaled to [0, 1] as float32, labels as int64.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`load_mnist`; ValueError if ``val_fraction`` is not in (0, 1)
        or ``max_val`` is below 1.
    """
    if not 0.0 < val_fraction < 1.0:
        msg = f"val_fraction must be in (0, 1), got {val_fraction}"
        raise ValueError(msg)
    if max_val < 1:
        msg = f"max_val must be at least 1, got {max_val}"
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    if path is None:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(y))  # fixed test set of 360
        test, rest = order[:360], order[360:]
        x_test, y_test, x_rest, y_rest = x[test], y[test], x[rest], y[rest]
        side, name = 8, "digits"
    else:
        x_tr, y_tr, x_test, y_test = load_mnist(path)
        x_rest = np.asarray(x_tr, dtype=np.float32) / 255.0
        x_test = np.asarray(x_test, dtype=np.float32) / 255.0
        y_rest, y_test = np.asarray(y_tr, np.int64), np.asarray(y_test, np.int64)
        side, name = _SIDE, "mnist"
    perm = rng.permutation(len(y_rest))
    n_val = min(max(1, round(val_fraction * len(perm))), max_val, len(perm) - 1)  # both non-empty
    val, train = perm[:n_val], perm[n_val:]
    return Data(x_rest[train], y_rest[train], x_rest[val], y_rest[val], x_test, y_test, side, name)
