"""grad_w's memory without ``out=``: a dropped gradient's buffer serves the next call.

From 1 MiB on, ``softshare.penalty`` makes ``grad_w`` a view of a buffer that
goes back to a one-slot spare when the array and every view of it are gone
(``gradient_array`` in ``csrc/gradient_buffer.hpp``): a loop that rebinds its result
alternates between two buffers instead of asking the system for fresh pages
every call. No array a caller still holds may ever be written, and a reused
buffer's old contents must never show.
"""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

import softshare

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

MIX = softshare.Mixture([-0.2, 0.0, 0.25], [-4.0, -6.0, -4.5], [0.0, 1.0, -0.5])
N = 400_000  # 1.6 MB of float32: above the 1 MiB threshold


def address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def weights(seed: int, n: int = N, dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, n).astype(dtype)


def expected_grad(w: np.ndarray, lam: float = 1e-3) -> np.ndarray:
    out = np.full(w.shape, np.nan, w.dtype)
    softshare.penalty(w, MIX, lam, n_threads=1, out=out)
    return out


def test_a_dropped_gradient_is_reused_and_overwritten() -> None:
    w1, w2 = weights(1), weights(2)
    r = softshare.penalty(w1, MIX, 1e-3)
    first = address(r.grad_w)
    r.grad_w[:] = np.nan  # the caller may scribble on it: none of it may come back
    del r
    r = softshare.penalty(w2, MIX, 1e-3)
    assert address(r.grad_w) == first
    np.testing.assert_array_equal(r.grad_w, expected_grad(w2))


def test_rebinding_in_a_loop_alternates_between_two_buffers() -> None:
    w = weights(3)
    seen = set()
    r = softshare.penalty(w, MIX, 1e-3)
    for _ in range(6):
        r = softshare.penalty(w, MIX, 1e-3)
        seen.add(address(r.grad_w))
    assert len(seen) == 2
    np.testing.assert_array_equal(r.grad_w, expected_grad(w))


def test_a_held_gradient_or_a_view_of_it_is_never_written() -> None:
    w1, w2 = weights(4), weights(5)
    r1 = softshare.penalty(w1, MIX, 1e-3)
    kept = r1.grad_w.copy()
    r2 = softshare.penalty(w2, MIX, 1e-3)
    assert not np.shares_memory(r1.grad_w, r2.grad_w)
    view = r1.grad_w[10:]
    del r1, r2  # r2's buffer becomes the spare; r1's stays alive through the view
    r3 = softshare.penalty(w2, MIX, 1e-3)
    r4 = softshare.penalty(w2, MIX, 1e-3)
    for r in (r3, r4):
        assert not np.shares_memory(view, r.grad_w)
    np.testing.assert_array_equal(view, kept[10:])
    memory = memoryview(r3.grad_w)  # an exported buffer keeps the array too
    copy = r3.grad_w.copy()
    del r3
    softshare.penalty(w1, MIX, 1e-3)
    np.testing.assert_array_equal(np.asarray(memory), copy)


def test_lam_zero_on_a_reused_buffer_is_exactly_zero() -> None:
    w = weights(6)
    r = softshare.penalty(w, MIX, 1.0)
    assert np.any(r.grad_w != 0)
    first = address(r.grad_w)
    del r
    r = softshare.penalty(w, MIX, 0.0)
    assert address(r.grad_w) == first
    assert not np.any(r.grad_w)


def test_the_buffer_serves_another_dtype_and_shape_of_the_same_size() -> None:
    w32 = weights(7, 2 * N).reshape(800, -1)
    r = softshare.penalty(w32, MIX, 1e-3)
    first = address(r.grad_w)
    del r
    w64 = weights(8, N, np.float64)
    r = softshare.penalty(w64, MIX, 1e-3)
    assert address(r.grad_w) == first
    assert r.grad_w.dtype == np.float64
    assert r.grad_w.shape == (N,)
    np.testing.assert_array_equal(r.grad_w, expected_grad(w64))


def test_a_list_of_arrays_and_a_failed_call_use_it_too() -> None:
    big, small = weights(9), weights(10, 1000)
    r = softshare.penalty([big, small], MIX, 1e-3)
    np.testing.assert_array_equal(r.grad_w[0], expected_grad(big))
    np.testing.assert_array_equal(r.grad_w[1], expected_grad(small))
    del r
    bad = weights(11)
    bad[-1] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        softshare.penalty(bad, MIX, 1e-3)
    r = softshare.penalty(big, MIX, 1e-3)
    np.testing.assert_array_equal(r.grad_w, expected_grad(big))


@pytest.mark.parametrize("n", [1000, N])
def test_the_gradient_is_an_ordinary_writeable_array(n: int) -> None:
    w = weights(12, n).reshape(-1, 100)
    g = softshare.penalty(w, MIX, 1e-3).grad_w
    assert g.shape == w.shape
    assert g.dtype == np.float32
    assert g.flags.c_contiguous
    assert g.flags.writeable
    assert g.flags.aligned
    if n < N:  # small: NumPy's own array
        assert g.base is None
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(g)), g)
    g2 = g.copy()
    g += 1.0
    np.testing.assert_array_equal(g, g2 + 1.0)


def test_threads_calling_at_once_each_get_their_own_gradient() -> None:
    inputs = [weights(20 + k) for k in range(4)]
    want = [expected_grad(w) for w in inputs]
    failures: list[str] = []

    def work(k: int) -> None:
        held = None
        for i in range(15):
            r = softshare.penalty(inputs[k], MIX, 1e-3, n_threads=1)
            if not np.array_equal(r.grad_w, want[k]):
                failures.append(f"thread {k}, call {i}")
            if i % 3 == 0:
                held = r  # keep some results alive across later calls
            if held is not None and not np.array_equal(held.grad_w, want[k]):
                failures.append(f"thread {k}, call {i}: a held gradient changed")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
