"""Input checks shared by the native penalty and its NumPy reference."""

from __future__ import annotations

import math
import numbers
import operator
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from ._mixture import Mixture

if TYPE_CHECKING:
    from collections.abc import Sequence

    from numpy.typing import ArrayLike, NDArray

#: What ``penalty`` accepts as weights: one array, or a list/tuple of arrays.
WeightsLike = Union["ArrayLike", "Sequence[ArrayLike]"]

_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Weights:
    """The caller's weights as flat, contiguous, native float32/float64 arrays.

    ``flat[k]`` is a view of the caller's k-th array whenever that array was
    already contiguous, native and float32/float64; otherwise it is a converted
    copy of that one array (never a concatenation of all of them).
    """

    flat: list[NDArray[np.floating]]
    shapes: list[tuple[int, ...]]
    is_sequence: bool

    @property
    def names(self) -> list[str]:
        """How messages name the arrays: ``weights[k]`` in a list, else ``weights``."""
        if self.is_sequence:
            return [f"weights[{k}]" for k in range(len(self.flat))]
        return ["weights"]

    @property
    def n(self) -> int:
        """Total number of weights."""
        return sum(int(a.size) for a in self.flat)

    def unflatten(
        self, arrays: list[NDArray[np.floating]]
    ) -> NDArray[np.floating] | list[NDArray[np.floating]]:
        """Give per-weight outputs the caller's shapes, as one array or a list."""
        shaped = [a.reshape(shape) for a, shape in zip(arrays, self.shapes)]
        return shaped if self.is_sequence else shaped[0]

    def unflatten_gamma(
        self, arrays: list[NDArray[np.floating]]
    ) -> NDArray[np.floating] | list[NDArray[np.floating]]:
        """Responsibilities as (n_i, M) per array, as one array or a list."""
        return list(arrays) if self.is_sequence else arrays[0]

    def raise_if_not_finite(self) -> None:
        """Raise ``ValueError`` naming the first array and index holding NaN/inf."""
        for arr, shape, name in zip(self.flat, self.shapes, self.names):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                flat_index = int(bad[0])
                index = tuple(int(i) for i in np.unravel_index(flat_index, shape)) if shape else ()
                raise not_finite_error(name, arr[flat_index], index)


def not_finite_error(name: str, value: object, index: tuple[int, ...]) -> ValueError:
    """The error for a non-finite weight: the array's name, the value and its index."""
    if index:
        return ValueError(f"{name} must be finite: found {value} at index {index}")
    return ValueError(f"{name} must be finite: got {value}")


def as_weights(weights: WeightsLike) -> Weights:
    """Check and flatten ``weights`` (an array, or a list/tuple of arrays).

    float32 and float64 arrays are used as they are (a copy is made only for a
    non-contiguous or byte-swapped array); other real dtypes (integers, bool,
    float16, long double) become float64. Complex, object, string and other
    non-real dtypes raise ``TypeError``.
    """
    is_sequence = isinstance(weights, (list, tuple))
    items = weights if is_sequence else (weights,)
    flat: list[NDArray[np.floating]] = []
    shapes: list[tuple[int, ...]] = []
    for k, item in enumerate(items):  # type: ignore[arg-type]
        if (
            type(item) is np.ndarray and item.dtype in _KERNEL_DTYPES and item.flags.c_contiguous
        ):  # the common case, kept cheap: a flat view, nothing checked twice
            flat.append(item.reshape(-1))
            shapes.append(item.shape)
            continue
        name = f"weights[{k}]" if is_sequence else "weights"
        try:
            arr = np.asarray(item)
        except (TypeError, ValueError) as err:
            msg = f"{name} could not be read as a numeric array: {err}"
            raise TypeError(msg) from err
        if arr.dtype.kind not in "biuf":
            msg = f"{name} must hold real numbers, got an array of dtype {arr.dtype}"
            raise TypeError(msg)
        native = arr.dtype.newbyteorder("=")
        target = native if native in _KERNEL_DTYPES else np.dtype(np.float64)
        flat.append(np.ascontiguousarray(arr, dtype=target).reshape(-1))
        shapes.append(arr.shape)
    return Weights(flat, shapes, is_sequence)


def as_out(out: object, weights: Weights) -> list[NDArray[np.floating]]:
    """Check ``out=`` against the weights; return flat views of its arrays.

    ``out`` mirrors ``weights``: one array for one array, a list/tuple of
    arrays (one per weights array) for a list/tuple. Each must be an ndarray
    of the gradient's dtype (the weights' kernel dtype), the weights' shape,
    C-contiguous and writeable; the kernel checks that none overlaps the
    weights or another ``out`` (``ValueError``).
    """
    if weights.is_sequence:
        if not isinstance(out, (list, tuple)) or len(out) != len(weights.flat):
            msg = (
                f"out must be a list or tuple of {len(weights.flat)} arrays, one per weights array"
            )
            raise ValueError(msg)
        items = list(out)
    else:
        items = [out]
    flat = []
    for k, (arr, w, shape, name) in enumerate(
        zip(items, weights.flat, weights.shapes, weights.names)
    ):
        label = f"out[{k}]" if weights.is_sequence else "out"
        if not isinstance(arr, np.ndarray):
            msg = f"{label} must be a numpy.ndarray, got {type(arr).__name__}"
            raise TypeError(msg)
        if arr.dtype != w.dtype:
            msg = f"{label} must have dtype {w.dtype} (the gradient of {name}), got {arr.dtype}"
            raise TypeError(msg)
        if arr.shape != shape:
            msg = f"{label} must have the shape of {name}, {shape}, got {arr.shape}"
            raise ValueError(msg)
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            msg = f"{label} must be C-contiguous and writeable"
            raise ValueError(msg)
        flat.append(arr.reshape(-1))
    return flat


def as_mixture(mixture: object) -> Mixture:
    """Check that ``mixture`` is a :class:`Mixture`."""
    if not isinstance(mixture, Mixture):
        msg = (
            "mixture must be a softshare.Mixture (build one with "
            f"softshare.Mixture(mu, log_var, logit)), got {type(mixture).__name__}"
        )
        raise TypeError(msg)
    return mixture


def as_lam(lam: object) -> float:
    """Check the penalty strength: a finite real number >= 0."""
    if type(lam) is float and 0.0 <= lam < math.inf:  # the common case, without the ABC check
        return lam
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        msg = f"lam must be a real number, got {type(lam).__name__}"
        raise TypeError(msg)
    value = float(lam)
    if not math.isfinite(value) or value < 0:
        msg = f"lam must be finite and >= 0, got {value}"
        raise ValueError(msg)
    return value


def cpu_count() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


#: The largest thread request passed on (a C int); any larger one means as many.
_MAX_REQUEST = 2**31 - 1


def thread_request(n_threads: object) -> int:
    """Check ``n_threads`` and encode it for the kernel, which resolves it.

    None -> 0 (OpenMP's default), -1 -> -1 (all cores), k >= 1 -> k (at most
    2**31 - 1). The kernel then runs at most :func:`cpu_count` threads and one
    per ``_core.block_size`` weights, asking for the cores only when a pass
    has work for two (the resolution of :func:`as_n_threads`, done there).

    Raises
    ------
    ValueError
        If ``n_threads`` is not None, -1 or a positive int (bools included).
    """
    if n_threads is None:
        return 0
    if isinstance(n_threads, (bool, np.bool_)):
        raise _bad_n_threads(n_threads)  # the API: ValueError for any bad n_threads
    try:
        k = operator.index(n_threads)  # type: ignore[arg-type]
    except TypeError:
        raise _bad_n_threads(n_threads) from None
    if k == -1:
        return -1
    if k < 1:
        raise _bad_n_threads(n_threads)
    return min(k, _MAX_REQUEST)


def as_n_threads(n_threads: object, default: int) -> int:
    """Resolve ``n_threads`` to the threads the kernel runs on.

    None -> ``default`` (OpenMP's), -1 -> all cores, k >= 1 -> k; whatever the
    choice, at most :func:`cpu_count` (more threads than cores never speed up
    the compute-bound pass, and the result is bit-identical for every count).

    Raises
    ------
    ValueError
        If ``n_threads`` is not None, -1 or a positive int (bools included).
    """
    k = thread_request(n_threads)
    if k == -1:
        return cpu_count()
    if k == 0:
        k = default
    return 1 if k <= 1 else min(k, cpu_count())


def _bad_n_threads(n_threads: object) -> ValueError:
    return ValueError(f"n_threads must be None, -1 or a positive int, got {n_threads!r}")
