"""``softshare.penalty(..., out=)``: grad_w written into the caller's arrays."""

from __future__ import annotations

import numpy as np
import pytest

import softshare

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

MIX = softshare.Mixture([0.0, 0.2, -0.3], [-5.0, -4.0, -4.5], [1.0, 0.0, 0.5])


def test_out_receives_the_same_gradient_and_is_returned() -> None:
    rng = np.random.default_rng(0)
    w = [rng.normal(0, 0.2, (30, 7)).astype(np.float32), rng.normal(0, 0.2, 5)]
    out = [np.full((30, 7), np.nan, np.float32), np.full(5, np.nan)]
    r = softshare.penalty(w, MIX, 0.3, out=out)
    fresh = softshare.penalty(w, MIX, 0.3)
    assert r.grad_w[0] is out[0]
    assert r.grad_w[1] is out[1]
    for a, b in zip(out, fresh.grad_w):
        np.testing.assert_array_equal(a, b)
    assert r.value == fresh.value
    single = np.empty(5)
    assert softshare.penalty(w[1], MIX, 0.3, out=single).grad_w is single
    np.testing.assert_array_equal(single, fresh.grad_w[1])


def test_out_with_lam_zero_is_zeroed() -> None:
    out = np.full(4, 7.0)
    softshare.penalty(np.linspace(-1, 1, 4), MIX, 0.0, out=out)
    assert np.all(out == 0.0)


def test_bad_out() -> None:
    w = np.linspace(-1, 1, 6).astype(np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        softshare.penalty(w, MIX, out=np.empty(6))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        softshare.penalty(w, MIX, out=[0.0] * 6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        softshare.penalty(w, MIX, out=np.empty(5, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        softshare.penalty(w, MIX, out=np.empty(12, np.float32)[::2])
    readonly = np.empty(6, np.float32)
    readonly.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        softshare.penalty(w, MIX, out=readonly)
    with pytest.raises(ValueError, match="overlaps weights"):
        softshare.penalty(w, MIX, out=w)
    both = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"out\[0\] overlaps weights\[1\]"):
        softshare.penalty([both[:4], both[4:]], MIX, out=[both[6:], np.empty(6, np.float32)])
    with pytest.raises(ValueError, match="one per weights array"):
        softshare.penalty([w, w], MIX, out=[np.empty(6, np.float32)])
