"""Fixtures and helpers for every room: the SIMD paths, one torch thread, tolerances, comparisons."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

import softshare
from softshare import _core, reference

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import NDArray

SIMD_TARGETS = softshare.simd_targets()


@pytest.fixture(params=SIMD_TARGETS)
def simd(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once on every SIMD path this CPU supports."""
    before = softshare.simd_target()
    _core.set_simd_target(request.param)
    try:
        yield str(request.param)
    finally:
        _core.set_simd_target(before)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny networks: torch threads only cost there (and on a busy machine, a lot)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_mixture(rng: np.random.Generator, m: int, *, spread: float = 0.3) -> softshare.Mixture:
    """A mixture with means in [-spread, spread] and sigmas 1e-3 .. 0.3."""
    return softshare.Mixture(
        mu=rng.uniform(-spread, spread, m),
        log_var=rng.uniform(2 * np.log(1e-3), 2 * np.log(0.3), m),
        logit=rng.normal(0.0, 1.0, m),
    )


def tolerance(dtype: np.dtype[np.floating] | type) -> float:
    """Relative tolerance of native vs reference for weights of this dtype."""
    return 1e-12 if np.dtype(dtype) == np.float64 else 2e-5


@np.errstate(over="ignore")
def assert_close(
    actual: NDArray[np.floating] | float,
    desired: NDArray[np.floating] | float,
    rtol: float,
    *,
    scale: float | NDArray[np.floating] = 0.0,
    what: str = "",
) -> None:
    """|actual - desired| <= rtol * (|desired| + max|desired| + scale), elementwise.

    ``scale`` is the natural size of each entry before cancellation (for a sum,
    the sum of its terms' magnitudes), so that a sum that cancels to ~0 is
    judged by the size of what was added up.
    """
    a = np.asarray(actual, dtype=np.float64)
    d = np.asarray(desired, dtype=np.float64)
    assert a.shape == d.shape, what
    bound = rtol * (np.abs(d) + float(np.max(np.abs(d), initial=0.0)) + np.asarray(scale))
    bound = np.where(np.isnan(bound), np.inf, bound)  # a scale that overflowed bounds nothing
    err = np.abs(a - d)
    bad = ~(err <= bound)
    if np.any(bad):
        i = np.flatnonzero(bad.ravel())[0]
        msg = (
            f"{what}: {int(bad.sum())} of {a.size} entries differ beyond rtol={rtol}; first at "
            f"flat index {i}: actual {a.ravel()[i]!r}, desired {d.ravel()[i]!r}, "
            f"bound {np.broadcast_to(bound, a.shape).ravel()[i]!r}"
        )
        raise AssertionError(msg)


def _flat64(weights: object) -> NDArray[np.float64]:
    items = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    parts = [np.asarray(a, dtype=np.float64).ravel() for a in items]
    return np.concatenate(parts) if parts else np.zeros(0)


def assert_results_close(
    native: softshare.PenaltyResult,
    ref: softshare.PenaltyResult,
    rtol: float,
    *,
    weights: object,
    mixture: softshare.Mixture,
    lam: float = 1.0,
) -> None:
    """Compare two PenaltyResults field by field, with condition-aware bounds.

    A kernel that computes the log-terms l_ij with relative error eps changes
    gamma_ij by about gamma_ij * eps * sum_k gamma_ik |l_ik|, so every sum is
    compared against the sum of its terms' magnitudes times (1 + Lambda_i),
    Lambda_i = sum_j gamma_ij |l_ij|. For weights within a few sigmas of their
    components Lambda_i is O(1) and the bound is plain rtol; for weights
    thousands of sigmas out it widens exactly as float rounding does.
    """
    assert native.n == ref.n
    fields = {
        name: getattr(native, name)
        for name in (
            "value",
            "grad_w",
            "grad_mu",
            "grad_sigma",
            "grad_log_var",
            "grad_logit",
        )
    }
    fields["S0"], fields["S1"], fields["S2"] = native.stats
    assert_fields_close(fields, ref, rtol, weights=weights, mixture=mixture, lam=lam)


@np.errstate(under="ignore", over="ignore", invalid="ignore")
def assert_fields_close(
    native: dict[str, object],
    ref: softshare.PenaltyResult,
    rtol: float,
    *,
    weights: object,
    mixture: softshare.Mixture,
    lam: float = 1.0,
    atol_w: float = 0.0,
    atol_gamma: float = 0.0,
) -> None:
    """:func:`assert_results_close` for the fields a result has (e.g. a torch op's).

    ``atol_w`` is the absolute accuracy of one ``w_i - mu_j`` (the smallest
    normal number of the weights' dtype, where subnormal differences lose
    their relative accuracy) and ``atol_gamma`` that of one responsibility
    (the smallest normal number of the precision it is computed in, below
    which it flushes to 0); every bound widens by what they add up to.
    """
    w = _flat64(weights)
    assert w.size == ref.n
    # extreme inputs make some bounds overflow to inf: those entries are then unbounded
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        log_t = reference.log_terms(w, mixture)
        top = np.max(log_t, axis=1, keepdims=True) if w.size else np.zeros((0, 1))
        big_l = top[:, 0] + np.log(np.sum(np.exp(log_t - top), axis=1))
        gamma = np.exp(log_t - big_l[:, None])
        # a log-term of -inf (pi_j = 0, or a distance whose square overflows) is a
        # term that is exactly 0 in every precision: it adds nothing to the
        # condition number nor to the slack (0 * inf would make the bounds NaN,
        # which bounds nothing)
        finite = np.isfinite(log_t)
        abs_l = np.where(finite, np.abs(log_t), 0.0)
        cond = 1.0 + np.sum(gamma * abs_l, axis=1, keepdims=True)
        # a responsibility that is 0 in float64 may not be in the tested precision:
        # the log-terms' own rounding, rtol (|l_ij| + |L_i|), bounds how far it can rise
        slack = np.where(finite, rtol * (abs_l + np.abs(big_l)[:, None]), 0.0)
        gamma_hi = np.exp(np.minimum(0.0, log_t - big_l[:, None] + slack))
        g = gamma * cond + (np.maximum(gamma_hi - gamma, 0.0) + atol_gamma) / rtol
        # products formed in units of sigma_j lose everything below the smallest
        # subnormal number: atol_w in those units, too
        d = np.abs(w[:, None] - mixture.mu[None, :]) + atol_w * (1.0 + mixture.sigma) / rtol
        var, sigma = mixture.var, mixture.sigma
        s0 = np.sum(g, axis=0)
        s1 = np.sum(g * d, axis=0)
        s2 = np.sum(g * d * d, axis=0)
        scales = {
            "value": lam * float(np.sum((np.abs(big_l) + 1.0) * cond[:, 0])),
            "S0": s0,
            "S1": s1,
            "S2": s2,
            "grad_logit": lam * (s0 + ref.n * mixture.pi),
            "grad_mu": lam * s1 / var,
            "grad_sigma": lam * ((s0 + s2 / var) / sigma),
            "grad_log_var": lam * (s0 + s2 / var),
        }
    expected = {
        "value": ref.value,
        "S0": ref.stats[0],
        "S1": ref.stats[1],
        "S2": ref.stats[2],
        "grad_logit": ref.grad_logit,
        "grad_mu": ref.grad_mu,
        "grad_sigma": ref.grad_sigma,
        "grad_log_var": ref.grad_log_var,
    }
    for name, actual in native.items():
        if name == "grad_w":
            continue
        assert_close(actual, expected[name], rtol, scale=scales[name], what=name)  # type: ignore[arg-type]
    if "grad_w" not in native:
        return
    gw_n = native["grad_w"] if isinstance(native["grad_w"], list) else [native["grad_w"]]
    gw_r = ref.grad_w if isinstance(ref.grad_w, list) else [ref.grad_w]
    assert len(gw_n) == len(gw_r)
    gw_scale = lam * np.sum(g * d / var, axis=1)
    offset = 0
    for a, ref_g in zip(gw_n, gw_r):
        assert a.shape == ref_g.shape
        assert a.dtype == ref_g.dtype
        # the output's own resolution: below the smallest normal number a float32 result
        # is a multiple of 2^-149, and float32 arithmetic whose relative error is within
        # rtol can still land one such step from the reference's rounding (a value at a
        # rounding boundary); one step, the smallest subnormal, is the floor of the bound
        floor = float(np.finfo(a.dtype).smallest_subnormal) / rtol
        sc = gw_scale[offset : offset + a.size].reshape(a.shape) + floor
        assert_close(a, ref_g, rtol, scale=sc, what="grad_w")
        offset += a.size


@pytest.fixture(params=[False, True], ids=["x64-off", "x64-on"])
def jax_x64(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Run the test with JAX's 64-bit types off (float32 at most), then on."""
    jax = pytest.importorskip("jax")
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", request.param)
    try:
        yield bool(request.param)
    finally:
        jax.config.update("jax_enable_x64", before)
