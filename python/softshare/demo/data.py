"""The demo's data: scikit-learn's 8x8 digits or MNIST, split into train, validation and test."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


def _read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (optionally gzipped) as an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        msg = f"{path}: not an IDX file of unsigned bytes"
        raise ValueError(msg)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST from ``mnist.npz`` (keys x_train, y_train, x_test, y_test) or a folder of IDX files.

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
        If ``path`` is a folder missing one of the IDX files.
    """
    p = Path(path)
    if p.is_file():
        with np.load(p) as z:
            return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    found = {}
    for key, stem in names.items():
        cands = [p / stem, p / (stem + ".gz"), p / stem.replace("-idx", ".idx")]
        hit = next((c for c in cands if c.exists()), None)
        if hit is None:
            msg = f"{p}: no {stem}[.gz] (MNIST in IDX form) and not an .npz file"
            raise FileNotFoundError(msg)
        found[key] = _read_idx(hit)
    return found["x_train"], found["y_train"], found["x_test"], found["y_test"]


def load_data(path: str | None, seed: int, *, val_fraction: float = 0.2) -> Data:
    """The demo's data, with a validation split drawn from the training data.

    Parameters
    ----------
    path : str or None
        MNIST (as :func:`load_mnist` reads it); None for scikit-learn's digits,
        with a fixed test set of 360 images.
    seed : int
        Seed of the train/validation split.
    val_fraction : float, default 0.2
        Share of the training data held out for validation.

    Returns
    -------
    Data
        Images scaled to [0, 1] as float32, labels as int64.
    """
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
        x_rest = (np.asarray(x_tr, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
        x_test = (np.asarray(x_test, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
        y_rest, y_test = np.asarray(y_tr, np.int64), np.asarray(y_test, np.int64)
        side, name = 28, "mnist"
    perm = rng.permutation(len(y_rest))
    n_val = max(1, round(val_fraction * len(perm)))
    val, train = perm[:n_val], perm[n_val:]
    return Data(x_rest[train], y_rest[train], x_rest[val], y_rest[val], x_test, y_test, side, name)
