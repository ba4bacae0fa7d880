from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

block_size: int

def penalty(
    weights: Sequence[NDArray[np.floating]],
    mu: NDArray[np.float64],
    log_var: NDArray[np.float64],
    logit: NDArray[np.float64],
    lam: float,
    n_threads: int,
    responsibilities: bool,
    grads_out: Sequence[NDArray[np.floating]] | None = None,
) -> tuple[
    float,
    float,
    NDArray[np.float64],
    list[NDArray[np.floating]],
    list[NDArray[np.floating]] | None,
]: ...
def penalty_raw(
    segments: Sequence[tuple[int, int, int, bool]],
    mu: NDArray[np.float64],
    log_var: NDArray[np.float64],
    logit: NDArray[np.float64],
    lam: float,
    n_threads: int,
) -> tuple[float, float, NDArray[np.float64]]: ...
def has_openmp() -> bool: ...
def default_threads() -> int: ...
def simd_target() -> str: ...
def simd_targets() -> list[str]: ...
def set_simd_target(name: str) -> None: ...
def _vmath(fn: str, x: NDArray[np.floating], target: str) -> NDArray[np.floating]: ...

