"""Extreme finite inputs swept by hypothesis, and the cases it found: the reference's answer.

Every SIMD path, float32 and float64, mixtures from ordinary to 1e300, weights around the
components or anywhere in range: a documented ValueError, the float64 reference's answer
within condition-aware bounds, or (where the reference's squares overflow) a scaled oracle's.
The hand-picked reproducers: test_extremes.py.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, reference

from tests.kernel._extremes import (
    DOCUMENTED,
    DTYPES,
    _no_nan,
    _scaled_oracle,
    assert_agrees,
)

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize


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
