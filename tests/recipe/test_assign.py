"""softshare.assign: the native MAP assignment equals the NumPy reference bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, reference
from softshare._formulas import assign_constants
from softshare._native_recipe import assign_arrays

from tests.conftest import random_mixture

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

INDEX_DTYPES = [np.uint8, np.uint16, np.uint32, np.intp]
FUNCS = [softshare.assign, reference.assign]


@pytest.fixture(params=FUNCS, ids=["native", "reference"])
def assign(request: pytest.FixtureRequest) -> object:
    return request.param


def _mixture(rng: np.random.Generator, m: int, kind: str) -> softshare.Mixture:
    """Mixtures that stress the scores: ties, extreme variances, vanishing weights."""
    if kind == "random":
        return random_mixture(rng, m)
    if kind == "ties":  # duplicated components and means symmetric about 0: equal scores
        half = rng.choice([0.25, 0.125, 0.5], size=(m + 1) // 2)
        mu = np.concatenate([half, -half])[:m]
        return softshare.Mixture(mu, np.full(m, -4.0), np.zeros(m))
    if kind == "extreme":  # |log_var| up to the allowed 708, pi near 0
        log_var = rng.choice([-708.0, -700.0, -30.0, 0.0, 30.0, 700.0, 708.0], size=m)
        logit = rng.choice([0.0, -700.0, -30.0, 5.0], size=m)
        return softshare.Mixture(rng.normal(0.0, 0.3, m), log_var, logit)
    mu = np.linspace(-0.3, 0.3, m)  # a codebook: many narrow components
    return softshare.Mixture(mu, np.full(m, 2 * np.log(0.6 / (4 * m))), rng.normal(0, 0.1, m))


def _weights(rng: np.random.Generator, mix: softshare.Mixture, n: int, kind: str) -> np.ndarray:
    if kind == "normal":
        return rng.normal(0.0, 0.3, n)
    if kind == "at_means":  # exactly at the means, and halfway between pairs of them
        w = mix.mu[rng.integers(0, mix.n_components, n)]
        half = 0.5 * (w + mix.mu[rng.integers(0, mix.n_components, n)])
        return np.where(rng.random(n) < 0.5, w, half)
    if kind == "zeros":
        return np.zeros(n)
    return rng.normal(0.0, 1.0, n) * 10.0 ** rng.integers(-300, 300, n)  # far: scores -inf


@settings(max_examples=80, deadline=None)
@given(
    n=st.one_of(st.integers(0, 100), st.integers(100, 10_000)),
    m=st.sampled_from([1, 2, 3, 17, 33, 64, 256, 300]),
    mix_kind=st.sampled_from(["random", "ties", "extreme", "codebook"]),
    w_kind=st.sampled_from(["normal", "at_means", "zeros", "far"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    use_pi=st.booleans(),
    target=st.sampled_from(softshare.simd_targets()),
    seed=st.integers(0, 2**32 - 1),
)
def test_hypothesis_native_equals_reference(
    n: int,
    m: int,
    mix_kind: str,
    w_kind: str,
    dtype: type,
    use_pi: bool,
    target: str,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    mix = _mixture(rng, m, mix_kind)
    with np.errstate(over="ignore"):
        w = _weights(rng, mix, n, w_kind).astype(dtype)
    w = np.where(np.isfinite(w), w, 0).astype(dtype)
    ref = reference.assign(w, mix, use_pi=use_pi)
    base, inv2var = assign_constants(mix.log_var, mix.var, mix.log_pi, use_pi)
    before = softshare.simd_target()
    _core.set_simd_target(target)
    try:
        native = softshare.assign(w, mix, use_pi=use_pi)
        for grouping in (0, 1):  # the plain kernel, and the grouped one whatever the plan
            out = np.empty(n, np.intp)
            _core.assign([w], mix.mu, base, inv2var, [out], 2, grouping)
            np.testing.assert_array_equal(out, ref, err_msg=f"grouping={grouping}")
    finally:
        _core.set_simd_target(before)
    assert native.dtype == ref.dtype == (np.uint8 if m <= 256 else np.uint16)
    np.testing.assert_array_equal(native, ref)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [1, 2, 17, 64, 256])
def test_every_index_dtype_and_thread_count(dtype: type, m: int) -> None:
    rng = np.random.default_rng(m)
    mix = random_mixture(rng, m)
    n = 3 * _core.block_size + 37  # several blocks and a tail
    w = rng.normal(0.0, 0.3, n).astype(dtype)
    ref = reference.assign(w, mix)
    expected_counts = np.bincount(ref, minlength=m)
    for index_dtype in INDEX_DTYPES:
        for n_threads in [1, 2, -1, None]:
            out = np.full(n, 255, dtype=index_dtype)
            counts = assign_arrays([w], mix, [out], n_threads=n_threads)
            np.testing.assert_array_equal(out, ref)
            assert counts is not None
            assert counts.dtype == np.int64
            np.testing.assert_array_equal(counts, expected_counts)
            assert softshare.assign(w, mix, out=out, n_threads=n_threads) is out


@pytest.mark.usefixtures("simd")
def test_equals_the_recipes_numpy_assignment() -> None:
    """The shared formula is the one the recipe used before it was native (written out here)."""
    rng = np.random.default_rng(5)
    for use_pi in (True, False):
        mix = random_mixture(rng, 17)
        w = rng.normal(0.0, 0.3, (50, 91)).astype(np.float32)
        base = -0.5 * mix.log_var + (mix.log_pi if use_pi else 0.0)
        d = w.reshape(-1, 1).astype(np.float64) - mix.mu[None, :]
        ref = np.argmax(base - d * d * (0.5 / mix.var), axis=1).reshape(w.shape)
        np.testing.assert_array_equal(softshare.assign(w, mix, use_pi=use_pi), ref)


@pytest.mark.usefixtures("simd")
@pytest.mark.parametrize("mix_kind", ["random", "ties", "extreme", "codebook"])
@pytest.mark.parametrize("m", [2, 33, 256])
def test_grouped_kernel_equals_reference(mix_kind: str, m: int) -> None:
    """The grouped kernel (sorted blocks, candidates only) over several blocks of every kind."""
    rng = np.random.default_rng([m, len(mix_kind)])
    mix = _mixture(rng, m, mix_kind)
    n = 2 * _core.block_size + 123
    parts = [_weights(rng, mix, n // 4, kind) for kind in ("normal", "at_means", "zeros")]
    wide = rng.uniform(-2.0, 2.0, n - 3 * (n // 4))  # also beyond the means' range
    w = rng.permutation(np.concatenate([*parts, wide]))
    base, inv2var = assign_constants(mix.log_var, mix.var, mix.log_pi, True)
    for dtype in (np.float32, np.float64):
        x = w.astype(dtype)
        ref = reference.assign(x, mix)
        for grouping in (-1, 0, 1):
            out = np.empty(n, np.uint16)
            counts = _core.assign([x], mix.mu, base, inv2var, [out], 2, grouping)
            np.testing.assert_array_equal(out, ref)
            assert counts is not None
            np.testing.assert_array_equal(counts, np.bincount(ref, minlength=m))
    x[n // 2] = np.nan  # a block that is not finite: None, whichever kernel
    for grouping in (0, 1):
        out = np.empty(n, np.uint16)
        assert _core.assign([x], mix.mu, base, inv2var, [out], 1, grouping) is None


def test_ties_go_to_the_lowest_index() -> None:
    mix = softshare.Mixture([0.5, -0.5, 0.5, 0.0, 0.0], [-3.0] * 5, [0.0] * 5)
    w = np.array([0.0, 0.5, -0.5, 0.25, 1e300, -1e300])
    np.testing.assert_array_equal(softshare.assign(w, mix), [3, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(reference.assign(w, mix), [3, 0, 1, 0, 0, 0])


def test_use_pi_false_ignores_the_proportions() -> None:
    mix = softshare.Mixture([0.0, 0.1], [-4.0, -4.0], [0.0, 20.0])
    w = np.array([0.01, 0.04])
    np.testing.assert_array_equal(softshare.assign(w, mix), [1, 1])
    np.testing.assert_array_equal(softshare.assign(w, mix, use_pi=False), [0, 0])


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a[::3],
        lambda a: a.reshape(40, 25).T,
        lambda a: np.asfortranarray(a.reshape(40, 25)),
        lambda a: a.astype(">f8"),
        lambda a: a.astype(np.float16),
        lambda a: (a * 100).astype(np.int32),
        lambda a: a.tolist(),
    ],
    ids=["strided", "transposed", "fortran", "byteswapped", "float16", "int32", "list"],
)
def test_any_layout_and_real_dtype(assign: object, make: object) -> None:
    rng = np.random.default_rng(3)
    mix = random_mixture(rng, 9)
    w = make(rng.normal(0.0, 0.3, 1000))  # type: ignore[operator]
    got = assign(w, mix)  # type: ignore[operator]
    assert got.shape == np.shape(w)
    expected = reference.assign(np.asarray(w, dtype=np.float64), mix)
    if np.asarray(w).dtype == np.float16:
        expected = reference.assign(np.asarray(w).astype(np.float64), mix)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 5, 2)])
def test_empty(assign: object, shape: tuple[int, ...]) -> None:
    mix = softshare.Mixture([0.0, 1.0], [0.0, 0.0], [0.0, 0.0])
    got = assign(np.zeros(shape, np.float32), mix)  # type: ignore[operator]
    assert got.shape == shape
    assert got.dtype == np.uint8


def test_scalar(assign: object) -> None:
    mix = softshare.Mixture([0.0, 1.0], [0.0, 0.0], [0.0, 0.0])
    got = assign(np.float64(0.9), mix)  # type: ignore[operator]
    assert got.shape == ()
    assert got == 1


def test_many_arrays_one_pass() -> None:
    rng = np.random.default_rng(8)
    mix = random_mixture(rng, 40)
    layers = [
        rng.normal(0, 0.2, n).astype(dt)
        for n, dt in [(5000, np.float32), (0, np.float64), (77, np.float64)]
    ]
    outs = [np.empty(a.size, dt) for a, dt in zip(layers, [np.uint8, np.intp, np.uint32])]
    counts = assign_arrays(layers, mix, outs, n_threads=2)
    refs = [reference.assign(a, mix) for a in layers]
    for o, r in zip(outs, refs):
        np.testing.assert_array_equal(o, r)
    assert counts is not None
    np.testing.assert_array_equal(counts, np.bincount(np.concatenate(refs), minlength=40))


# ---- errors -------------------------------------------------------------------------------

MIX = softshare.Mixture([0.0, 0.5], [-2.0, -3.0], [0.0, 0.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_weights_named_with_index(assign: object, bad: float, dtype: type) -> None:
    w = np.zeros((3, 5000), dtype=dtype)
    w[2, 4001] = bad
    w[2, 4003] = bad
    with pytest.raises(
        ValueError, match=rf"weights must be finite: found {bad} at index \(2, 4001\)"
    ):
        assign(w, MIX)  # type: ignore[operator]


@pytest.mark.parametrize("w", [np.zeros(3, complex), np.array(["a", "b"]), np.array([None, 1.0])])
def test_non_real_weights(assign: object, w: np.ndarray) -> None:
    with pytest.raises(TypeError, match="must hold real numbers"):
        assign(w, MIX)  # type: ignore[operator]


def test_ragged_weights(assign: object) -> None:
    with pytest.raises(TypeError, match="could not be read as a numeric array"):
        assign([np.zeros(2), np.zeros(3)], MIX)  # type: ignore[operator]


def test_not_a_mixture(assign: object) -> None:
    with pytest.raises(TypeError, match=r"mixture must be a softshare\.Mixture"):
        assign(np.zeros(3), "mix")  # type: ignore[operator]


@pytest.mark.parametrize("n_threads", [0, -2, 1.5, True, "2"])
def test_bad_n_threads(assign: object, n_threads: object) -> None:
    with pytest.raises(ValueError, match="n_threads must be None, -1 or a positive int"):
        assign(np.zeros(3), MIX, n_threads=n_threads)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("out", "error", "words"),
    [
        ([0, 0, 0, 0], TypeError, "out must be a numpy.ndarray, got list"),
        (
            np.zeros(4, np.int8),
            TypeError,
            "out must have dtype uint8, uint16, uint32, int64, got int8",
        ),
        (np.zeros(4, np.float32), TypeError, "got float32"),
        (np.zeros(5, np.uint8), ValueError, r"out must have the shape \(2, 2\), got \(5,\)"),
        (
            np.zeros((2, 2), np.uint8, order="F").T[::1, ::-1],
            ValueError,
            "C-contiguous and writeable",
        ),
    ],
)
def test_bad_out(assign: object, out: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        assign(np.zeros((2, 2)), MIX, out=out)  # type: ignore[operator]


def test_read_only_out(assign: object) -> None:
    out = np.zeros(3, np.uint8)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="C-contiguous and writeable"):
        assign(np.zeros(3), MIX, out=out)  # type: ignore[operator]


def test_out_too_narrow_for_the_components(assign: object) -> None:
    mix = softshare.Mixture(np.linspace(-1, 1, 300), np.zeros(300), np.zeros(300))
    with pytest.raises(ValueError, match="out's dtype uint8 cannot hold the component index 299"):
        assign(np.zeros(3), mix, out=np.zeros(3, np.uint8))  # type: ignore[operator]
    assert assign(np.zeros(3), mix).dtype == np.uint16  # type: ignore[operator]


def test_out_overlapping_the_weights(assign: object) -> None:
    w = np.zeros(16, np.float64)
    out = w.view(np.uint8)[:16]
    with pytest.raises(ValueError, match="out overlaps the weights"):
        assign(w, MIX, out=out)  # type: ignore[operator]


def test_core_guards_its_contract() -> None:
    mu = np.zeros(2)
    w = [np.zeros(4)]
    with pytest.raises(ValueError, match="must have one length M >= 1"):
        _core.assign(w, mu, np.zeros(3), np.ones(2), [np.zeros(4, np.uint8)], 1)
    with pytest.raises(ValueError, match="inv2var finite and > 0"):
        _core.assign(w, mu, np.zeros(2), np.array([1.0, 0.0]), [np.zeros(4, np.uint8)], 1)
    with pytest.raises(TypeError, match="out must be native uint8, uint16, uint32 or int64"):
        _core.assign(w, mu, np.zeros(2), np.ones(2), [np.zeros(4, np.int8)], 1)
    with pytest.raises(ValueError, match="out must have the length of weights"):
        _core.assign(w, mu, np.zeros(2), np.ones(2), [np.zeros(3, np.uint8)], 1)
    with pytest.raises(ValueError, match="out overlaps weights"):
        _core.assign(w, mu, np.zeros(2), np.ones(2), [w[0].view(np.uint8)[:4]], 1)
    assert (
        _core.assign([np.array([np.nan])], mu, np.zeros(2), np.ones(2), [np.zeros(1, np.uint8)], 1)
        is None
    )
