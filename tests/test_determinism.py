"""Bit-identical results for every thread count, call and Python thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import softshare

from conftest import random_mixture

# Several blocks of 4096 weights and an odd tail.
N = 300 * 4096 + 123


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
def test_several_rounds() -> None:
    # M = 1000 makes a round (1 MiB of block partials) hold 43 blocks, so
    # 100 blocks take three rounds of the driver.
    rng = np.random.default_rng(10)
    mix = random_mixture(rng, 1000)
    w = rng.normal(0, 0.3, 100 * 4096 - 7).astype(np.float32)
    serial = softshare.penalty(w, mix, n_threads=1)
    for n_threads in (2, 3):
        _assert_identical(serial, softshare.penalty(w, mix, n_threads=n_threads))


@pytest.mark.usefixtures("simd")
def test_lists_across_threads() -> None:
    rng = np.random.default_rng(8)
    mix = random_mixture(rng, 5)
    layers = [
        rng.normal(0, 0.3, (700, 1000)).astype(np.float32),
        rng.normal(0, 0.3, 4097),
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
