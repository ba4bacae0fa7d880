"""Each bad argument of the NumPy entry points, one at a time: the exception and its message.

``softshare.penalty`` and ``softshare.reference.penalty`` on hand-picked bad weights, lam,
n_threads and mixtures; the message names the problem (and the index of a non-finite weight).
Random bad and unusual input through every entry point, torch included: test_input_sweep.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import softshare
from softshare import reference

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

MIX = softshare.Mixture([0.0, 0.5], [-2.0, -3.0], [0.0, 0.0])
FUNCS = [softshare.penalty, reference.penalty]


@pytest.fixture(params=FUNCS, ids=["native", "reference"])
def penalty(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_weights_named_with_index(penalty: object, bad: float, dtype: type) -> None:
    w = np.zeros((3, 4), dtype=dtype)
    w[2, 1] = bad
    w[2, 3] = bad
    with pytest.raises(ValueError, match=rf"weights must be finite: found {bad} at index \(2, 1\)"):
        penalty(w, MIX)  # type: ignore[operator]


def test_non_finite_in_list_names_the_array(penalty: object) -> None:
    layers = [np.zeros(5), np.zeros((2, 2), np.float32), np.ones(9)]
    layers[1][1, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"weights\[1\] must be finite: found nan at index \(1, 0\)"
    ):
        penalty(layers, MIX)  # type: ignore[operator]


def test_non_finite_scalar_and_big_array(penalty: object) -> None:
    with pytest.raises(ValueError, match=r"weights must be finite: got nan"):
        penalty(np.float64(np.nan), MIX)  # type: ignore[operator]
    w = np.zeros(100_003, dtype=np.float32)
    w[99_999] = -np.inf
    with pytest.raises(ValueError, match=r"found -inf at index \(99999,\)"):
        penalty(w, MIX)  # type: ignore[operator]


@pytest.mark.parametrize(
    "weights",
    [
        np.array([1 + 2j]),
        np.array(["a", "b"]),
        np.array([object()], dtype=object),
        [np.zeros(2), np.array([1j])],
    ],
    ids=["complex", "str", "object", "complex-in-list"],
)
def test_non_real_weights(penalty: object, weights: object) -> None:
    with pytest.raises(
        TypeError, match=r"weights(\[1\])? must hold real numbers, got an array of dtype"
    ):
        penalty(weights, MIX)  # type: ignore[operator]


@pytest.mark.parametrize("lam", [-1.0, -1e-300, np.nan, np.inf, -np.inf])
def test_bad_lam(penalty: object, lam: float) -> None:
    with pytest.raises(ValueError, match=r"lam must be finite and >= 0"):
        penalty(np.zeros(3), MIX, lam)  # type: ignore[operator]


@pytest.mark.parametrize("lam", ["1", None, 1j, True])
def test_non_numeric_lam(penalty: object, lam: object) -> None:
    with pytest.raises(TypeError, match=r"lam must be a real number"):
        penalty(np.zeros(3), MIX, lam)  # type: ignore[operator]


@pytest.mark.parametrize("n_threads", [0, -2, 1.5, "2", True])
def test_bad_n_threads(penalty: object, n_threads: object) -> None:
    with pytest.raises(ValueError, match=r"n_threads must be None, -1 or a positive int"):
        penalty(np.zeros(3), MIX, n_threads=n_threads)  # type: ignore[operator]


def test_good_n_threads_types() -> None:
    w = np.linspace(-1, 1, 50)
    base = softshare.penalty(w, MIX).value
    for n_threads in (None, -1, 1, 2, np.int64(3)):
        assert softshare.penalty(w, MIX, n_threads=n_threads).value == base  # type: ignore[arg-type]


def test_mixture_must_be_a_mixture(penalty: object) -> None:
    with pytest.raises(TypeError, match=r"mixture must be a softshare.Mixture .*got tuple"):
        penalty(np.zeros(3), ([0.0], [0.0], [0.0]))  # type: ignore[operator]


def test_inputs_are_not_modified(penalty: object) -> None:
    w = np.linspace(-1, 1, 101).astype(np.float32)
    w_copy = w.copy()
    penalty(w, MIX, 2.0, responsibilities=True)  # type: ignore[operator]
    np.testing.assert_array_equal(w, w_copy)


def test_overflow_is_an_error_not_a_nan(penalty: object) -> None:
    # (3e38 - (-3e38))^2 overflows float32 and even float64 squared distances
    # of 1e200 / sigma 1e-100: the density is 0 to machine precision.
    mix = softshare.Mixture([0.0], [-460.0], [0.0])
    with pytest.raises(ValueError, match="penalty overflowed"):
        penalty(np.array([1e200]), mix)  # type: ignore[operator]
