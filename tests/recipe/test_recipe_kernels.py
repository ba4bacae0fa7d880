"""The recipe's other native passes: dequantize, offset_sums and sparse_counts against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, reference
from softshare import _native_recipe as native

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

INDEX_DTYPES = [np.uint8, np.uint16, np.uint32, np.intp]
VALUE_DTYPES = [np.float32, np.float64]
THREADS = [1, 2, -1, None]


def _indices(
    rng: np.random.Generator, n: int, k: int, dtype: type, zero: float = 0.0
) -> np.ndarray:
    """n indices below k; a share `zero` of them 0 (runs of the zero component)."""
    idx = rng.integers(0, max(k, 1), n)
    return np.where(rng.random(n) < zero, 0, idx).astype(dtype)


# ---- dequantize ---------------------------------------------------------------------------


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("value_dtype", VALUE_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_dequantize(index_dtype: type, value_dtype: type) -> None:
    rng = np.random.default_rng(1)
    book = rng.normal(size=200).astype(value_dtype)
    idx = _indices(rng, 3 * (_core.block_size + 1), 200, index_dtype).reshape(3, -1)
    expected = book[idx]
    for n_threads in THREADS:
        out = np.full(idx.shape, np.nan, value_dtype)
        assert native.dequantize(idx, book, out, n_threads=n_threads) is out
        np.testing.assert_array_equal(out, expected)
    ref = np.empty_like(out)
    reference.dequantize(idx, book, ref)
    np.testing.assert_array_equal(ref, expected)


def test_dequantize_lists_and_layouts() -> None:
    rng = np.random.default_rng(2)
    book = rng.normal(size=7)
    idx = [_indices(rng, 50, 7, np.uint8).reshape(5, 10).T, _indices(rng, 0, 7, np.intp)]
    outs = [np.empty((10, 5)), np.empty(0)]
    got = native.dequantize(idx, book, outs)
    assert isinstance(got, list)
    assert got[0] is outs[0]
    np.testing.assert_array_equal(outs[0], book[idx[0]])


def test_dequantize_into_a_torch_tensor() -> None:
    torch = pytest.importorskip("torch")
    book = np.array([-0.5, 0.0, 0.25], np.float32)
    t = torch.empty(4, 3)
    native.dequantize(np.array([[0, 1, 2]] * 4, np.uint8), book, t.numpy())
    assert t.tolist() == [[-0.5, 0.0, 0.25]] * 4


@pytest.mark.parametrize("func", [native.dequantize, reference.dequantize], ids=["native", "ref"])
@pytest.mark.parametrize(("dtype", "bad"), [(np.uint8, 3), (np.uint32, 2**32 - 1), (np.intp, -1)])
def test_dequantize_bad_index_named(func: object, dtype: type, bad: int) -> None:
    idx = np.zeros((2, 5000), dtype)
    idx[1, 4321] = bad
    idx[1, 4322] = bad
    out = np.zeros(idx.shape)
    with pytest.raises(ValueError, match=rf"indices holds {bad} at \(flat\) position 9321: not an"):
        func(idx, np.zeros(3), out)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"indices\[1\] holds .* codebook of 3 values"):
        func([idx[0], idx], np.zeros(3), [out[0].copy(), out])  # type: ignore[operator]


@pytest.mark.parametrize(
    ("idx", "book", "out", "error", "words"),
    [
        (
            np.zeros(3, np.int8),
            np.zeros(2),
            np.zeros(3),
            TypeError,
            "uint8, uint16, uint32 or intp",
        ),
        (np.zeros(3, np.uint8), np.zeros(2, np.float16), np.zeros(3), TypeError, "float32 or"),
        (np.zeros(3, np.uint8), np.zeros((2, 1)), np.zeros(3), ValueError, "book must be 1-D"),
        (np.zeros(3, np.uint8), np.zeros(2), np.zeros(3, np.float32), TypeError, "dtype float64"),
        (np.zeros(3, np.uint8), np.zeros(2), np.zeros(4), ValueError, r"shape \(3,\)"),
        (np.zeros(3, np.uint8), np.zeros(2), np.zeros(6)[::2], ValueError, "C-contiguous"),
        (np.zeros(3, np.uint8), np.zeros(2), [np.zeros(3)], ValueError, "out must mirror"),
        (np.zeros(3, np.uint8), np.zeros(0), np.zeros(3), ValueError, "codebook of 0 values"),
    ],
)
def test_dequantize_bad_input(
    idx: object, book: object, out: object, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        native.dequantize(idx, book, out)  # type: ignore[arg-type]


def test_dequantize_overlap() -> None:
    book = np.zeros(4)
    with pytest.raises(ValueError, match="overlaps the codebook"):
        native.dequantize(np.zeros(4, np.uint8), book, book)
    idx = np.zeros(4, np.intp)
    with pytest.raises(ValueError, match="overlaps the indices"):
        native.dequantize(idx, book, idx.view(np.float64))


# ---- offset_sums --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 20_000), min_size=1, max_size=3),
    k=st.sampled_from([1, 2, 17, 256, 1024, 1025, 3000]),
    dtype=st.sampled_from(VALUE_DTYPES),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    zero=st.sampled_from([0.0, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis_offset_sums_equal_reference(
    sizes: list[int], k: int, dtype: type, index_dtype: type, zero: float, seed: int
) -> None:
    if k > np.iinfo(index_dtype).max + 1:
        index_dtype = np.uint16
    rng = np.random.default_rng(seed)
    book = rng.normal(0, 0.3, k).astype(dtype)
    weights = [rng.normal(0, 0.3, n).astype(dtype) for n in sizes]
    indices = [_indices(rng, n, k, index_dtype, zero) for n in sizes]
    ref_sums, ref_counts = reference.offset_sums(weights, indices, book)
    flat_w, flat_i = np.concatenate(weights), np.concatenate(indices).astype(np.intp)
    np.testing.assert_array_equal(ref_counts, np.bincount(flat_i, minlength=k))
    diff = (flat_w - book[flat_i]).astype(np.float64)
    np.testing.assert_allclose(ref_sums, np.bincount(flat_i, diff, minlength=k), atol=1e-9)
    for n_threads in [1, 2]:
        sums, counts = native.offset_sums(weights, indices, book, n_threads=n_threads)
        assert sums.dtype == np.float64
        assert counts.dtype == np.int64
        np.testing.assert_array_equal(sums, ref_sums)  # bit for bit, every thread count
        np.testing.assert_array_equal(counts, ref_counts)


def test_offset_sums_layout() -> None:
    assert _core.offset_sums_layout(17) == (_core.block_size, 4)
    assert _core.offset_sums_layout(1024) == (_core.block_size, 4)
    assert _core.offset_sums_layout(1025) == (2 * _core.block_size, 1)


def test_offset_sums_one_array_any_shape() -> None:
    w = np.array([[0.5, 1.0], [2.0, 4.0]], np.float32)
    idx = np.array([[1, 0], [1, 1]], np.uint8)
    sums, counts = native.offset_sums(w, idx, np.array([1.0, 0.5], np.float32))
    np.testing.assert_array_equal(sums, [0.0, 5.0])
    np.testing.assert_array_equal(counts, [1, 3])


@pytest.mark.parametrize(
    ("w", "idx", "book", "error", "words"),
    [
        (np.zeros(3, np.float16), np.zeros(3, np.uint8), np.zeros(2), TypeError, "float32 or"),
        (np.zeros(3), np.zeros(3, np.int16), np.zeros(2), TypeError, "uint8, uint16"),
        (np.zeros(3), np.zeros(3, np.uint8), np.zeros(2, np.float32), TypeError, "weights' dtype"),
        (np.zeros(3), np.zeros(4, np.uint8), np.zeros(2), ValueError, r"shape of weights, \(3,\)"),
        (np.zeros(3), [np.zeros(3, np.uint8)], np.zeros(2), ValueError, "must mirror weights"),
        (np.zeros(3), np.array([0, 1, 2], np.uint8), np.zeros(2), ValueError, "holds 2 at"),
    ],
)
def test_offset_sums_bad_input(
    w: object, idx: object, book: object, error: type, words: str
) -> None:
    for func in (native.offset_sums, reference.offset_sums):
        with pytest.raises(error, match=words):
            func(w, idx, book)  # type: ignore[arg-type]


# ---- sparse_counts ------------------------------------------------------------------------


def _check_sparse(idx: np.ndarray, k: int, zero: int, bits: int) -> None:
    ref = reference.sparse_counts(idx, k, zero, bits)
    gaps, symbols = reference.sparse_entries(idx.astype(np.intp), zero, bits)
    assert ref.nonzero == int(np.count_nonzero(idx != zero))
    assert int(ref.gaps.sum()) == len(gaps) == int(ref.symbols.sum()) == len(symbols)
    for n_threads in [1, 2]:
        got = native.sparse_counts(idx, k, zero, bits, n_threads=n_threads)
        assert isinstance(got, native.SparseCounts)
        assert got.nonzero == ref.nonzero
        assert got.gaps.shape == (1 << bits,)
        for name in ("values", "gaps", "symbols"):
            arr = getattr(got, name)
            assert arr.dtype == np.int64
            np.testing.assert_array_equal(arr, getattr(ref, name), err_msg=name)


@settings(max_examples=60, deadline=None)
@given(
    n=st.one_of(st.integers(0, 200), st.integers(200, 60_000)),
    k=st.sampled_from([1, 2, 17, 300]),
    density=st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]),
    bits=st.integers(1, 16),
    zero_kind=st.sampled_from(["first", "middle", "none"]),
    index_dtype=st.sampled_from(INDEX_DTYPES),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis_sparse_counts_equal_sparse_entries(
    n: int, k: int, density: float, bits: int, zero_kind: str, index_dtype: type, seed: int
) -> None:
    if k > np.iinfo(index_dtype).max + 1:
        index_dtype = np.uint16
    rng = np.random.default_rng(seed)
    zero = {"first": 0, "middle": k // 2, "none": k}[zero_kind]
    idx = np.where(rng.random(n) < density, rng.integers(0, k, n), min(zero, k - 1))
    _check_sparse(idx.astype(index_dtype), k, zero, bits)


def test_sparse_counts_long_runs_across_blocks() -> None:
    n = 10 * 4 * _core.block_size
    idx = np.zeros(n, np.uint8)
    idx[[5, 6, 7, 40_000, 40_001, 100_000, n - 1]] = [1, 2, 1, 3, 1, 2, 3]
    for bits in (1, 3, 8, 16):
        _check_sparse(idx, 4, 0, bits)
    _check_sparse(idx.reshape(64, -1), 4, 0, 5)  # any shape: flattened in C order
    _check_sparse(np.zeros(n, np.uint8), 4, 0, 2)  # nothing stored


def test_sparse_counts_zero_index_beyond_the_dtype() -> None:
    """uint8 indices into a codebook of 300: zero_index 280 never occurs (280 wraps to 24)."""
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 40, 5000).astype(np.uint8)
    _check_sparse(idx, 300, 280, 4)
    _check_sparse(idx, 300, 24, 4)


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((np.zeros(3, np.uint8), 4, 0, 0), ValueError, r"index_bits must be in 1 \.\. 16, got 0"),
        ((np.zeros(3, np.uint8), 4, 0, 17), ValueError, r"index_bits must be in 1 \.\. 16, got 17"),
        ((np.zeros(3, np.uint8), 4, 0, True), TypeError, "index_bits must be an int, got True"),
        ((np.zeros(3, np.uint8), 4, 0, 2.0), TypeError, "index_bits must be an int, got float"),
        ((np.zeros(3, np.uint8), 4, 5, 3), ValueError, r"zero_index must be in 0 \.\. 4, got 5"),
        ((np.zeros(3, np.uint8), -1, 0, 3), ValueError, r"k must be in 0 \.\. "),
        ((np.zeros(3, np.float32), 4, 0, 3), TypeError, "uint8, uint16, uint32 or intp"),
        (
            (np.array([0, 0, 9], np.uint8), 4, 0, 3),
            ValueError,
            r"indices holds 9 at \(flat\) position 2",
        ),
        ((np.array([0, 4], np.intp), 4, 4, 3), ValueError, "holds 4 at .* position 1"),
        ((np.array([0, -3], np.intp), 4, 0, 3), ValueError, "holds -3 at .* position 1"),
    ],
)
def test_sparse_counts_bad_input(args: tuple[object, ...], error: type, words: str) -> None:
    for func in (native.sparse_counts, reference.sparse_counts):
        with pytest.raises(error, match=words):
            func(*args)  # type: ignore[operator]


def test_bad_n_threads_everywhere() -> None:
    idx = np.zeros(3, np.uint8)
    calls = [
        lambda t: native.dequantize(idx, np.zeros(1), np.zeros(3), n_threads=t),
        lambda t: native.offset_sums(np.zeros(3), idx, np.zeros(1), n_threads=t),
        lambda t: native.sparse_counts(idx, 1, 0, 3, n_threads=t),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="n_threads must be None, -1 or a positive int"):
            call(0)


def test_public_api() -> None:
    assert "assign" in softshare.__all__
    assert softshare.assign is native.assign
