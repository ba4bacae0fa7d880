from collections.abc import Sequence
from typing import Any, Literal, TypeAlias, TypeVar, overload

import numpy as np
from numpy.typing import NDArray

block_size: int

_R = TypeVar("_R")

#: What penalty returns: (sum_L, check, stats (3, M), grads, gammas or None,
#: (value, grad_mu, grad_sigma, grad_log_var, grad_logit) or None).
PassTuple: TypeAlias = tuple[
    float,
    float,
    NDArray[np.float64],
    list[NDArray[np.floating]],
    list[NDArray[np.floating]] | None,
    tuple[
        float,
        NDArray[np.float64],
        NDArray[np.float64],
        NDArray[np.float64],
        NDArray[np.float64],
    ]
    | None,
]

def penalty(
    weights: Sequence[NDArray[np.floating]],
    mu: NDArray[np.float64],
    log_var: NDArray[np.float64],
    logit: NDArray[np.float64],
    lam: float,
    n_threads: int,
    responsibilities: bool,
    grads_out: Sequence[NDArray[np.floating]] | None = None,
    accumulate: bool = False,
) -> PassTuple: ...
def penalty_array(
    weights: NDArray[Any],
    mu: NDArray[np.float64],
    log_var: NDArray[np.float64],
    logit: NDArray[np.float64],
    lam: float,
    n_threads: int,
    responsibilities: bool,
    result_type: type[_R],
    out: NDArray[Any] | None = None,
    accumulate: bool = False,
) -> _R | PassTuple | None: ...
def penalty_raw(
    segments: Sequence[tuple[int, int, int, bool]],
    mixture: tuple[int, int, int, int, bool],
    lam: float,
    n_threads: int,
    out: tuple[int, int, int, bool],
    accumulate: Sequence[bool] = ...,
) -> tuple[float | None, float, float, NDArray[np.float64]] | None: ...

# softshare.jax's XLA FFI handler (csrc/jax_ffi.cpp) as a PyCapsule.
def jax_penalty_handler() -> Any: ...
def has_openmp() -> bool: ...
def default_threads() -> int: ...
def simd_target() -> str: ...
def simd_targets() -> list[str]: ...
def set_simd_target(name: str) -> None: ...
def _vmath(fn: str, x: NDArray[np.floating], target: str) -> NDArray[np.floating]: ...
def _grouping(
    mu: NDArray[np.float64],
    log_var: NDArray[np.float64],
    logit: NDArray[np.float64],
    n_weights: int,
    f64: bool,
) -> tuple[bool, float, int]: ...

# ---- the compression recipe's per-weight passes (csrc/bind_recipe.cpp) ----
def assign(
    weights: Sequence[NDArray[np.floating]],
    mu: NDArray[np.float64],
    base: NDArray[np.float64],
    inv2var: NDArray[np.float64],
    out: Sequence[NDArray[np.integer]],
    n_threads: int,
    grouping: int = -1,
) -> NDArray[np.int64] | None: ...
def dequantize(
    indices: Sequence[NDArray[np.integer]],
    book: NDArray[np.floating],
    out: Sequence[NDArray[np.floating]],
    n_threads: int,
) -> None: ...
def offset_sums(
    weights: Sequence[NDArray[np.floating]],
    indices: Sequence[NDArray[np.integer]],
    book: NDArray[np.floating],
    n_threads: int,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]: ...
def offset_sums_layout(k: int) -> tuple[int, int]: ...
def sparse_counts(
    indices: NDArray[np.integer], k: int, zero_index: int, index_bits: int, n_threads: int
) -> tuple[NDArray[np.int64], int, NDArray[np.int64], NDArray[np.int64]]: ...

# ---- the compressed model file's entropy coder (csrc/softshare/codec.hpp) ----
def encode_layers(
    layers: Sequence[NDArray[np.unsignedinteger]],
    shapes: Sequence[tuple[int, int]],
    k: int,
    version: int = 1,
    n_threads: int = 0,
) -> tuple[bytes, list[int]]: ...
@overload
def decode_layers(
    data: bytes,
    shapes: Sequence[tuple[int, int]],
    k: int,
    version: int = 1,
    n_threads: int = 0,
    counts: Literal[False] = False,
) -> tuple[list[NDArray[np.unsignedinteger]], list[int]]: ...
@overload
def decode_layers(
    data: bytes,
    shapes: Sequence[tuple[int, int]],
    k: int,
    version: int,
    n_threads: int,
    counts: Literal[True],
) -> tuple[list[NDArray[np.unsignedinteger]], list[int], NDArray[np.int64] | None]: ...

class StreamEncoder:
    def __init__(self) -> None: ...
    def bit(self, ctx: int, y: int) -> None: ...
    def symbol(self, ctx: int, n: int, value: int) -> None: ...
    def uint(self, ctx: int, value: int) -> None: ...
    def raw(self, nbits: int, value: int) -> None: ...
    def size(self) -> int: ...
    def finish(self) -> bytes: ...

class StreamDecoder:
    def __init__(self, data: bytes) -> None: ...
    def bit(self, ctx: int) -> int: ...
    def symbol(self, ctx: int, n: int) -> int: ...
    def uint(self, ctx: int) -> int: ...
    def raw(self, nbits: int) -> int: ...
    def position(self) -> int: ...
    def overrun(self) -> bool: ...
