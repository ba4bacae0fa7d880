"""The kernel's fixed shift, and the weights it cannot serve.

The block kernel (csrc/softshare/block-inl.hpp) computes each weight's terms
as 2^(l_j) with the mixture's constants shifted so that every l_j <= 0: no
per-weight maximum. A weight so far from every component that the sum of its
terms falls below kMinSum (2^-63 for float32, 2^-511 for float64) is rescued:
its tile's first pass runs again with that weight's terms shifted by their
largest l_j. The other weights of the tile must come out bit for bit as they
would without the far weight beside them, and the far weight as the
reference gives it.
"""

from __future__ import annotations

import numpy as np
import pytest

import softshare
from softshare import _core, reference

from conftest import assert_results_close, tolerance

BLOCK = _core.block_size
SIGMA = 0.005  # under half the spacing of 64 means in [-0.5, 0.5]: grouped
# Distances beyond the outermost mean, in sigmas: 12 gives a sum of about
# 2^-104 (rescued in float32 only), 30 about 2^-649 (rescued in both), 40 and
# 1e4 a sum of exactly 0.
FAR = [12.0, 30.0, 40.0, 1e4]


def mixture(m: int, seed: int) -> softshare.Mixture:
    rng = np.random.default_rng(seed)
    return softshare.Mixture(
        mu=np.linspace(-0.5, 0.5, m),
        log_var=np.full(m, 2 * np.log(SIGMA)),
        logit=rng.normal(0.0, 1.0, m),
    )


def near_weights(mix: softshare.Mixture, n: int, rng: np.random.Generator) -> np.ndarray:
    """Weights within a few sigmas of the means: none of them rescued."""
    return rng.choice(mix.mu, n) + rng.normal(0.0, 2 * SIGMA, n)


def with_far_weights(w: np.ndarray, every: int) -> tuple[np.ndarray, np.ndarray]:
    """w with every `every`-th weight moved far outside the mixture, and where."""
    far = w.copy()
    where = np.arange(0, w.size, every)
    sign = np.where(np.arange(where.size) % 2 == 0, 1.0, -1.0)
    dist = np.resize(FAR, where.size)
    far[where] = sign * (0.5 + dist * SIGMA)
    return far, where


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("m", "n"), [(1, 200), (3, 1000), (16, 2 * BLOCK + 77), (65, 3000), (64, 8 * BLOCK + 777)]
)
@pytest.mark.parametrize("responsibilities", [False, True])
def test_rescue_changes_no_other_weight(
    dtype: type, m: int, n: int, responsibilities: bool
) -> None:
    mix = mixture(m, seed=m)
    rng = np.random.default_rng(n)
    w = near_weights(mix, n, rng).astype(dtype)
    far, where = with_far_weights(w, every=37)
    if m == 64:  # the grouped kernel: far weights fall outside its grid
        assert _core._grouping(mix.mu, mix.log_var, mix.logit, n, dtype == np.float64)[0]
    kw = {"n_threads": 1, "responsibilities": responsibilities}
    near = softshare.penalty(w, mix, 0.3, **kw)
    got = softshare.penalty(far, mix, 0.3, **kw)
    keep = np.ones(n, bool)
    keep[where] = False
    assert got.grad_w[keep].tobytes() == near.grad_w[keep].tobytes()
    if responsibilities:
        assert got.gamma[keep].tobytes() == near.gamma[keep].tobytes()
        assert np.all(np.isfinite(got.gamma))
    # the far weights themselves, and everything summed over them
    assert np.all(np.isfinite(got.grad_w))
    ref = reference.penalty(far, mix, 0.3, responsibilities=responsibilities)
    assert_results_close(got, ref, tolerance(dtype), weights=far, mixture=mix, lam=0.3)
    if responsibilities:
        np.testing.assert_allclose(
            got.gamma[where], ref.gamma[where], rtol=0, atol=8 * np.finfo(dtype).eps
        )


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rescued_weights_keep_their_threads(dtype: type) -> None:
    # A tile with a rescued weight is still the same tile for every thread count.
    mix = mixture(5, seed=1)
    w = near_weights(mix, 40 * BLOCK + 5, np.random.default_rng(2)).astype(dtype)
    far, _ = with_far_weights(w, every=101)
    serial = softshare.penalty(far, mix, n_threads=1)
    for n_threads in (2, 3):
        other = softshare.penalty(far, mix, n_threads=n_threads)
        assert other.grad_w.tobytes() == serial.grad_w.tobytes()
        assert other.stats.tobytes() == serial.stats.tobytes()
        assert other.value == serial.value
