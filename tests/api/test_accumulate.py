"""``softshare.penalty(..., out=, accumulate=True)``: the gradient added into the caller's arrays.

The rule: ``out`` ends as ``out_before + penalty(...).grad_w``, bit for bit
(``-0.0`` and NaN payloads included), whatever path a block takes: every SIMD
target, the grouped kernel, the float64 rescue and the scalar slow path, one
or more threads, one array (``_core.penalty_array``) or a list.
"""

from __future__ import annotations

import numpy as np
import pytest

import softshare
from softshare import _core

from tests.conftest import random_mixture

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

BLOCK = _core.block_size
DTYPES = [np.float32, np.float64]
MIX = softshare.Mixture([0.0, 0.2, -0.3], [-5.0, -4.0, -4.5], [1.0, 0.0, 0.5])


def bits(a: np.ndarray) -> np.ndarray:
    """The array's bit patterns (so that -0.0 != 0.0 and NaN == NaN)."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_same_bits(actual: np.ndarray, desired: np.ndarray) -> None:
    assert actual.dtype == desired.dtype
    assert actual.shape == desired.shape
    bad = np.flatnonzero(bits(actual) != bits(desired))
    assert bad.size == 0, (
        f"{bad.size} differ, first at {bad[0]}: {actual.flat[bad[0]]!r} != {desired.flat[bad[0]]!r}"
    )


def start_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """What .grad holds before the penalty's part: normal values, zeros of both signs, specials."""
    out = rng.normal(0.0, 1e-3, shape).astype(dtype)
    flat = out.reshape(-1)
    if flat.size >= 8:
        flat[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-42, -3e38, 3e38]
    return out


def check(weights: object, mix: softshare.Mixture, lam: float, **kwargs: object) -> None:
    """accumulate == out_before + grad_w, bit for bit; value and the rest as without it."""
    rng = np.random.default_rng(1)
    fresh = softshare.penalty(weights, mix, lam, **kwargs)  # type: ignore[arg-type]
    grads = fresh.grad_w if isinstance(fresh.grad_w, list) else [fresh.grad_w]
    before = [start_values(rng, g.shape, g.dtype.type) for g in grads]
    outs = [b.copy() for b in before]
    out: object = outs if isinstance(weights, (list, tuple)) else outs[0]
    with np.errstate(invalid="ignore", over="ignore"):
        r = softshare.penalty(weights, mix, lam, out=out, accumulate=True, **kwargs)  # type: ignore[arg-type]
        expected = [b + g for b, g in zip(before, grads)]
    assert r.grad_w is out or all(a is b for a, b in zip(r.grad_w, outs))
    for a, e in zip(outs, expected):
        assert_same_bits(a, e)
    assert r.value == fresh.value
    np.testing.assert_array_equal(r.stats, fresh.stats)
    np.testing.assert_array_equal(r.grad_mu, fresh.grad_mu)
    np.testing.assert_array_equal(r.grad_logit, fresh.grad_logit)
    if fresh.gamma is not None:
        for a, e in zip(
            r.gamma if isinstance(r.gamma, list) else [r.gamma],
            fresh.gamma if isinstance(fresh.gamma, list) else [fresh.gamma],
        ):
            assert_same_bits(a, e)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("responsibilities", [False, True], ids=["grad", "gamma"])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_simd_path(dtype: type, n_threads: int, responsibilities: bool) -> None:
    rng = np.random.default_rng(0)
    mix = random_mixture(rng, 7)
    single = rng.normal(0.0, 0.2, 3 * BLOCK + 77).astype(dtype)
    layers = [rng.normal(0.0, 0.2, s).astype(dtype) for s in [(300, 40), (17,), (0,), (5, 2, 3)]]
    kw = {"n_threads": n_threads, "responsibilities": responsibilities}
    check(single, mix, 1e-3, **kw)  # the one-array entry (_core.penalty_array)
    check(layers, mix, 1e-3, **kw)  # the list's
    check(single[:-5].reshape(-1, 10)[:, :7], mix, 1e-3, **kw)  # not contiguous: a converted copy
    other = single.astype(np.float64 if dtype == np.float32 else np.float32)
    check([*layers, other], mix, 0.5, **kw)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_grouped_kernel(dtype: type, n_threads: int) -> None:
    rng = np.random.default_rng(2)
    w = rng.normal(0.0, 0.3, 8 * BLOCK + 5).astype(dtype)
    m = 64
    mix = softshare.Mixture(
        np.linspace(-1.0, 1.0, m), np.full(m, 2 * np.log(0.5 * 2.0 / (m - 1))), rng.normal(0, 1, m)
    )
    assert _core._grouping(mix.mu, mix.log_var, mix.logit, w.size, dtype == np.float64)[0]
    check(w, mix, 1e-2, n_threads=n_threads)
    check([w[: BLOCK + 3], w[BLOCK + 3 :]], mix, 1e-2, n_threads=n_threads, responsibilities=True)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_rescued_blocks(dtype: type, n_threads: int) -> None:
    # Blocks with a weight whose z overflows the SIMD arithmetic go through the
    # float64 kernel (float32) or the scalar path; the others stay fast.
    mix = softshare.Mixture([0.0, 1e30], [-20.0, -20.0], [0.0, 0.0])
    w = np.random.default_rng(5).normal(0.0, 1e-4, 6 * BLOCK + 17)
    w[[3, 2 * BLOCK + 5, 5 * BLOCK + 9]] = 1e30
    w = w.astype(dtype)
    check(w, mix, 1.0, n_threads=n_threads)
    check([w[: 3 * BLOCK], w[3 * BLOCK :]], mix, 1.0, n_threads=n_threads, responsibilities=True)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_whole_pass_in_float64_and_infinite_gradients(dtype: type) -> None:
    # lam beyond float32: every float32 block in the float64 kernel, some
    # gradients beyond the dtype's range (+-inf) added to out.
    w = np.random.default_rng(3).normal(0.0, 0.3, 2 * BLOCK + 9).astype(dtype)
    check(w, MIX, 3e38 if dtype == np.float32 else 1e300, n_threads=2)
    check(w, MIX, 1e-45, n_threads=1)  # lam a float32 subnormal


def test_lam_zero_adds_plus_zero() -> None:
    # lam = 0: grad_w is +0 everywhere, so -0.0 in out becomes +0.0 (IEEE).
    w = np.linspace(-1, 1, 3 * BLOCK).astype(np.float32)
    check(w, MIX, 0.0, n_threads=2)
    out = np.full(w.shape, -0.0, np.float32)
    softshare.penalty(w, MIX, 0.0, out=out, accumulate=True)
    assert not np.signbit(out).any()
    # and a weight whose log-density overflows: no error for lam = 0, +0 added
    mix = softshare.Mixture([0.0], [-700.0], [0.0])
    far = np.array([0.0, 1e300, 3.0])
    out = np.array([-0.0, 2.0, np.nan])
    softshare.penalty(far, mix, 0.0, out=out, accumulate=True)
    assert_same_bits(out, np.array([0.0, 2.0, np.nan]))


def test_errors_leave_a_clear_message() -> None:
    w = np.linspace(-1, 1, 6).astype(np.float32)
    with pytest.raises(ValueError, match="accumulate=True needs out="):
        softshare.penalty(w, MIX, accumulate=True)
    with pytest.raises(ValueError, match="accumulate=True needs out="):
        softshare.penalty([w, w], MIX, accumulate=True)
    bad = w.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"weights must be finite: found nan at index \(2,\)"):
        softshare.penalty(bad, MIX, out=np.zeros(6, np.float32), accumulate=True)
    shared = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"out\[1\] overlaps out\[0\]"):
        softshare.penalty([w, w], MIX, out=[shared[:6], shared[4:]], accumulate=True)
    # without accumulate too: one layer's gradient would overwrite the other's (issue 24)
    with pytest.raises(ValueError, match=r"out\[1\] overlaps out\[0\]: each gradient needs"):
        softshare.penalty([w, w], MIX, out=[shared[:6], shared[4:]])
    with pytest.raises(ValueError, match="overlaps weights"):
        softshare.penalty(w, MIX, out=w, accumulate=True)
    with pytest.raises(TypeError, match="dtype float32"):
        softshare.penalty(w, MIX, out=np.zeros(6), accumulate=True)
    with pytest.raises(ValueError, match="accumulate needs"):
        _core.penalty_array(
            w,
            MIX.mu,
            MIX.log_var,
            MIX.logit,
            1.0,
            1,
            False,
            softshare.PenaltyResult,
            accumulate=True,
        )


def test_one_array_goes_through_the_small_call_entry() -> None:
    w = np.linspace(-1, 1, 100).reshape(10, 10)
    out = np.ones_like(w)
    args = (w, MIX.mu, MIX.log_var, MIX.logit, 0.5, 1, False, softshare.PenaltyResult)
    r = _core.penalty_array(*args, out=out, accumulate=True)
    assert isinstance(r, softshare.PenaltyResult)
    assert r.grad_w is out
    assert_same_bits(out, 1.0 + softshare.penalty(w, MIX, 0.5).grad_w)
    # an out it cannot take (another dtype, shape or layout): the general path says why
    assert _core.penalty_array(*args, out=np.ones(100), accumulate=True) is None
    assert _core.penalty_array(*args, out=np.ones((10, 10), np.float32)) is None
    assert _core.penalty_array(*args, out=np.ones((10, 20))[:, ::2]) is None


def test_raw_entry_accumulates_per_segment() -> None:
    rng = np.random.default_rng(4)
    ws = [rng.normal(0, 0.2, n).astype(np.float32) for n in (5000, 7)]
    grads = [np.full(5000, 0.25, np.float32), np.full(7, np.nan, np.float32)]
    mixture = np.stack([MIX.mu, MIX.log_var, MIX.logit])
    out = np.empty((3, 3))
    segments = [(w.ctypes.data, g.ctypes.data, w.size, False) for w, g in zip(ws, grads)]
    raw_mix = (mixture[0].ctypes.data, mixture[1].ctypes.data, mixture[2].ctypes.data, 3, True)
    raw_out = (out[0].ctypes.data, out[1].ctypes.data, out[2].ctypes.data, True)
    raw = _core.penalty_raw(segments, raw_mix, 0.1, 2, raw_out, [True, False])
    assert raw is not None
    fresh = softshare.penalty(ws, MIX, 0.1)
    assert raw[0] == fresh.value
    assert_same_bits(grads[0], np.float32(0.25) + fresh.grad_w[0])
    assert_same_bits(grads[1], fresh.grad_w[1])  # written, not added
    with pytest.raises(ValueError, match="one flag per segment"):
        _core.penalty_raw(segments, raw_mix, 0.1, 2, raw_out, [True])
