"""Bit-identical results for every thread count, call and Python thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import softshare
from softshare import _core

from tests.conftest import random_mixture

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

# Weights per block: the unit of parallel work and of the fixed-order reduction.
BLOCK = _core.block_size
# The driver keeps at most this many bytes of block partials (2 + 3 M float64
# each) per round (kRoundBytes in csrc/softshare/driver.hpp).
ROUND_BYTES = 1 << 20

# Several blocks and an odd tail.
N = 300 * BLOCK + 123


def _fields(r: softshare.PenaltyResult) -> list[np.ndarray]:
    gw = r.grad_w if isinstance(r.grad_w, list) else [r.grad_w]
    return [np.asarray(r.value), r.stats, r.grad_mu, r.grad_log_var, r.grad_logit, *gw]


def _assert_identical(a: softshare.PenaltyResult, b: softshare.PenaltyResult) -> None:
    for x, y in zip(_fields(a), _fields(b)):
        np.testing.assert_array_equal(x, y)
        assert x.tobytes() == y.tobytes()


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_counts_and_repeats(dtype: type) -> None:
    rng = np.random.default_rng(7)
    mix = random_mixture(rng, 16)
    w = rng.normal(0, 0.3, N).astype(dtype)
    serial = softshare.penalty(w, mix, 0.3, n_threads=1)
    for n_threads in (2, 3, 8, None, -1, 1):
        _assert_identical(serial, softshare.penalty(w, mix, 0.3, n_threads=n_threads))


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [1, 3, 16, 64, 65])
def test_responsibilities_change_no_bit(dtype: type, m: int) -> None:
    # With responsibilities the kernel runs its tiles one at a time; without,
    # up to 64 components, pass 3 of each tile shares a loop with pass 1 of the
    # next (block-inl.hpp pipelined_tiles). The same arithmetic: the same bits.
    rng = np.random.default_rng(m)
    mix = random_mixture(rng, m)
    for n in (1, 63, 64, 65, 2 * BLOCK + 77):
        w = rng.normal(0, 0.3, n).astype(dtype)
        plain = softshare.penalty(w, mix, 0.3, n_threads=1)
        with_gamma = softshare.penalty(w, mix, 0.3, n_threads=1, responsibilities=True)
        _assert_identical(plain, with_gamma)


def test_block_size() -> None:
    # Blocks hold whole tiles of every SIMD target (up to 64 weights).
    assert isinstance(BLOCK, int)
    assert BLOCK > 0
    assert BLOCK % 64 == 0


@pytest.mark.usefixtures("simd")
def test_several_rounds() -> None:
    # M = 1000 makes a round hold 43 blocks, so 100 blocks (the last one short)
    # take three rounds of the driver.
    m, n_blocks = 1000, 100
    round_blocks = ROUND_BYTES // ((2 + 3 * m) * 8)
    assert 2 * round_blocks < n_blocks
    rng = np.random.default_rng(10)
    mix = random_mixture(rng, m)
    w = rng.normal(0, 0.3, n_blocks * BLOCK - 7).astype(np.float32)
    serial = softshare.penalty(w, mix, n_threads=1)
    for n_threads in (2, 3):
        _assert_identical(serial, softshare.penalty(w, mix, n_threads=n_threads))


@pytest.mark.usefixtures("simd")
def test_lists_across_threads() -> None:
    rng = np.random.default_rng(8)
    mix = random_mixture(rng, 5)
    layers = [
        rng.normal(0, 0.3, (700, 1000)).astype(np.float32),
        rng.normal(0, 0.3, BLOCK + 1),
        rng.normal(0, 0.3, (10, 10)).astype(np.float32),
    ]
    serial = softshare.penalty(layers, mix, n_threads=1)
    for n_threads in (2, 3, 8):
        _assert_identical(serial, softshare.penalty(layers, mix, n_threads=n_threads))


def test_concurrent_python_threads() -> None:
    rng = np.random.default_rng(9)
    problems = [
        (rng.normal(0, 0.3, 300_000 + k).astype(np.float32), random_mixture(rng, 3 + 5 * k))
        for k in range(4)
    ]
    serial = [softshare.penalty(w, mix, n_threads=1) for w, mix in problems]

    def work(k: int) -> list[softshare.PenaltyResult]:
        w, mix = problems[k]
        return [softshare.penalty(w, mix, n_threads=2) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    for k, runs in enumerate(results):
        for r in runs:
            _assert_identical(serial[k], r)
