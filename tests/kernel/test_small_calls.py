"""Small calls: the one-array entry, the cached one-thread scratch, the cheap input checks.

``softshare.penalty`` of one ndarray goes through ``_core.penalty_array``,
which makes the :class:`PenaltyResult` itself; the one-thread pass keeps its
scratch between calls (``one_thread_scratch`` in ``csrc/softshare/workspace.hpp``);
``lam`` and ``n_threads`` are checked without the slow general checks. None of
it may change a bit or a message.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pytest

import softshare
from softshare import _core
from softshare._inputs import as_lam, as_n_threads, cpu_count, thread_request
from softshare._result import PenaltyResult

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

if TYPE_CHECKING:
    from numpy.typing import NDArray

MIX = softshare.Mixture([0.0, 0.1, -0.2], [-4.0, -3.0, -5.0], [0.0, 0.5, -0.5])


def _same(a: PenaltyResult, b: PenaltyResult) -> None:
    """Bit for bit the same result (grad_w of a one-array list compared as its array)."""
    assert list(vars(a)) == list(vars(b))
    for name in vars(a):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(y, list) and not isinstance(x, list):
            (y,) = y
        if isinstance(x, list):
            assert isinstance(y, list), name
            assert len(x) == len(y), name
            for xi, yi in zip(x, y):
                assert (xi.dtype, xi.shape) == (yi.dtype, yi.shape), name
                assert xi.tobytes() == yi.tobytes(), name
        elif isinstance(x, np.ndarray):
            assert isinstance(y, np.ndarray)
            assert (x.dtype, x.shape) == (y.dtype, y.shape), name
            assert x.tobytes() == y.tobytes(), name
        elif isinstance(x, float):
            assert isinstance(y, float)
            assert math.copysign(1.0, x) == math.copysign(1.0, y), name
            assert x == y or (math.isnan(x) and math.isnan(y)), name
        else:
            assert x == y, name


# --- the one-array entry ------------------------------------------------------------------


def test_the_result_is_the_dataclass_with_its_fields_in_order() -> None:
    r = softshare.penalty(np.linspace(-0.3, 0.3, 11, dtype=np.float32), MIX, 1e-3)
    assert type(r) is PenaltyResult
    assert list(vars(r)) == [f.name for f in dataclasses.fields(PenaltyResult)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 1.0  # type: ignore[misc]
    assert r.n == 11
    assert type(r.n) is int
    assert r.gamma is None
    assert dataclasses.replace(r, n=3).n == 3  # an ordinary instance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0,), (1,), (10,), (3, 4), (2, 0, 3), (4097,), (2, 3, 700)])
@pytest.mark.parametrize("responsibilities", [False, True])
def test_one_array_is_its_one_array_list(
    dtype: type, shape: tuple[int, ...], responsibilities: bool
) -> None:
    w = np.random.default_rng(1).normal(0.0, 0.2, shape).astype(dtype)
    for lam in (1e-3, 0.0, 2.0):
        one = softshare.penalty(w, MIX, lam, responsibilities=responsibilities)
        listed = softshare.penalty([w], MIX, lam, responsibilities=responsibilities)
        _same(one, listed)
        assert isinstance(one.grad_w, np.ndarray)
        assert one.grad_w.shape == shape
        if responsibilities:
            assert isinstance(one.gamma, np.ndarray)
            assert one.gamma.shape == (w.size, 3)
            assert one.gamma.dtype == dtype


def _declined() -> list[NDArray[np.generic]]:
    w = np.random.default_rng(2).normal(0.0, 0.2, 24)
    return [
        w[::2],  # not contiguous
        w.reshape(4, 6).T,  # Fortran order
        w.astype(">f8"),  # byte-swapped
        w.astype(np.float16),
        w.astype(np.int32),
        w.astype(np.longdouble),
        w > 0,
    ]


@pytest.mark.parametrize("w", _declined(), ids=lambda w: f"{w.dtype.str}-{w.flags.c_contiguous}")
def test_other_arrays_take_the_general_path(w: NDArray[np.generic]) -> None:
    # _core.penalty_array declines them (None); the result is the general path's.
    assert (
        _core.penalty_array(w, MIX.mu, MIX.log_var, MIX.logit, 1.0, 1, False, PenaltyResult) is None
    )
    _same(softshare.penalty(w, MIX, 0.5), softshare.penalty([w], MIX, 0.5))


def test_a_subclass_takes_the_general_path() -> None:
    class Sub(np.ndarray):  # type: ignore[type-arg]
        pass

    w = np.linspace(-1.0, 1.0, 9).view(Sub)
    r = softshare.penalty(w, MIX, 0.5)
    _same(r, softshare.penalty([np.asarray(w)], MIX, 0.5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flagged_passes_finish_in_python(dtype: type) -> None:
    # A non-finite weight: the general path's error, named in the caller's shape.
    w = np.zeros((3, 4), dtype)
    w[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"weights must be finite: found inf at index \(1, 2\)"):
        softshare.penalty(w, MIX)
    # A float32 gradient beyond float32's range: +inf (the kernel's own finish);
    # lam = 0 with a value beyond float64's range: flagged, Python finishes
    # with exact zeros.
    mix = softshare.Mixture([0.0], [-10.0], [0.0])
    far = np.array([[0.0, 3e38 if dtype is np.float32 else 1e300]], dtype)
    lam = 1.0 if dtype is np.float32 else 0.0
    if lam == 0.0:
        raw = _core.penalty_array(far, mix.mu, mix.log_var, mix.logit, lam, 1, False, PenaltyResult)
        assert isinstance(raw, tuple)
    one = softshare.penalty(far, mix, lam)
    _same(one, softshare.penalty([far], mix, lam))
    assert isinstance(one.grad_w, np.ndarray)
    assert one.grad_w.shape == (1, 2)
    assert one.grad_w[0, 1] == (np.inf if lam else 0.0)


def test_the_raw_entry_checks_its_contract() -> None:
    w = np.zeros(4)
    args = (1.0, 1, False, PenaltyResult)
    assert _core.penalty_array([0.0], MIX.mu, MIX.log_var, MIX.logit, *args) is None
    with pytest.raises(ValueError, match="1-D contiguous float64"):
        _core.penalty_array(w, MIX.mu.astype(np.float32), MIX.log_var, MIX.logit, *args)
    with pytest.raises(ValueError, match="1-D contiguous float64"):
        _core.penalty_array(w, MIX.mu[::2], MIX.log_var[::2], MIX.logit[::2], *args)
    with pytest.raises(ValueError, match="1-D contiguous float64"):
        _core.penalty_array(w, MIX.mu.reshape(1, 3), MIX.log_var, MIX.logit, *args)
    with pytest.raises(ValueError, match="same length"):
        _core.penalty_array(w, MIX.mu, MIX.log_var[:2], MIX.logit, *args)
    with pytest.raises(ValueError, match="at least one component"):
        _core.penalty_array(w, np.zeros(0), np.zeros(0), np.zeros(0), *args)
    for bad in (object(), int, np.ndarray, tuple):
        with pytest.raises(TypeError, match=r"result_type must be a class object\.__new__ makes"):
            _core.penalty_array(w, MIX.mu, MIX.log_var, MIX.logit, 1.0, 1, False, bad)
    with pytest.raises(ValueError, match=r"log_var\[0\] = 800"):
        _core.penalty_array(w, np.zeros(1), np.full(1, 800.0), np.zeros(1), *args)


# --- the cached scratch of the one-thread pass --------------------------------------------------

#: Growing, then shrinking M, both dtypes, responsibilities on and off, a lam
#: float32 cannot hold (the float64 kernel for float32 weights), threads, and
#: the grouped kernel (M = 64, 8 blocks, one thread).
_CASES = [
    (3, "float32", 100, 1e-3, False, 1),
    (16, "float64", 1000, 1e-3, True, None),
    (64, "float32", 8 * 4096, 1e-3, False, 1),
    (200, "float32", 5000, 1e-40, True, 1),
    (200, "float64", 9000, 1e-3, False, 2),
    (40, "float32", 300, 1e-40, False, 1),
    (16, "float32", 1000, 1e-3, True, None),
    (1, "float64", 10, 2.0, True, -1),
    (64, "float64", 8 * 4096, 0.5, False, 1),
]

_RUN = """
import hashlib, sys
import numpy as np
import softshare
from softshare import _core

CASES = {cases}

def digest(k, target):
    m, dtype, n, lam, resp, threads = CASES[k]
    _core.set_simd_target(target)
    rng = np.random.default_rng(k)
    mix = softshare.Mixture(
        np.linspace(-0.5, 0.5, m), np.full(m, 2 * np.log(0.5 / m)), rng.normal(0, 1, m)
    )
    w = rng.normal(0.0, 0.3, n).astype(dtype)
    r = softshare.penalty(w, mix, lam, responsibilities=resp, n_threads=threads)
    h = hashlib.sha256(np.float64([r.value, r.sum_log_density]).tobytes())
    for a in (r.grad_w, r.grad_mu, r.grad_sigma, r.grad_log_var, r.grad_logit, r.stats):
        h.update(a.tobytes())
    if resp:
        h.update(r.gamma.tobytes())
    return h.hexdigest()[:16]

for spec in sys.argv[1:]:
    k, target = spec.split(":")
    print(spec, digest(int(k), target))
"""


def _digests(specs: list[str]) -> dict[str, str]:
    code = textwrap.dedent(_RUN).format(cases=_CASES)
    out = subprocess.run(
        [sys.executable, "-c", code, *specs],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return dict(line.split() for line in out.stdout.splitlines())


def test_cached_scratch_gives_a_fresh_process_results() -> None:
    # Every case in a fresh process, on the best and the lowest SIMD path, then
    # all of them in one process (the cache grown, shrunk, and its SIMD lanes
    # changed under it), forward and backward: the same bits.
    targets = sorted({softshare.simd_targets()[0], softshare.simd_target()})
    specs = [f"{k}:{t}" for t in targets for k in range(len(_CASES))]
    fresh: dict[str, str] = {}
    for spec in specs:
        fresh.update(_digests([spec]))
    interleaved = [f"{k}:{t}" for k in range(len(_CASES)) for t in targets]
    assert _digests(interleaved) == fresh
    assert _digests(interleaved[::-1]) == fresh


def test_a_call_beyond_the_cache_cap_changes_nothing() -> None:
    # A call beyond the cache's 1 MiB (M = 1e5) is not retained; one after it
    # still gives the same bits.
    w = np.random.default_rng(3).normal(0.0, 0.3, 50).astype(np.float32)
    before = softshare.penalty(w, MIX, 0.5)
    m = 100_000
    big = softshare.Mixture(np.linspace(-1, 1, m), np.full(m, -4.0), np.zeros(m))
    softshare.penalty(w, big, 0.5)
    _same(softshare.penalty(w, MIX, 0.5), before)


# --- lam and n_threads ----------------------------------------------------------------------


class _Float(float):
    pass


@pytest.mark.parametrize(
    ("lam", "error"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-1.0, ValueError),
        (-math.inf, ValueError),
        (True, TypeError),
        ("1", TypeError),
        (1j, TypeError),
    ],
)
def test_bad_lam_errors_are_unchanged(lam: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="lam must be"):
        softshare.penalty(np.zeros(3), MIX, lam)  # type: ignore[arg-type]


def test_lam_fast_path_returns_what_the_check_did() -> None:
    for lam in (0.0, -0.0, 1e-300, 5e-324, 1.7e308, _Float(2.0), np.float64(0.5), 3):
        got = as_lam(lam)
        assert type(got) is float
        assert got == float(lam)
        assert math.copysign(1.0, got) == math.copysign(1.0, float(lam))


def test_thread_request_encodes_what_as_n_threads_resolves() -> None:
    assert thread_request(None) == 0
    assert thread_request(-1) == -1
    assert thread_request(np.int64(3)) == 3
    assert thread_request(2**70) == 2**31 - 1
    cores = cpu_count()
    assert as_n_threads(-1, 1) == cores
    assert as_n_threads(2**70, 1) == cores
    for bad in (0, -2, True, 1.5, "2"):
        with pytest.raises(ValueError, match="n_threads must be None, -1 or a positive int"):
            thread_request(bad)


@pytest.mark.parametrize("n_threads", [None, -1, 1, 2, 3, 2**40])
def test_every_request_gives_the_same_bits(n_threads: int | None) -> None:
    w = np.random.default_rng(4).normal(0.0, 0.3, 3 * 4096 + 5).astype(np.float32)
    for x in (w, [w[:5000], w[5000:]]):
        one = softshare.penalty(x, MIX, 0.1, n_threads=1)
        _same(softshare.penalty(x, MIX, 0.1, n_threads=n_threads), one)
