"""The native kernel against the NumPy reference, on every SIMD path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softshare
from softshare import reference

from tests.conftest import assert_results_close, random_mixture, tolerance

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

DTYPES = [np.float64, np.float32]


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 2, 3, 16, 64])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (5000,), (3, 4, 5, 67)])
def test_matches_reference(dtype: type, m: int, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng([m, len(shape), sum(shape)])
    mix = random_mixture(rng, m)
    w = rng.normal(0.0, 0.3, shape).astype(dtype)
    lam = 0.37
    native = softshare.penalty(w, mix, lam)
    ref = reference.penalty(w, mix, lam)
    assert isinstance(native.value, float)
    assert native.grad_w.shape == shape
    assert native.grad_w.dtype == dtype
    for name in ("grad_mu", "grad_sigma", "grad_log_var", "grad_logit"):
        arr = getattr(native, name)
        assert arr.shape == (m,)
        assert arr.dtype == np.float64
    assert native.stats.shape == (3, m)
    assert native.gamma is None
    assert_results_close(native, ref, tolerance(dtype), lam=lam, weights=w, mixture=mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_responsibilities(dtype: type) -> None:
    rng = np.random.default_rng(1)
    mix = random_mixture(rng, 5)
    w = rng.normal(0.0, 0.3, (10, 33)).astype(dtype)
    native = softshare.penalty(w, mix, responsibilities=True)
    ref = reference.penalty(w, mix, responsibilities=True)
    assert isinstance(native.gamma, np.ndarray)
    assert isinstance(ref.gamma, np.ndarray)
    assert native.gamma.shape == (330, 5)
    assert native.gamma.dtype == dtype
    np.testing.assert_allclose(native.gamma, ref.gamma, rtol=0, atol=10 * tolerance(dtype))
    np.testing.assert_allclose(native.gamma.sum(axis=1), 1.0, rtol=10 * tolerance(dtype))
    # asking for gamma changes nothing else
    plain = softshare.penalty(w, mix)
    assert plain.value == native.value
    np.testing.assert_array_equal(plain.grad_w, native.grad_w)
    np.testing.assert_array_equal(plain.stats, native.stats)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_list_equals_concatenation(dtype: type) -> None:
    rng = np.random.default_rng(2)
    mix = random_mixture(rng, 16)
    layers = [rng.normal(0, 0.2, s).astype(dtype) for s in [(300, 100), (100,), (0,), (5, 3, 3, 3)]]
    native = softshare.penalty(layers, mix, 0.5, responsibilities=True)
    whole = softshare.penalty(np.concatenate([a.ravel() for a in layers]), mix, 0.5)
    ref = reference.penalty(layers, mix, 0.5, responsibilities=True)
    assert isinstance(native.grad_w, list)
    assert [g.shape for g in native.grad_w] == [a.shape for a in layers]
    assert isinstance(native.gamma, list)
    assert [g.shape for g in native.gamma] == [(a.size, 16) for a in layers]
    assert_results_close(native, ref, tolerance(dtype), lam=0.5, weights=layers, mixture=mix)
    rtol = tolerance(dtype)
    np.testing.assert_allclose(native.value, whole.value, rtol=rtol)
    np.testing.assert_allclose(native.stats, whole.stats, rtol=rtol, atol=rtol * native.n)
    np.testing.assert_array_equal(np.concatenate([g.ravel() for g in native.grad_w]), whole.grad_w)


@pytest.mark.usefixtures("simd")
def test_mixed_dtype_list_and_tuple() -> None:
    rng = np.random.default_rng(3)
    mix = random_mixture(rng, 4)
    layers = (
        rng.normal(0, 0.2, 1000).astype(np.float32),
        rng.normal(0, 0.2, 999),
        rng.integers(-1, 2, 17),
    )
    native = softshare.penalty(layers, mix)
    ref = reference.penalty(layers, mix)
    assert isinstance(native.grad_w, list)
    assert [g.dtype for g in native.grad_w] == [np.float32, np.float64, np.float64]
    assert_results_close(native, ref, tolerance(np.float32), weights=layers, mixture=mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_byteswapped(dtype: type) -> None:
    rng = np.random.default_rng(4)
    mix = random_mixture(rng, 3)
    base = rng.normal(0, 0.3, (40, 60)).astype(dtype)
    contiguous = softshare.penalty(base[::3, ::-2].copy(), mix)
    strided = softshare.penalty(base[::3, ::-2], mix)
    np.testing.assert_array_equal(strided.grad_w, contiguous.grad_w)
    assert strided.value == contiguous.value
    swapped = base.astype(np.dtype(dtype).newbyteorder("S"))
    assert not swapped.dtype.isnative
    r_swapped = softshare.penalty(swapped, mix)
    r_native = softshare.penalty(base, mix)
    assert r_swapped.grad_w.dtype == np.dtype(dtype)
    assert r_swapped.grad_w.dtype.isnative
    np.testing.assert_array_equal(r_swapped.grad_w, r_native.grad_w)
    assert r_swapped.value == r_native.value
    assert_results_close(
        r_swapped, reference.penalty(swapped, mix), tolerance(dtype), weights=swapped, mixture=mix
    )


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, np.bool_, np.float16])
def test_other_real_dtypes_become_float64(dtype: type) -> None:
    mix = softshare.Mixture([0.0, 1.0], [0.0, -1.0], [0.0, 0.0])
    w = np.array([0, 1, 1, 0, 1], dtype=dtype)
    native = softshare.penalty(w, mix)
    assert native.grad_w.dtype == np.float64
    assert_results_close(
        native, reference.penalty(w.astype(np.float64), mix), 1e-12, weights=w, mixture=mix
    )


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_bounds_still_bind_where_a_log_term_is_minus_inf(dtype: type) -> None:
    # Component 1 is so narrow and so far that its float64 log-term is -inf for
    # every weight (the squared distance overflows). The comparison helper must
    # still bound every field: 0 * inf in its condition number once made every
    # bound NaN, which bounded nothing.
    mix = softshare.Mixture([0.0, 50.0], [-1.8, -706.0], [0.0, -2.0])
    w = np.random.default_rng(0).normal(0.0, 0.3, 4096).astype(dtype)
    with np.errstate(over="ignore"):
        assert np.all(reference.log_terms(w.astype(np.float64), mix)[:, 1] == -np.inf)
    native = softshare.penalty(w, mix)
    ref = reference.penalty(w, mix)
    assert_results_close(native, ref, tolerance(dtype), weights=w, mixture=mix)
    off = dataclasses.replace(native, value=native.value * (1 + 100 * tolerance(dtype)))
    with pytest.raises(AssertionError, match="value"):
        assert_results_close(off, ref, tolerance(dtype), weights=w, mixture=mix)
    grad_w = native.grad_w.copy()
    grad_w[7] *= 1 + 100 * tolerance(dtype)
    with pytest.raises(AssertionError, match="grad_w"):
        assert_results_close(
            dataclasses.replace(native, grad_w=grad_w),
            ref,
            tolerance(dtype),
            weights=w,
            mixture=mix,
        )


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_far_components_underflow_to_zero(dtype: type) -> None:
    # Components 1 and 2 are thousands of sigmas from every weight: their
    # responsibilities underflow to exactly 0, never NaN.
    mix = softshare.Mixture([0.0, 50.0, -80.0], np.log([0.01, 0.01, 0.01]) * 2, [0.0, 0.0, 0.0])
    w = np.linspace(-0.05, 0.05, 1001).astype(dtype)
    native = softshare.penalty(w, mix, responsibilities=True)
    ref = reference.penalty(w, mix)
    assert isinstance(native.gamma, np.ndarray)
    assert np.all(native.gamma[:, 1:] == 0.0)
    assert np.all(native.gamma[:, 0] == 1.0)
    assert np.all(np.isfinite(native.grad_w))
    assert native.stats[0, 1] == 0.0
    assert native.stats[0, 2] == 0.0
    assert_results_close(native, ref, tolerance(dtype), weights=w, mixture=mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("log_var", [-40.0, -10.0, 0.0, 10.0, 40.0])
def test_extreme_log_var(dtype: type, log_var: float) -> None:
    rng = np.random.default_rng(int(log_var) + 50)
    sigma = np.exp(0.5 * log_var)
    mix = softshare.Mixture(
        [0.0, sigma, -2 * sigma], [log_var, log_var + 1, log_var - 1], [0, 1, 2]
    )
    w = (rng.normal(0.0, 2.0, 2000) * sigma).astype(dtype)
    native = softshare.penalty(w, mix)
    ref = reference.penalty(w, mix)
    assert_results_close(native, ref, tolerance(dtype), weights=w, mixture=mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_weights(dtype: type) -> None:
    # Weights up to 1e4 against components of sigma 1e-3 .. 1: log-terms of
    # -5e13 must not overflow, and the widest component takes the far weights.
    mix = softshare.Mixture([0.0, 0.5, -3.0], 2 * np.log([1e-3, 0.1, 1.0]), [2.0, 0.0, -1.0])
    w = np.concatenate([np.linspace(-1e4, 1e4, 501), [1e4, -1e4, 0.0, 0.5]]).astype(dtype)
    native = softshare.penalty(w, mix, responsibilities=True)
    ref = reference.penalty(w, mix)
    assert np.all(np.isfinite(native.grad_w))
    assert isinstance(native.gamma, np.ndarray)
    assert native.gamma[-4, 2] == 1.0
    assert_results_close(native, ref, tolerance(dtype), weights=w, mixture=mix)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_weights(dtype: type) -> None:
    mix = softshare.Mixture([0.0, 1.0], [0.0, 0.0], [0.0, 0.0])
    for fn in (softshare.penalty, reference.penalty):
        r = fn(np.zeros((0, 3), dtype=dtype), mix, 2.0, responsibilities=True)
        assert r.value == 0.0
        assert r.n == 0
        assert r.grad_w.shape == (0, 3)
        assert isinstance(r.gamma, np.ndarray)
        assert r.gamma.shape == (0, 2)
        for name in ("grad_mu", "grad_sigma", "grad_log_var", "grad_logit", "stats"):
            assert not np.any(getattr(r, name))
        r_list = fn([], mix)
        assert r_list.grad_w == []
        assert r_list.value == 0.0


def test_lam_scales_everything_but_stats() -> None:
    rng = np.random.default_rng(5)
    mix = random_mixture(rng, 4)
    w = rng.normal(0, 0.3, 1000)
    one = softshare.penalty(w, mix, 1.0)
    two = softshare.penalty(w, mix, 2.5)
    zero = softshare.penalty(w, mix, 0.0)
    np.testing.assert_array_equal(one.stats, two.stats)
    np.testing.assert_allclose(two.value, 2.5 * one.value, rtol=1e-15)
    np.testing.assert_allclose(two.grad_w, 2.5 * one.grad_w, rtol=1e-15)
    np.testing.assert_allclose(two.grad_logit, 2.5 * one.grad_logit, rtol=1e-14, atol=1e-12)
    assert zero.value == 0.0
    assert not np.any(zero.grad_w)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 5000),
    m=st.integers(1, 40),
    dtype=st.sampled_from(["<f4", ">f4", "<f8", ">f8"]),
    step=st.integers(1, 3),
    scale=st.sampled_from([1e-3, 0.1, 1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
    target=st.sampled_from(softshare.simd_targets()),
)
def test_hypothesis_parity(
    n: int, m: int, dtype: str, step: int, scale: float, seed: int, target: str
) -> None:
    from softshare import _core

    rng = np.random.default_rng(seed)
    mix = random_mixture(rng, m, spread=scale)
    w = (rng.normal(0.0, scale, n * step) + 0.0).astype(dtype)[::step]
    before = softshare.simd_target()
    _core.set_simd_target(target)
    try:
        native = softshare.penalty(w, mix, 0.1)
    finally:
        _core.set_simd_target(before)
    assert_results_close(
        native,
        reference.penalty(w, mix, 0.1),
        tolerance(np.dtype(dtype)),
        lam=0.1,
        weights=w,
        mixture=mix,
    )


@pytest.mark.usefixtures("simd")
def test_float32_component_gradients_at_1e7() -> None:
    # float32 lanes with float64 accumulation: over 10^7 weights the component
    # gradients stay within 1e-6 (vector-norm relative) of the float64 reference.
    rng = np.random.default_rng(12)
    mix = softshare.Mixture(
        mu=np.linspace(-0.3, 0.3, 16),
        log_var=np.full(16, 2 * np.log(0.05)),
        logit=rng.normal(0, 0.5, 16),
    )
    w = rng.normal(0.0, 0.1, 10_000_000).astype(np.float32)
    native = softshare.penalty(w, mix, 1e-3)
    ref = _REF_1E7.get("ref")
    if ref is None:
        ref = _REF_1E7["ref"] = reference.penalty(w.astype(np.float64), mix, 1e-3)
    for name in ("grad_mu", "grad_sigma", "grad_log_var", "grad_logit"):
        a, b = getattr(native, name), getattr(ref, name)
        assert np.linalg.norm(a - b) <= 1e-6 * np.linalg.norm(b), name
    assert abs(native.value - ref.value) <= 1e-6 * abs(ref.value)


_REF_1E7: dict[str, softshare.PenaltyResult] = {}
