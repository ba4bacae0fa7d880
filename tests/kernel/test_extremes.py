"""Extreme finite inputs: the float64 reference's answer or a documented error, never NaN.

The native kernel precomputes the mixture's constants in the weights'
precision and runs SIMD arithmetic in it. Where float32 cannot hold a constant
(``|mu| > 3.4e38``, ``log_var`` beyond about [-177, 174], ``lam`` outside
float32's normal range) the float32 weights are computed by the float64 kernel;
a block whose sums still come out NaN or infinite (``w - mu`` or ``z**2``
overflowing, a far component's ``0 * inf``) is computed again by a scalar
float64 path. These tests pin each of those cases on every SIMD path, and a
hypothesis sweep (test_extremes_sweep.py) covers the rest of the range.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import softshare
from softshare import _core, reference

from tests.conftest import tolerance
from tests.kernel._extremes import (
    DTYPES,
    _both,
    _mixture_around,
    _no_nan,
    _scaled_oracle,
    _weights_around,
    assert_agrees,
)

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize


# --- the reproducers of the issue, on every SIMD path --------------------------------------


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "log_var", [-708.0, -700.0, -200.0, -178.0, -177.0, 175.0, 180.0, 210.0, 400.0, 700.0]
)
def test_log_var_beyond_float32(dtype: type, log_var: float) -> None:
    # float32 weights used to give a wrong value and NaN gradients for
    # log_var <= -178 (r = 1/sigma overflows float32) and NaN mixture gradients
    # from about 175 on (r subnormal, then 0).
    mix = _mixture_around(log_var)
    w = _weights_around(mix, 1000, dtype)
    native, ref = _both(w, mix, 0.3, responsibilities=True)
    assert_agrees(native, ref, w, mix, 0.3)
    np.testing.assert_allclose(native.gamma, ref.gamma, rtol=0, atol=10 * tolerance(dtype))


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mu", [3e38, 1e39, -1e39, 1e100, 1e300, -1e300])
def test_mu_beyond_float32(dtype: type, mu: float) -> None:
    # A component mean beyond float32 (|mu| >= 1e39) gave NaN mixture gradients.
    # sigma = |mu| / 10 (at most 1.5e152: (w - mu)^2 fits float64, see below)
    mix = softshare.Mixture([0.0, mu], [-4.0, min(2 * math.log(abs(mu) / 10), 700.0)], [0.0, -1.0])
    w = _weights_around(mix, 1000, dtype, seed=1)
    native, ref = _both(w, mix)
    assert_agrees(native, ref, w, mix, 1.0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize(
    ("lam", "expect_inf"), [(1e-45, False), (1e-40, False), (3e38, True), (1e300, True)]
)
def test_lam_beyond_float32(lam: float, expect_inf: bool) -> None:
    # float32 rounds a lam below its normal range to a subnormal or 0 and one
    # above it to inf: such calls go through float64 and round only the outputs.
    mix = softshare.Mixture([0.0, 0.5], [-2.0, -3.0], [0.0, 0.0])
    w = np.linspace(-1.0, 1.0, 333).astype(np.float32)
    native, ref = _both(w, mix, lam)
    assert_agrees(native, ref, w, mix, lam)
    assert bool(np.any(np.isinf(native.grad_w))) == expect_inf
    assert np.any(native.grad_w != 0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_far_component_overflowing_z(dtype: type) -> None:
    # The weights sit on one component; the other is so far, in its own
    # sigmas, that (w - mu) / sigma overflows (float32 and float64 alike):
    # its responsibility is 0 and gamma * z was 0 * inf = NaN.
    far = 1e30 if dtype == np.float32 else 1e200
    mix = softshare.Mixture([0.0, far], [-20.0, -20.0], [0.0, 0.0])
    w = np.concatenate([np.linspace(-1e-4, 1e-4, 101), [far, -0.0, far]]).astype(dtype)
    native, ref = _both(w, mix, responsibilities=True)
    assert_agrees(native, ref, w, mix, 1.0)
    assert native.gamma is not None
    assert isinstance(native.gamma, np.ndarray)
    assert np.all(native.gamma[:101, 1] == 0.0)


@pytest.mark.usefixtures("simd")
def test_float32_differences_beyond_float32() -> None:
    # w - mu itself overflows float32 (3e38 - (-3e38)): computed in float64.
    mix = softshare.Mixture([-3e38, 3e38], [2 * math.log(1e38), 2 * math.log(1e37)], [0.0, 0.0])
    w = np.array([3e38, 2.9e38, -3e38, 0.0, 1e38], dtype=np.float32)
    native, ref = _both(w, mix)
    assert_agrees(native, ref, w, mix, 1.0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_term_overflow_with_small_lam(dtype: type) -> None:
    # gamma (w - mu) / sigma^2 is beyond float32 (sigma = 4e-38, w - mu = 50
    # sigma: 1.2e39) before lam = 1e-6 scales it back.
    mix = softshare.Mixture([0.0], [-170.0], [0.0])
    sigma = float(mix.sigma[0])
    w = np.array([50 * sigma, -30 * sigma, 0.0, sigma], dtype=dtype)
    native, ref = _both(w, mix, 1e-6)
    assert_agrees(native, ref, w, mix, 1e-6)
    assert np.all(np.isfinite(native.grad_w))


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [5, 5000])
def test_gradients_beyond_the_kernels_scale(dtype: type, n: int) -> None:
    # The kernel's pass 3 works with gamma scaled by 2^32 (float32) / 2^256
    # (float64): a grad_w beyond 2^96 (2^768) is infinite there, and the block
    # is computed again in float64 (or by the scalar path): finite, as in the
    # reference. float32: sigma 1e-29, weights up to 13 sigma from the mean;
    # float64: sigma e^-350, weights up to 1.3e81 sigma away.
    f32 = dtype == np.float32
    mix = softshare.Mixture([0.0], [2 * math.log(1e-29) if f32 else -700.0], [0.0])
    sigma = float(mix.sigma[0])
    w = (np.linspace(-3.0, 13.0, n) * (sigma if f32 else 1e80 * sigma)).astype(dtype)
    native, ref = _both(w, mix)
    assert np.max(np.abs(ref.grad_w)) > (2.0**96 if f32 else 2.0**768)
    assert np.all(np.isfinite(native.grad_w))
    assert_agrees(native, ref, w, mix, 1.0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_beyond_the_dtype_are_inf_like_the_reference(dtype: type) -> None:
    # The true gradient is beyond the dtype's range: +-inf, as in the reference.
    mix = softshare.Mixture([0.0], [-600.0 if dtype == np.float64 else -176.0], [0.0])
    sigma = float(mix.sigma[0])
    w = np.array([3 * sigma, -3 * sigma, 0.0], dtype=dtype)
    native, ref = _both(w, mix, 1e200 if dtype == np.float64 else 1.0)
    assert_agrees(native, ref, w, mix, 1e200 if dtype == np.float64 else 1.0)
    assert np.isposinf(native.grad_w[0])
    assert np.isneginf(native.grad_w[1])


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logit_spread(dtype: type) -> None:
    mix = softshare.Mixture([0.0, 1.0, -1.0], [0.0, 0.0, -1.0], [1e300, -1e300, 0.0])
    w = np.linspace(-3.0, 3.0, 77).astype(dtype)
    native, ref = _both(w, mix)
    assert_agrees(native, ref, w, mix, 1.0)
    assert np.all(native.stats[:, 1:] == 0.0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("top", [65.0, 1e6, 1.7592186043588e13, -1e13, 1e300])
def test_large_close_logits(dtype: type, top: float) -> None:
    # pi = softmax(logit) only depends on differences: logits far from 0 but
    # close to each other lost ln sum exp(logit - max) in max + ln sum (below
    # the ulp of max), a relative error up to 2e-16 |max| in every log pi.
    mix = softshare.Mixture([0.0, 0.0, 0.3], [0.0, 0.0, -2.0], [top, top - 15.0, top - 1.0])
    w = np.linspace(-2.0, 2.0, 101).astype(dtype)
    native, ref = _both(w, mix)
    assert_agrees(native, ref, w, mix, 1.0)


@pytest.mark.parametrize("log_var", [-1473.0, -800.0, 709.0, 800.0, 1381.0])
def test_log_var_beyond_float64_is_a_value_error(log_var: float) -> None:
    # sigma = 1e-320 or 1e300: sigma^2 or its inverse is not a float64 number.
    with pytest.raises(ValueError, match=r"log_var\[1\] = .* is outside the range"):
        softshare.Mixture([0.0, 1.0], [0.0, log_var], [0.0, 0.0])


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_too_far_is_the_overflow_error(dtype: type) -> None:
    # (w - mu)^2 / (2 sigma^2) beyond float64 (sigma = 5e-131): its log-density
    # is not representable, for float32 weights too (computed in float64).
    mix = softshare.Mixture([0.0], [-600.0], [0.0])
    w = np.array([0.0, 1e200 if dtype == np.float64 else 3e38], dtype=dtype)
    for fn in (softshare.penalty, reference.penalty):
        with pytest.raises(ValueError, match="penalty overflowed"):
            fn(w, mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_squares_too_early(dtype: type) -> None:
    # (w - mu) / sigma is moderate but (w - mu)^2 overflows float64 (sigma
    # near its largest, 5.5e153): forming l = offset - 0.5 (w - mu)^2 / sigma^2
    # would lose the component (or raise); the kernel and the reference form
    # (w - mu) r first and have the answer. S2 = sum gamma (w - mu)^2 is itself
    # beyond float64 there: +inf (and grad_log_var -inf), never NaN.
    mix = _mixture_around(708.0)
    w = _weights_around(mix, 300, dtype, seed=3)
    native = softshare.penalty(w, mix)
    _no_nan(native)
    expected = _scaled_oracle(w, mix, 1.0)
    np.testing.assert_allclose(native.value, expected.value, rtol=10 * tolerance(dtype))
    np.testing.assert_allclose(native.stats[0], expected.s0, rtol=10 * tolerance(dtype), atol=1e-6)
    if dtype == np.float32:
        return
    np.testing.assert_allclose(native.grad_w, expected.grad_w, rtol=1e-9)
    mix = softshare.Mixture([1e300], [700.0], [0.0])
    w = np.array([0.0, 1e299])
    native = softshare.penalty(w, mix)
    # the reference scales (w - mu) before squaring too, so it agrees
    np.testing.assert_allclose(reference.penalty(w, mix).value, native.value, rtol=1e-14)
    _no_nan(native)
    np.testing.assert_allclose(native.value, _scaled_oracle(w, mix, 1.0).value, rtol=1e-14)
    assert np.isposinf(native.stats[2, 0])
    assert np.isneginf(native.grad_log_var[0])


@pytest.mark.parametrize(
    ("where", "message"),
    [("stats", r"the sum S1 of component 1 \(mu\[1\] = 0.5"), ("grad", r"weights at index \(2,\)")],
)
def test_a_nan_from_the_kernel_is_an_error(
    monkeypatch: pytest.MonkeyPatch, where: str, message: str
) -> None:
    # The kernel makes no NaN for finite input; should one ever come out
    # (S1 = inf - inf of two blocks' sums beyond float64), it is an error.
    import softshare._penalty

    real_core = softshare._penalty._core

    class Core:
        default_threads = staticmethod(real_core.default_threads)

        @staticmethod
        def penalty(*args: object) -> tuple[object, ...]:
            sum_l, _, stats, grads, gammas, _ = real_core.penalty(*args)
            if where == "stats":
                stats[1, 1] = np.nan
            else:
                grads[0][2] = np.nan
            # check: NaN flags either; no native totals, so Python checks
            return sum_l, np.nan, stats, grads, gammas, None

        @staticmethod
        def penalty_array(w: np.ndarray, *args: object) -> tuple[object, ...]:
            # one array (its own entry): the same pass, flagged the same way
            return Core.penalty([w.reshape(-1)], *args[:-1])

    monkeypatch.setattr(softshare._penalty, "_core", Core)
    mix = softshare.Mixture([0.0, 0.5], [-2.0, -3.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=rf"the penalty overflowed: .*{message}"):
        softshare.penalty(np.linspace(-1.0, 1.0, 5), mix)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_blocks_are_deterministic(dtype: type, n_threads: int) -> None:
    # A few blocks go through the slow paths (a weight whose z overflows the
    # weights' dtype in each of them), the rest through the SIMD kernel.
    block = _core.block_size
    mix = softshare.Mixture([0.0, 1e30], [-20.0, -20.0], [0.0, 0.0])
    w = np.random.default_rng(5).normal(0.0, 1e-4, 6 * block + 17)
    w[[3, 2 * block + 5, 5 * block + 9]] = 1e30
    w = w.astype(dtype)
    one = softshare.penalty(w, mix, n_threads=1)
    again = softshare.penalty(w, mix, n_threads=n_threads)
    assert one.value == again.value
    np.testing.assert_array_equal(one.grad_w, again.grad_w)
    np.testing.assert_array_equal(one.stats, again.stats)
    assert_agrees(again, reference.penalty(w, mix), w, mix, 1.0)
