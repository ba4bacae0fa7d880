"""The native entropy coder of the compressed model file (csrc/softshare/codec.hpp) on its own.

Round trips of index layers and of the header's values, its checks of the
raw-pointer contract, any bytes decoded without a crash, and the exact bytes
of a small file (the format is frozen: a change of the coder's models must
come with a new format version).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import softshare
from softshare import _core, compress
from softshare.compress._format import model as _format_model

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize


def _width(k: int) -> type:
    return np.uint8 if k <= 256 else np.uint16 if k <= 65_536 else np.uint32


@st.composite
def _layers(draw: st.DrawFn) -> tuple[list[np.ndarray], list[tuple[int, int]], int]:
    k = draw(st.one_of(st.integers(1, 40), st.integers(200, 300), st.integers(65_537, 70_000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = draw(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=5))
    layers = []
    for r, c in shapes:
        background = int(rng.integers(0, k))
        idx = np.where(
            rng.random((r, c)) < draw(st.floats(0, 1)), rng.integers(0, k, (r, c)), background
        )
        if r and c and draw(st.booleans()):  # dead rows and columns
            idx[rng.random(r) < 0.5] = background
            idx[:, rng.random(c) < 0.5] = background
        layers.append(np.ascontiguousarray(idx.reshape(-1), dtype=_width(k)))
    return layers, shapes, k


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_layers(), st.sampled_from([1, 3, 4]))
def test_layers_round_trip(
    case: tuple[list[np.ndarray], list[tuple[int, int]], int], version: int
) -> None:
    layers, shapes, k = case
    data, ends = _core.encode_layers(layers, shapes, k, version)
    assert ends == sorted(ends)
    assert len(data) - (ends[-1] if ends else 0) in (0, 1)  # the last byte, at most
    decoded, read = _core.decode_layers(data, shapes, k, version)
    assert read == ends
    for a, b in zip(decoded, layers):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    again, _ = _core.encode_layers(layers, shapes, k, version)
    assert again == data  # deterministic
    *_, counts = _core.decode_layers(data, shapes, k, version, 0, True)
    if k > 256:
        assert counts is None
    else:
        assert counts is not None
        expected = sum((np.bincount(a, minlength=k) for a in layers), np.zeros(k, np.int64))
        np.testing.assert_array_equal(counts, expected)
    if version >= 3 and shapes:  # one segment without fast parts: version 1's stream
        assert data == _core.encode_layers(layers, shapes, k, 1)[0]


#: Layers of several version-3 segments: bands of 2 and 1 rows, a small layer and
#: an empty one in the second segment, the last layer a third.
SEGMENTED = [(3, 360_000), (5, 7), (0, 9), (700, 1000)]


def _segmented(k: int = 17, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for r, c in SEGMENTED:
        idx = rng.integers(1, k, r * c) * (rng.random(r * c) < 0.05)
        out.append(idx.astype(np.uint8))
    return out


@pytest.mark.parametrize("version", [3, 4])
def test_segments_are_the_same_bytes_on_any_thread_count(version: int) -> None:
    layers = _segmented()
    data, ends = _core.encode_layers(layers, SEGMENTED, 17, version, 1)
    for threads in (2, 3, 8):
        assert _core.encode_layers(layers, SEGMENTED, 17, version, threads) == (data, ends)
    for threads in (1, 2, 8):
        decoded, read, counts = _core.decode_layers(data, SEGMENTED, 17, version, threads, True)
        assert read == ends
        assert counts is not None
        assert counts.tolist() == np.bincount(np.concatenate(layers), minlength=17).tolist()
        for a, b in zip(decoded, layers):
            np.testing.assert_array_equal(a, b)
    single, _ = _core.encode_layers(layers, SEGMENTED, 17, 1)
    assert len(data) < 1.01 * len(single)  # fresh models (version 4: tables) cost little
    assert hashlib.sha256(data).hexdigest() == FROZEN_SEGMENTS[version]


def test_a_segment_table_that_does_not_fit_is_refused() -> None:
    data, _ = _core.encode_layers(_segmented(), SEGMENTED, 17, 3)
    for bad, match in [
        (b"", "too short for its segment table"),
        (b"\xff" * 9, "segment table is malformed"),
        (b"\x80" * 8 + b"\x01" + data[9:], "segment table is malformed"),
        (b"\xff\xff\x7f\x00" + data[4:], "longer than the layer data"),
        (data + b"\x00\x00", "beyond its values"),
        (data[:-30], "ends before its last value|beyond its values"),
    ]:
        with pytest.raises(ValueError, match=match):
            _core.decode_layers(bad, SEGMENTED, 17, 3)
    with pytest.raises(ValueError, match="no segment"):
        _core.decode_layers(b"\x00", [], 17, 3)
    with pytest.raises(ValueError, match="format version must be 1, 2, 3 or 4"):
        _core.decode_layers(data, SEGMENTED, 17, 5)


def test_any_segmented_bytes_decode_without_a_crash() -> None:
    rng = np.random.default_rng(4)
    shapes = [(3, 40_000), (30, 20), (40, 30_000)]  # small: kSegmentCells is 2^20 ...
    layers = [np.zeros(r * c, np.uint8) for r, c in shapes]
    good, _ = _core.encode_layers(layers, shapes, 5, 3)
    big = [(3, 400_000), (30, 20), (1, 2_000_000)]  # ... these make 3 segments
    outcomes: set[str] = set()
    for case in range(60):
        data = bytearray(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8))
        if case % 3 == 0:
            data[:2] = bytes(rng.integers(0, 3, 2, dtype=np.uint8))  # short segments first
        try:
            arrays, ends = _core.decode_layers(bytes(data), big, 5, 3, int(rng.integers(1, 4)))
        except ValueError as e:
            outcomes.add(str(e).split(" ")[1])
            continue
        outcomes.add("decoded")
        assert [a.size for a in arrays] == [r * c for r, c in big]
        assert all(int(a.max()) < 5 for a in arrays)
        assert ends == sorted(ends)
    assert good
    assert len(outcomes) >= 2


def test_a_settled_layer_costs_about_its_entropy() -> None:
    rng = np.random.default_rng(0)
    n, p = 1_000_000, np.array([0.9, 0.05, 0.03, 0.02])
    idx = rng.choice(4, size=n, p=p).astype(np.uint8)
    data, _ = _core.encode_layers([idx], [(1000, 1000)], 4)
    entropy = -n * float(np.sum(p * np.log2(p))) / 8
    assert entropy < len(data) < 1.01 * entropy


@pytest.mark.parametrize(
    ("layers", "shapes", "k", "match"),
    [
        ([np.zeros(4, np.int64)], [(2, 2)], 3, "must be native uint8, uint16 or uint32"),
        ([np.zeros((2, 2), np.uint8)], [(2, 2)], 3, "must be 1-D and contiguous"),
        ([np.zeros(8, np.uint8)[::2]], [(2, 2)], 3, "must be 1-D and contiguous"),
        ([np.zeros(4, np.uint8)], [(2, 3)], 3, r"layers\[0\] does not hold rows x cols"),
        ([np.zeros(4, np.uint8)], [(-2, -2)], 3, "two sizes >= 0"),
        ([np.array([0, 1, 2, 3], np.uint8)], [(2, 2)], 3, r"layers\[0\]\[3\] = 3 is not below 3"),
        ([np.zeros(4, np.uint8)], [(2, 2)], 0, "is not below 0"),
        ([np.zeros(4, np.uint8)], [(2, 2)], (1 << 24) + 1, "at most 2\\^24"),
        ([np.zeros(4, np.uint8)], [], 3, "one shape per layer"),
    ],
)
def test_encode_checks_its_inputs(
    layers: list[np.ndarray], shapes: list[tuple[int, int]], k: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _core.encode_layers(layers, shapes, k)


def test_any_bytes_decode_without_a_crash() -> None:
    rng = np.random.default_rng(1)
    decoded = overrun = 0
    for _ in range(2000):
        k = int(rng.choice([1, 2, 17, 300, 70_000]))
        shapes = [(int(r), int(c)) for r, c in rng.integers(0, 40, (int(rng.integers(0, 4)), 2))]
        data = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
        try:
            arrays, ends = _core.decode_layers(data, shapes, k)
        except ValueError as e:
            message = str(e)
            overrun += 1
            assert "ends before its last value" in message
            continue
        decoded += 1
        assert [a.size for a in arrays] == [r * c for r, c in shapes]
        assert all(a.size == 0 or int(a.max()) < k for a in arrays)
        assert ends == sorted(ends)
    assert decoded > 100
    assert overrun > 100
    with pytest.raises(ValueError, match="empty codebook"):
        _core.decode_layers(b"", [(2, 2)], 0)


def test_decoding_runs_in_parallel_threads_with_identical_results() -> None:
    rng = np.random.default_rng(2)
    idx = (rng.integers(0, 17, 400_000) * (rng.random(400_000) < 0.1)).astype(np.uint8)
    data, _ = _core.encode_layers([idx], [(400, 1000)], 17)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(_core.decode_layers(data, [(400, 1000)], 17)[0][0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, idx)


# ---- the header's values -----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("bit"), st.integers(0, 2**32 - 1), st.integers(0, 1)),
            st.tuples(st.just("symbol"), st.integers(0, 50), st.integers(1, 2**32)),
            st.tuples(st.just("uint"), st.integers(0, 50), st.integers(0, 2**64 - 1)),
            st.tuples(st.just("raw"), st.integers(0, 64), st.integers(0, 2**64 - 1)),
        ),
        max_size=60,
    )
)
def test_stream_values_round_trip(ops: list[tuple[str, int, int]]) -> None:
    enc = _core.StreamEncoder()
    expected = []
    for op, a, b in ops:
        if op == "bit":
            enc.bit(a, b)
            expected.append(b)
        elif op == "symbol":
            value = b - 1 if a % 2 else (b * 7919) % b
            enc.symbol(a, b, value)
            expected.append(value)
        elif op == "uint":
            enc.uint(a, b)
            expected.append(b)
        else:
            value = b & ((1 << a) - 1)
            enc.raw(a, value)
            expected.append(value)
    data = enc.finish()
    dec = _core.StreamDecoder(data)
    got = []
    for op, a, b in ops:
        if op == "bit":
            got.append(dec.bit(a))
        elif op == "symbol":
            got.append(dec.symbol(a, b))
        elif op == "uint":
            got.append(dec.uint(a))
        else:
            got.append(dec.raw(a))
    assert got == expected
    assert not dec.overrun()
    assert len(data) - dec.position() in (0, 1)


def test_stream_values_are_checked() -> None:
    enc = _core.StreamEncoder()
    with pytest.raises(ValueError, match="symbol 5 is not below 5"):
        enc.symbol(0, 5, 5)
    with pytest.raises(ValueError, match=r"alphabet size must be in \[1, 2\^32\]"):
        enc.symbol(0, 0, 0)
    with pytest.raises(ValueError, match=r"nbits must be in \[0, 64\]"):
        enc.raw(65, 0)
    with pytest.raises(TypeError):
        enc.bit(-1, 0)
    dec = _core.StreamDecoder(b"")
    assert dec.symbol(3, 10) < 10
    dec.raw(64)
    dec.raw(64)
    assert dec.overrun()


# ---- the format is frozen ----------------------------------------------------------------------

#: The file test_the_bytes_of_a_small_file_are_frozen writes in format version 1 ...
FROZEN = (
    "535753015ff9df7ee0854389997f4ddff38c504af583fe138875fe5ce3629aa08b826936d272933a657fffff"
    "ffdcfbb876fffffdb774dfffffffff24d782fef7fffffe3e91e0d5ffffff3b300fffffffffdadd168effffff"
    "f3c8a1c9ffffffb5edd75994a12c5faccb954a7a63867a5ac0a018bd9e25d75f6c60f6859d734864e91b0da1"
    "15a60764da468af37b"
)
#: ... in version 3 (one segment: version 1's layer stream, the header one bit longer) ...
FROZEN3 = (
    "5357530360f9df7ee0854389997f4ddff38c504af583fe138875fe5ce3629aa08b826936d272933a657fffff"
    "ffdcfbb876fffffdb774dfffffffff24d782fef7fffffe3e91e0d5ffffff3b300fffffffffdadd168effffff"
    "f3c8a1c9ffffffb5edd759950d8dc5ca12cb954a7a63867a5ac0a018bd9e25d75f6c60f6859d734864e91b0d"
    "a115a60764da468af37b"
)
#: ... and in version 4 (no fast part: version 3's bytes but the version and the header's CRC).
FROZEN4 = (
    "5357530460f9df7ee0854389997f4ddff38c504af583fe138875fe5ce3629aa08b826936d272933a657fffff"
    "ffdcfbb876fffffdb774dfffffffff24d782fef7fffffe3e91e0d5ffffff3b300fffffffffdadd168effffff"
    "f3c8a1c9ffffffb5edd759950d6929e3ddcb954a7a63867a5ac0a018bd9e25d75f6c60f6859d734864e91b0d"
    "a115a60764da468af37b"
)
#: The SHA-256 of test_segments_are_the_same_bytes_on_any_thread_count's streams (3 segments;
#: in version 4 the bands and the last layer are fast parts).
FROZEN_SEGMENTS = {
    3: "a65aa0b92cb7c061a8a87794109762e8787e2dff924958bd495880c1bd6671ac",
    4: "81fdf1848b7a1c43e2746dbc4ae9ad07a681345d65ac91eb0226435cca77fd3c",
}


def test_the_bytes_of_a_small_file_are_frozen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    mix = softshare.Mixture([0.0, -0.5, 0.25, 0.5], [-9.0, -7.0, -7.0, -7.0], [3.0, 0.0, 0.0, 0.0])
    w = rng.normal(0, 0.4, (20, 12)) * (rng.random((20, 12)) < 0.3)
    layers = {"fc1.weight": w.astype(np.float32), "fc1.bias": np.zeros(20, np.float32)}
    compress.write_file(tmp_path / "m.sws", layers, mix, keep_mixture=True)
    assert (tmp_path / "m.sws").read_bytes().hex() == FROZEN4
    for version, frozen in ((1, FROZEN), (3, FROZEN3)):
        with monkeypatch.context() as m:
            m.setattr(_format_model, "VERSION", version)
            compress.write_file(tmp_path / "old.sws", layers, mix, keep_mixture=True)
        assert (tmp_path / "old.sws").read_bytes().hex() == frozen
    expected, _ = compress.quantize(list(layers.values()), mix)
    for frozen in (FROZEN, FROZEN3, FROZEN4):  # every version reads back
        (tmp_path / "old.sws").write_bytes(bytes.fromhex(frozen))
        for got, want in zip(compress.read_file(tmp_path / "old.sws").values(), expected):
            np.testing.assert_array_equal(got, want)
        assert compress.inspect_file(tmp_path / "old.sws").mixture is not None
