"""Partial sums: pieces of the weights, reduced by any engine, give the one-call result."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softshare

MIX = softshare.Mixture([0.0, -0.2, 0.25, 0.6], [-6.0, -4.0, -4.5, -3.0], [2.0, 0.0, -0.5, 0.3])


@st.composite
def split_problems(draw: st.DrawFn) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """A list of arrays and a random split of them into pieces (some empty), grouped."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    sizes = draw(st.lists(st.integers(0, 9000), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    arrays = [rng.normal(0.0, 0.3, n).astype(dtype) for n in sizes]
    pieces = []
    for a in arrays:
        cuts = sorted(draw(st.lists(st.integers(0, a.size), max_size=4)))
        pieces.extend(np.split(a, cuts))
    n_groups = draw(st.integers(1, max(1, len(pieces))))
    owner = [draw(st.integers(0, n_groups - 1)) for _ in pieces]
    groups = [[p for p, o in zip(pieces, owner) if o == g] for g in range(n_groups)]
    return arrays, groups


@settings(max_examples=60, deadline=None)
@given(problem=split_problems(), lam=st.floats(1e-6, 10.0))
def test_round_trip_of_random_splits(
    problem: tuple[list[np.ndarray], list[list[np.ndarray]]], lam: float
) -> None:
    arrays, groups = problem
    # float64: the same sums in another order; float32: the kernel first adds up to
    # 32 float32 terms per lane, so another split groups them differently
    rtol = 1e-12 if arrays[0].dtype == np.float64 else 1e-6
    once = softshare.penalty(arrays, MIX, lam)
    results = [softshare.penalty(g, MIX, lam) for g in groups]
    total = np.sum([r.partial_sums for r in results], axis=0)
    assert total.shape == (3 * MIX.n_components + 2,)
    assert total[1] == once.n
    reduced = softshare.from_partial_sums(total, MIX, lam)
    assert reduced.n == once.n
    np.testing.assert_allclose(reduced.value, once.value, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(reduced.stats, once.stats, rtol=rtol, atol=rtol * once.n)
    for name in ("grad_mu", "grad_sigma", "grad_log_var", "grad_logit"):
        got, want = getattr(reduced, name), getattr(once, name)
        scale = np.max(np.abs(want)) + lam * once.n
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=name)
    # each piece's grad_w is final: the pieces of the one-call grad_w, bit for bit
    pieces_grad = [g for r in results for g in r.grad_w]  # type: ignore[union-attr]
    pieces_w = [p for g in groups for p in g]
    whole = {id(a): (a, g) for a, g in zip(arrays, once.grad_w)}  # type: ignore[arg-type]
    for w, g in zip(pieces_w, pieces_grad):
        base, base_grad = next(
            v for v in whole.values() if np.shares_memory(v[0], w) or w.size == 0
        )
        if w.size:
            start = (w.ctypes.data - base.ctypes.data) // w.itemsize
            np.testing.assert_array_equal(g, base_grad[start : start + w.size])


def test_partial_sums_layout() -> None:
    w = np.array([-0.2, 0.0, 0.1, 0.6])
    r = softshare.penalty(w, MIX, 0.5)
    vec = r.partial_sums
    assert vec.dtype == np.float64
    assert vec[0] == r.sum_log_density
    assert vec[0] == pytest.approx(-r.value / 0.5, rel=1e-15)
    assert vec[1] == 4
    np.testing.assert_array_equal(vec[2:].reshape(3, -1), r.stats)
    twice = softshare.from_partial_sums(2 * vec, MIX, 0.5)
    assert twice.value == pytest.approx(2 * r.value, rel=1e-15)
    assert twice.n == 8


def test_bad_partial_sums() -> None:
    m = MIX.n_components
    with pytest.raises(ValueError, match=r"shape \(3M \+ 2,\) = \(14,\) for M = 4, got \(13,\)"):
        softshare.from_partial_sums(np.zeros(3 * m + 1), MIX)
    bad = np.zeros(3 * m + 2)
    bad[1] = 2.5
    with pytest.raises(ValueError, match="whole number"):
        softshare.from_partial_sums(bad, MIX)
    bad[1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        softshare.from_partial_sums(bad, MIX)
    with pytest.raises(TypeError, match=r"softshare\.Mixture"):
        softshare.from_partial_sums(np.zeros(3 * m + 2), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam must be"):
        softshare.from_partial_sums(np.zeros(3 * m + 2), MIX, -1.0)
