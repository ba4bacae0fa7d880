"""The grouped kernel: narrow mixtures of many components skip the components a
weight cannot see (csrc/softshare/grouping.hpp), and must give the full
evaluation's results.

The full evaluation is the same kernel on chunks too short to be grouped
(``_core._grouping`` says which calls are): every weight's grad_w and gamma
are then bit for bit those of the grouped pass when the means are in order,
and the sums agree to float accuracy (they differ in order of summation only).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, reference

from tests.conftest import assert_results_close, tolerance

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

BLOCK = _core.block_size
# Long enough to be grouped (several blocks and a short tail), and the chunk
# of the plain evaluation, short enough not to be.
N = 8 * BLOCK + 777
CHUNK = 4 * BLOCK
DTYPES = [np.float32, np.float64]
# How closely sums in another order agree (relative to the largest entry).
SUM_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


def codebook(w: np.ndarray, m: int, width: float = 0.5, *, seed: int = 0) -> softshare.Mixture:
    """The issue's setup: means spread evenly over the weights' range, sigma =
    width x their spacing (0.5: half of it), random logits."""
    lo, hi = float(np.min(w)), float(np.max(w))
    mu = np.linspace(lo, hi, m)
    sigma = width * (hi - lo) / (m - 1)
    logit = np.random.default_rng(seed).normal(0.0, 1.0, m)
    return softshare.Mixture(mu=mu, log_var=np.full(m, 2 * np.log(sigma)), logit=logit)


def grouped(mix: softshare.Mixture, n: int, dtype: type) -> bool:
    return bool(_core._grouping(mix.mu, mix.log_var, mix.logit, n, dtype == np.float64)[0])


def full(
    w: np.ndarray, mix: softshare.Mixture, lam: float, responsibilities: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """(grad_w, stats, gamma, sum L) of the plain kernel, chunk by chunk."""
    assert not grouped(mix, CHUNK, w.dtype.type)
    parts = [
        softshare.penalty(w[i : i + CHUNK], mix, lam, responsibilities=responsibilities)
        for i in range(0, w.size, CHUNK)
    ]
    gamma = np.concatenate([p.gamma for p in parts]) if responsibilities else None
    return (
        np.concatenate([p.grad_w for p in parts]),
        np.sum([p.stats for p in parts], axis=0),
        gamma,
        float(np.sum([p.sum_log_density for p in parts])),
    )


def check_against_full(
    w: np.ndarray,
    mix: softshare.Mixture,
    lam: float = 0.3,
    *,
    bitwise: bool = True,
    responsibilities: bool = False,
) -> softshare.PenaltyResult:
    dtype = w.dtype.type
    got = softshare.penalty(w, mix, lam, responsibilities=responsibilities)
    g, stats, gamma, sum_l = full(w, mix, lam, responsibilities)
    if bitwise:
        assert got.grad_w.tobytes() == g.tobytes()
        if responsibilities:
            assert got.gamma.tobytes() == gamma.tobytes()
    else:
        # The components in another order: grad_w's terms cancel differently.
        atol = SUM_RTOL[dtype] * float(np.max(np.abs(g)))
        np.testing.assert_allclose(got.grad_w, g, rtol=0, atol=atol)
        if responsibilities:
            np.testing.assert_allclose(got.gamma, gamma, rtol=0, atol=10 * SUM_RTOL[dtype])
    # Each sum against its own size (S1 cancels: against sqrt(S0 S2), what
    # Cauchy-Schwarz bounds it by), and a floor far below every entry that
    # matters (float32 terms near underflow are subnormal, without precision).
    size = np.abs(stats) + np.sqrt(np.abs(stats[0] * stats[2]))
    bound = 10 * SUM_RTOL[dtype] * size + 1e-25 * np.max(np.abs(stats), axis=1, keepdims=True)
    assert np.all(np.abs(got.stats - stats) <= bound)
    assert got.sum_log_density == pytest.approx(sum_l, rel=SUM_RTOL[dtype], abs=0)
    return got


def test_which_calls_are_grouped() -> None:
    w = np.random.default_rng(0).normal(0.0, 0.1, 10_000)
    for dtype in DTYPES:
        for m in (64, 256, 1024):
            mix = codebook(w, m)
            assert grouped(mix, N, dtype)
            assert not grouped(mix, CHUNK, dtype)  # too few weights to pay for the plan
            wide = codebook(w, m, width=m / 4)  # sigma a quarter of the range: nothing to skip
            assert not grouped(wide, N, dtype)
        assert not grouped(codebook(w, 16), N, dtype)  # few components
    active, window, cells = _core._grouping(*_params(codebook(w, 256)), 10**6, False)
    assert active
    assert cells > 256
    assert window < 32  # float32: some 15 standard deviations each side, cells of half a spacing


def _params(mix: softshare.Mixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return mix.mu, mix.log_var, mix.logit


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [64, 256])
def test_matches_full_and_reference(dtype: type, m: int) -> None:
    rng = np.random.default_rng(m)
    w = rng.normal(0.0, 0.1, N).astype(dtype)
    mix = codebook(w, m)
    assert grouped(mix, N, dtype)
    got = check_against_full(w, mix)
    ref = reference.penalty(w, mix, 0.3)
    assert_results_close(got, ref, tolerance(dtype), lam=0.3, weights=w, mixture=mix)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_responsibilities_exact(dtype: type) -> None:
    rng = np.random.default_rng(5)
    w = rng.normal(0.0, 0.1, N).astype(dtype)
    mix = codebook(w, 64, width=0.3)
    got = check_against_full(w, mix, responsibilities=True)
    assert isinstance(got.gamma, np.ndarray)
    assert np.mean(got.gamma == 0) > 0.5  # most are skipped, and exactly 0
    ref = reference.penalty(w, mix, responsibilities=True)
    np.testing.assert_allclose(got.gamma, ref.gamma, rtol=0, atol=10 * tolerance(dtype))


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_bit_identical_across_threads(dtype: type) -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0.0, 0.1, 3 * N).astype(dtype)
    mix = codebook(w, 256)
    one = softshare.penalty(w, mix, 0.3, n_threads=1)
    for n_threads in (2, 3):
        other = softshare.penalty(w, mix, 0.3, n_threads=n_threads)
        assert other.sum_log_density == one.sum_log_density
        assert other.stats.tobytes() == one.stats.tobytes()
        assert other.grad_w.tobytes() == one.grad_w.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
def test_means_out_of_order(dtype: type) -> None:
    rng = np.random.default_rng(4)
    w = rng.normal(0.0, 0.1, N).astype(dtype)
    mix = codebook(w, 128)
    order = rng.permutation(128)
    shuffled = softshare.Mixture(
        mu=mix.mu[order], log_var=mix.log_var[order], logit=mix.logit[order]
    )
    assert grouped(shuffled, N, dtype)
    got = check_against_full(w, shuffled, bitwise=False, responsibilities=True)
    in_order = softshare.penalty(w, mix, 0.3).stats[:, order]
    for s_got, s_ref in zip(got.stats, in_order):
        atol = 10 * SUM_RTOL[dtype] * float(np.max(np.abs(s_ref)))
        np.testing.assert_allclose(s_got, s_ref, rtol=0, atol=atol)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_on_cell_boundaries_and_means(dtype: type) -> None:
    # The grid of grouping.hpp: 3 M cells over the means' range widened by a
    # quarter on each side, origin and scale rounded to the weights' dtype.
    m = 64
    rng = np.random.default_rng(6)
    mix = codebook(rng.normal(0.0, 0.1, 1000), m)
    mu = mix.mu.astype(dtype).astype(np.float64)
    span = mu[-1] - mu[0]
    x0 = dtype(mu[0] - 0.25 * span)
    inv_h = dtype(3 * m / (1.5 * span))
    k = np.arange(3 * m + 1)
    edges = (x0 + k.astype(dtype) / inv_h).astype(dtype)
    special = np.concatenate(
        [
            edges,
            np.nextafter(edges, dtype(-np.inf)),
            np.nextafter(edges, dtype(np.inf)),
            mu.astype(dtype),
            ((mu[1:] + mu[:-1]) / 2).astype(dtype),
        ]
    )
    w = np.resize(rng.permutation(special), N).astype(dtype)
    check_against_full(w, mix, responsibilities=True)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", DTYPES)
def test_far_outliers(dtype: type) -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(0.0, 0.1, N).astype(dtype)
    mix = codebook(w, 256)
    far = np.array([3.0, -3.0, 40.0, -1e3, 1e4], dtype=dtype)
    w[rng.choice(N, 300, replace=False)] = rng.choice(far, 300)
    got = check_against_full(w, mix)
    ref = reference.penalty(w, mix, 0.3)
    assert_results_close(got, ref, tolerance(dtype), lam=0.3, weights=w, mixture=mix)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", DTYPES)
def test_non_finite_weights_still_raise(dtype: type, bad: float) -> None:
    w = np.random.default_rng(8).normal(0.0, 0.1, N).astype(dtype)
    mix = codebook(w, 256)
    w[N - 5] = bad
    with pytest.raises(ValueError, match=rf"must be finite: found {bad} at index \({N - 5},\)"):
        softshare.penalty(w, mix)


def test_mixed_dtypes_and_a_wide_component() -> None:
    rng = np.random.default_rng(9)
    layers = [rng.normal(0.0, 0.1, N).astype(np.float32), rng.normal(0.0, 0.1, N)]
    mix = codebook(layers[1], 200)
    log_var = mix.log_var.copy()
    log_var[100] = 2 * np.log(0.5)  # one wide component among narrow ones
    mix = softshare.Mixture(mu=mix.mu, log_var=log_var, logit=mix.logit)
    got = softshare.penalty(layers, mix, 0.3)
    ref = reference.penalty(layers, mix, 0.3)
    assert_results_close(got, ref, tolerance(np.float32), lam=0.3, weights=layers, mixture=mix)
    for layer, g in zip(layers, got.grad_w):
        g_full = full(layer, mix, 0.3)[0]
        assert g.tobytes() == g_full.tobytes()


@st.composite
def _codebook_problem(draw: st.DrawFn) -> tuple[np.ndarray, softshare.Mixture, bool, bool]:
    dtype = draw(st.sampled_from(DTYPES))
    m = draw(st.integers(32, 300))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scale = 10.0 ** draw(st.floats(-4, 2))
    offset = draw(st.sampled_from([0.0, 1.0, -1e3])) * scale
    w = (offset + rng.normal(0.0, scale, N)).astype(dtype)
    outliers = draw(st.integers(0, 50))
    w[rng.choice(N, outliers, replace=False)] = offset + scale * rng.uniform(-30, 30, outliers)
    mu = np.sort(rng.uniform(np.min(w), np.max(w), m)) if draw(st.booleans()) else None
    mix = codebook(w, m, width=draw(st.floats(0.05, 3.0)), seed=seed)
    if mu is not None:
        mix = softshare.Mixture(mu=mu, log_var=mix.log_var, logit=mix.logit)
    logit_spread = draw(st.sampled_from([1.0, 30.0, 300.0]))
    mix = softshare.Mixture(mu=mix.mu, log_var=mix.log_var, logit=logit_spread * mix.logit)
    shuffle = draw(st.booleans())
    if shuffle:
        order = rng.permutation(m)
        mix = softshare.Mixture(
            mu=mix.mu[order], log_var=mix.log_var[order], logit=mix.logit[order]
        )
    return w, mix, not shuffle, logit_spread == 1.0


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(problem=_codebook_problem())
def test_hypothesis_codebooks(problem: tuple[np.ndarray, softshare.Mixture, bool, bool]) -> None:
    w, mix, in_order, moderate_logits = problem
    event(f"grouped: {grouped(mix, w.size, w.dtype.type)}")
    got = check_against_full(w, mix, bitwise=in_order)
    if moderate_logits:
        # Logits hundreds apart make responsibilities far below float32's range,
        # which the float32 kernel (grouped or not) flushes to 0 and the
        # reference keeps: no comparison the condition-aware bounds cover.
        ref = reference.penalty(w, mix, 0.3)
        assert_results_close(got, ref, tolerance(w.dtype), lam=0.3, weights=w, mixture=mix)
