"""Extreme finite inputs: the float64 reference's answer or a documented error, never NaN.

The native kernel precomputes the mixture's constants in the weights'
precision and runs SIMD arithmetic in it. Where float32 cannot hold a constant
(``|mu| > 3.4e38``, ``log_var`` beyond about [-177, 174], ``lam`` outside
float32's normal range) the float32 weights are computed by the float64 kernel;
a block whose sums still come out NaN or infinite (``w - mu`` or ``z**2``
overflowing, a far component's ``0 * inf``) is computed again by a scalar
float64 path. These tests pin each of those cases on every SIMD path, and a
hypothesis sweep covers the rest of the range.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, reference
from softshare._formulas import HALF_LOG_2PI

from tests.conftest import assert_fields_close, tolerance

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

DTYPES = [np.float32, np.float64]
FIELDS = ("value", "grad_w", "grad_mu", "grad_sigma", "grad_log_var", "grad_logit")
#: What a ValueError may say: it names the parameter or the overflow.
DOCUMENTED = re.compile(
    r"must be finite|penalty overflowed|lam must be|(mu|log_var|logit)(\[\d+\])? (is|must)|"
    r"outside the range"
)


def _tiny(dtype: type) -> float:
    return float(np.finfo(dtype).tiny)


def _no_nan(result: softshare.PenaltyResult) -> None:
    grads = result.grad_w if isinstance(result.grad_w, list) else [result.grad_w]
    gammas = [] if result.gamma is None else result.gamma
    gammas = gammas if isinstance(gammas, list) else [gammas]
    for name, arr in [
        ("value", np.asarray(result.value)),
        ("stats", result.stats),
        *((f, getattr(result, f)) for f in FIELDS[2:]),
        *(("grad_w", g) for g in grads),
        *(("gamma", g) for g in gammas),
    ]:
        assert not np.any(np.isnan(arr)), f"NaN in {name}"


def _zero_where(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.array(arr, copy=True)
    out[mask] = 0
    return out


def _conditioning(w: np.ndarray, mix: softshare.Mixture) -> np.ndarray:
    """``1 + sum_j gamma_ij |l_ij|`` per weight: how much rounding of the log-terms is amplified.

    Beyond about 1e12, float64 keeps no digit of the responsibilities (the
    reference itself computes gamma = exp(l - L) with L rounded to |L|'s ulp).
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        x = np.asarray(w, dtype=np.float64).ravel()
        q = (x[:, None] - mix.mu[None, :]) * (math.sqrt(0.5) * np.exp(-0.5 * mix.log_var))
        terms = (mix.log_pi - HALF_LOG_2PI - 0.5 * mix.log_var)[None, :] - q * q
        top = np.max(terms, axis=1, keepdims=True)
        e = np.exp(terms - top)
        gamma = e / np.sum(e, axis=1, keepdims=True)
        return 1.0 + np.sum(np.where(gamma > 0, gamma * np.abs(terms), 0.0), axis=1)


def assert_agrees(
    native: softshare.PenaltyResult,
    ref: softshare.PenaltyResult,
    weights: np.ndarray,
    mix: softshare.Mixture,
    lam: float,
) -> None:
    """No NaN; +-inf where the reference has it; the rest within float bounds.

    Where the reference is +-inf the kernel must be the same infinity, unless
    the entry is so ill-conditioned (see :func:`_conditioning`) that the
    reference's own rounding may have made it overflow.
    """
    _no_nan(native)
    assert np.isfinite(native.value)
    cond = _conditioning(weights, mix)
    sound = cond < 1e9
    fields: dict[str, object] = {}
    finite_ref = {}
    for name in FIELDS[1:]:
        got, want = np.asarray(getattr(native, name)), np.asarray(getattr(ref, name))
        assert got.dtype == want.dtype, name
        off = ~np.isfinite(want)
        strict = off & (sound if name == "grad_w" else bool(np.all(sound)))
        np.testing.assert_array_equal(got[strict], want[strict], err_msg=name)
        fields[name] = _zero_where(got, off)
        finite_ref[name] = _zero_where(want, off)
    fields["value"] = native.value
    for k, name in enumerate(("S0", "S1", "S2")):
        off = ~np.isfinite(ref.stats[k])
        strict = off & bool(np.all(sound))
        np.testing.assert_array_equal(native.stats[k][strict], ref.stats[k][strict], err_msg=name)
        fields[name] = _zero_where(native.stats[k], off)
    ref_stats = np.where(np.isfinite(ref.stats), ref.stats, 0.0)
    ref = dataclasses.replace(ref, stats=ref_stats, **finite_ref)  # type: ignore[arg-type]
    dtype = weights.dtype.type
    _forgive_underflow(fields, ref, mix, lam, dtype)
    rtol = 10 * tolerance(dtype)
    if float(np.max(cond, initial=1.0)) * float(np.finfo(dtype).eps) > 0.1:
        # Log-terms so large that their rounding in the weights' precision is
        # more than 0.1: the responsibilities among the nearest components are
        # not determined by that precision (a float32 weight 1e11 sigmas out
        # cannot tell pi = 1 from pi = 0); only the value keeps its bound.
        fields = {"value": fields["value"]}
    assert_fields_close(
        fields,
        ref,
        rtol,
        weights=weights.astype(np.float64),
        mixture=mix,
        lam=lam,
        atol_w=_tiny(dtype),
        atol_gamma=_tiny(dtype),
    )


def _forgive_underflow(
    fields: dict[str, object],
    ref: softshare.PenaltyResult,
    mix: softshare.Mixture,
    lam: float,
    dtype: type,
) -> None:
    """Accept the kernel's underflow of ``z = (w - mu) / sigma`` terms.

    The kernel sums ``gamma z`` and ``gamma z^2`` in units of ``z``: terms below
    its dtype's smallest subnormal (1.4e-45 in float32, 4.9e-324 in float64:
    a float64 weight 1e-162 from a wide component) are lost, an absolute error of about that
    times ``sigma_j`` in S1 and ``sigma_j^2`` in S2 per weight, and what follows
    from them in the mixture's gradients; negligible next to S0 sigma_j and S0
    sigma_j^2, but beyond bounds relative to the sums themselves when the
    weights sit within 1e-23 sigma of a component. Entries within that are set
    to the reference's.
    """
    floor = 64 * float(np.finfo(dtype).smallest_subnormal) * ref.n
    sigma = mix.sigma / math.sqrt(0.5 * math.log2(math.e))  # 1 / r: units of z
    with np.errstate(over="ignore", divide="ignore", under="ignore", invalid="ignore"):
        allow = {
            "S1": floor * sigma,
            "S2": floor * sigma * sigma,
            "grad_mu": lam * floor * sigma / mix.var,
            "grad_log_var": lam * floor * sigma * sigma / mix.var,
            "grad_sigma": lam * floor * sigma * sigma / (mix.var * mix.sigma),
        }
    want = {"S1": ref.stats[1], "S2": ref.stats[2]}
    for name, tol in allow.items():
        if name not in fields:
            continue
        got = np.array(fields[name], dtype=np.float64)
        target = want[name] if name in want else getattr(ref, name)
        close = np.abs(got - target) <= tol
        got[close] = target[close]
        fields[name] = got


def _mixture_around(log_var: float) -> softshare.Mixture:
    """Three overlapping components of log-variances near ``log_var`` (within +-708)."""
    sigma = math.exp(0.5 * log_var)
    log_vars = np.clip([log_var, log_var - 1.0, log_var + 1.0], -708.0, 708.0)
    return softshare.Mixture([0.0, 3 * sigma, -2 * sigma], log_vars, [0.0, 1.0, -1.0])


def _weights_around(mix: softshare.Mixture, n: int, dtype: type, seed: int = 0) -> np.ndarray:
    """Weights within a few sigmas of the components, in the dtype's range."""
    rng = np.random.default_rng(seed)
    j = rng.integers(0, mix.n_components, n)
    top = float(np.finfo(dtype).max)
    w = np.clip(mix.mu[j] + rng.normal(0.0, 2.0, n) * mix.sigma[j], -top, top)
    return w.astype(dtype)


def _both(
    weights: np.ndarray, mix: softshare.Mixture, lam: float = 1.0, **kw: object
) -> tuple[softshare.PenaltyResult, softshare.PenaltyResult]:
    return softshare.penalty(weights, mix, lam, **kw), reference.penalty(weights, mix, lam, **kw)  # type: ignore[arg-type]


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


@dataclasses.dataclass
class _Oracle:
    value: float
    grad_w: np.ndarray
    s0: np.ndarray
    scale: float  # sum_i |L_i|: what the value's rounding errors are relative to


def _scaled_oracle(w: np.ndarray, mix: softshare.Mixture, lam: float) -> _Oracle:
    """The penalty with ``(w - mu)^2 / (2 sigma^2)`` formed as ``((w - mu) / (sqrt 2 sigma))^2``.

    Finite wherever the log-densities are; the reference forms ``(w - mu)^2``
    first, which overflows for ``|w - mu| > 1.9e154`` whatever sigma is.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        x = np.asarray(w, dtype=np.float64).ravel()
        inv_sigma = np.exp(-0.5 * mix.log_var)
        q = (x[:, None] - mix.mu[None, :]) * (math.sqrt(0.5) * inv_sigma)
        terms = (mix.log_pi - HALF_LOG_2PI - 0.5 * mix.log_var)[None, :] - q * q
        top = np.max(terms, axis=1, keepdims=True)
        big_l = top[:, 0] + np.log(np.sum(np.exp(terms - top), axis=1))
        gamma = np.exp(terms - big_l[:, None])
        # gamma (w - mu) / sigma^2 = gamma q sqrt(2) / sigma, 0 where gamma is
        grad = lam * np.sum(
            np.where(gamma > 0, gamma * q * (math.sqrt(2.0) * inv_sigma), 0), axis=1
        )
    return _Oracle(
        value=-lam * float(np.sum(big_l)),
        grad_w=grad,
        s0=np.sum(gamma, axis=0),
        scale=lam * float(np.sum(np.abs(big_l))),
    )


# --- the sweep ------------------------------------------------------------------------------


@st.composite
def _extreme_problem(draw: st.DrawFn) -> tuple[object, ...]:
    m = draw(st.integers(1, 4))
    vec = lambda s: draw(st.lists(s, min_size=m, max_size=m))
    mu = vec(st.one_of(st.floats(-1.0, 1.0), st.floats(-1e300, 1e300), st.just(0.0)))
    log_var = vec(st.one_of(st.floats(-1400.0, 1400.0), st.floats(-200.0, 200.0)))
    logit = vec(st.one_of(st.floats(-5.0, 5.0), st.floats(-1e300, 1e300)))
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(1, 200))
    # weights: around the components (in their sigmas), or anywhere in range
    rel = draw(st.lists(st.floats(-50.0, 50.0), min_size=n, max_size=n))
    which = draw(st.lists(st.integers(0, m - 1), min_size=n, max_size=n))
    top = 3e38 if dtype == np.float32 else 1e300
    anywhere = draw(st.lists(st.floats(-top, top), min_size=0, max_size=5))
    lam = draw(st.sampled_from([1.0, 0.1, 1e-42, 1e-300, 1e39, 1e300]))
    target = draw(st.sampled_from(softshare.simd_targets()))
    return mu, log_var, logit, dtype, rel, which, anywhere, lam, target


#: Examples of the sweep (.ci/sanitize runs fewer under the sanitizers).
EXAMPLES = int(os.environ.get("SOFTSHARE_EXTREMES_EXAMPLES", "300"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problem=_extreme_problem())
def test_hypothesis_extremes(problem: tuple[object, ...]) -> None:
    mu, log_var, logit, dtype, rel, which, anywhere, lam, target = problem
    try:
        mix = softshare.Mixture(mu, log_var, logit)  # type: ignore[arg-type]
    except ValueError as err:
        assert re.search(r"log_var\[\d+\] = .* is outside the range", str(err)), err  # noqa: PT017
        event("log_var beyond +-708: ValueError")
        return
    top = float(np.finfo(dtype).max)  # type: ignore[arg-type]
    with np.errstate(over="ignore", invalid="ignore"):
        around = mix.mu[which] + np.asarray(rel) * mix.sigma[which]  # type: ignore[index]
    w64 = np.concatenate([np.clip(np.nan_to_num(around), -top, top), anywhere])  # type: ignore[arg-type]
    w64 = np.clip(w64, -1e300, 1e300)
    w = w64.astype(dtype)  # type: ignore[call-overload]
    lam_f = float(lam)  # type: ignore[arg-type]

    # The reference is exact only while every (w - mu)^2 is a float64 number.
    squares_fit = bool(np.all(np.abs(w64[:, None] - mix.mu[None, :]) < 1e154))
    try:
        ref = reference.penalty(w, mix, lam_f)
    except ValueError as err:
        ref_err: ValueError | None = err
    else:
        ref_err = None
    before = softshare.simd_target()
    _core.set_simd_target(str(target))
    try:
        native = softshare.penalty(w, mix, lam_f)
    except ValueError as err:
        native_err: ValueError | None = err
    else:
        native_err = None
    finally:
        _core.set_simd_target(before)
    assert ref_err is None or "penalty overflowed" in str(ref_err)
    if native_err is not None:
        assert DOCUMENTED.search(str(native_err)), f"undocumented ValueError: {native_err}"
        # the kernel overflows where the reference does (up to rounding at the edge)
        if ref_err is None:
            assert abs(ref.value) > 1e306, f"the kernel raised {native_err!r}, the reference not"
        event("the penalty overflowed: ValueError")
        return
    _no_nan(native)
    if ref_err is None and squares_fit:
        assert_agrees(native, ref, w, mix, lam_f)
        event("compared with the reference")
        return
    event("compared with the scaled oracle")
    expected = _scaled_oracle(w, mix, lam_f)
    assert math.isfinite(expected.value), "the kernel gave a value where none is representable"
    assert abs(native.value - expected.value) <= 1e-5 * expected.scale


def test_float64_terms_below_the_smallest_subnormal() -> None:
    # z^2 of a weight 2.5e-162 from a component of sigma e^15.5 is below
    # float64's smallest subnormal; the reference's d^2 rounds to 5e-324 (found
    # by hypothesis). The kernel, which works with gamma scaled by 2^256
    # (tile-inl.hpp: no subnormal products), gets that subnormal too (it used
    # to give 0), on every SIMD path.
    w = np.array([2.46479649e-162])
    mix = softshare.Mixture([0.0], [31.0], [0.0])
    native, ref = softshare.penalty(w, mix, 1.0), softshare.reference.penalty(w, mix, 1.0)
    assert ref.stats[2][0] > 0.0
    assert native.stats[2][0] == ref.stats[2][0]
    assert_agrees(native, ref, w, mix, 1.0)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("lam", [2.0, 3.0, 0.7])
def test_a_subnormal_float32_gradient_is_rounded_once(lam: float) -> None:
    # lam * dOmega/dw = -7.4e-44 * lam/2: below float32's smallest normal number; unscaling
    # before multiplying by lam rounded twice (one subnormal step off)
    mix = softshare.Mixture(mu=[1.0], log_var=[100.0], logit=[0.0])
    w = np.zeros(5, np.float32)
    got = softshare.penalty(w, mix, lam).grad_w
    want = softshare.reference.penalty(w.astype(np.float64), mix, lam).grad_w.astype(np.float32)
    np.testing.assert_array_equal(got, want)
