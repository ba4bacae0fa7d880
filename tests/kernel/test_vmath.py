"""Accuracy of the kernel's own vectorised exp and log, on every SIMD path.

The functions are in csrc/softshare/vmath-inl.hpp, reached through _core._vmath.
"""

from __future__ import annotations

import numpy as np
import pytest

from softshare import _core

from tests.conftest import SIMD_TARGETS

# (dtype, log2 of the smallest normal, a log2 far below it)
CASES = [(np.float32, -126.0, -150.0), (np.float64, -1022.0, -1075.0)]


def _ulps(actual: np.ndarray, exact: np.ndarray, dtype: type) -> np.ndarray:
    """|actual - exact| in units of the last place of exact (at dtype)."""
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.longdouble)
    return np.abs(actual.astype(np.longdouble) - exact) / spacing


@pytest.mark.parametrize("target", SIMD_TARGETS)
@pytest.mark.parametrize(("dtype", "low"), [case[:2] for case in CASES])
def test_exp2_within_2_ulp(target: str, dtype: type, low: float) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            -rng.exponential(3.0, 200_000),
            rng.uniform(low, 0.0, 200_000),
            [0.0, -0.0, -1e-30, -0.5, -1.5, low],
        ]
    ).astype(dtype)
    x = x[x >= low]
    y = _core._vmath("exp2", x, target)
    assert y.dtype == dtype
    exact = np.exp2(x.astype(np.longdouble))
    assert float(np.max(_ulps(y, exact, dtype))) <= 2.0
    assert y[x == 0][0] == 1.0


@pytest.mark.parametrize("target", SIMD_TARGETS)
@pytest.mark.parametrize(("dtype", "low", "zero"), CASES)
def test_exp2_underflows_to_exact_zero(target: str, dtype: type, low: float, zero: float) -> None:
    x = np.array([zero - 0.5, zero - 10, -1e4, -1e30, -np.inf, -3e38], dtype=dtype)
    y = _core._vmath("exp2", x, target)
    assert np.all(y == 0.0)
    # below the smallest normal: exactly 0 as well, never a subnormal (AVX-512's
    # vscalef would round to one; subnormal operands are slow on Intel cores)
    below = np.nextafter(dtype(low), dtype(-np.inf))
    x = np.concatenate([np.linspace(zero + 1, low - 1, 50).astype(dtype), [below]])
    y = _core._vmath("exp2", x, target)
    assert np.all(y == 0.0)


@pytest.mark.parametrize("target", SIMD_TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_within_3_ulp(target: str, dtype: type) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            1.0 + rng.exponential(0.5, 200_000),
            rng.uniform(1.0, 2.0, 100_000),
            rng.uniform(1.0, 1e6, 100_000),
            [1.0, np.nextafter(1.0, 2.0), np.sqrt(2.0), 2.0, 64.0, 1e30],
        ]
    ).astype(dtype)
    y = _core._vmath("log", x, target)
    exact = np.log(x.astype(np.longdouble))
    # log(1) = 0 exactly; elsewhere measure ulps of the result.
    assert y[x == 1.0][0] == 0.0
    nz = x > 1.0
    assert float(np.max(_ulps(y[nz], exact[nz], dtype))) <= 3.0


def test_bad_target() -> None:
    with pytest.raises(ValueError, match="unknown SIMD target 'sse9'"):
        _core._vmath("exp2", np.zeros(3), "sse9")
