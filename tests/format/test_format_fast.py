"""Format version 4's fast parts (csrc/softshare/codec_rans.hpp): rANS over a static table per part.

Round trips of parts of at least 2^18 cells (every codebook size a fast part
takes, every index width, sparse and dense, dead rows and columns, vectors and
single rows), the rule that decides which parts are fast, their size against
version 3's adaptive coding and the entropy, and corrupt streams refused with a
ValueError, never a crash.
"""

from __future__ import annotations

import numpy as np
import pytest

from softshare import _core

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

FAST = 1 << 18  # kFastCells


def _indices(
    shape: tuple[int, int], k: int, p: float, seed: int, *, dead: float = 0.0, bg: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = np.where(rng.random(shape) < p, rng.integers(0, k, shape), bg)
    if dead:
        idx[rng.random(shape[0]) < dead] = bg
        idx[:, rng.random(shape[1]) < dead] = bg
    return idx.reshape(-1)


def _round_trip(layers: list[np.ndarray], shapes: list[tuple[int, int]], k: int) -> bytes:
    data, ends = _core.encode_layers(layers, shapes, k, 4, 1)
    assert _core.encode_layers(layers, shapes, k, 4, 2) == (data, ends)
    for threads in (1, 2):
        decoded, read, counts = _core.decode_layers(data, shapes, k, 4, threads, True)
        assert read == ends
        for a, b in zip(decoded, layers):
            assert a.dtype == np.uint8
            np.testing.assert_array_equal(a, b)
        assert counts is not None
        expected = sum((np.bincount(a, minlength=k) for a in layers), np.zeros(k, np.int64))
        np.testing.assert_array_equal(counts, expected)
    return bytes(data)


@pytest.mark.parametrize("k", [2, 3, 17, 256])
@pytest.mark.parametrize("p", [0.0, 0.001, 0.05, 0.6, 1.0])
@pytest.mark.parametrize("dead", [0.0, 0.4])
def test_fast_parts_round_trip(k: int, p: float, dead: float) -> None:
    shapes = [(512, 512), (3, 400_000), (300_000, 1), (1, 300_000), (7, 9)]
    layers = [
        _indices(s, k, p, seed, dead=dead, bg=seed % k).astype(np.uint8)
        for seed, s in enumerate(shapes)
    ]
    _round_trip(layers, shapes, k)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_wider_indices_code_as_uint8(dtype: type) -> None:
    idx = _indices((600, 600), 17, 0.1, 5, dead=0.2)
    narrow = _round_trip([idx.astype(np.uint8)], [(600, 600)], 17)
    wide, _ = _core.encode_layers([idx.astype(dtype)], [(600, 600)], 17, 4)
    assert wide == narrow


def test_parts_under_2_18_cells_and_large_codebooks_are_not_fast() -> None:
    for shape, k in [((511, 513), 17), ((512, 512), 257), ((512, 512), 1)]:
        idx = _indices(shape, k, 0.1, 1)
        idx = idx.astype(np.uint8 if k <= 256 else np.uint16)
        assert (
            _core.encode_layers([idx], [shape], k, 4)[0]
            == _core.encode_layers([idx], [shape], k, 3)[0]
        )
    idx = _indices((512, 512), 17, 0.1, 1).astype(np.uint8)
    assert (
        _core.encode_layers([idx], [(512, 512)], 17, 4)[0]
        != _core.encode_layers([idx], [(512, 512)], 17, 3)[0]
    )


def test_a_fast_part_costs_about_its_entropy() -> None:
    rng = np.random.default_rng(0)
    n, p = 1_000_000, np.array([0.9, 0.05, 0.03, 0.02])
    idx = rng.choice(4, size=n, p=p).astype(np.uint8)
    data, _ = _core.encode_layers([idx], [(1000, 1000)], 4, 4)
    entropy = -n * float(np.sum(p * np.log2(p))) / 8
    assert entropy < len(data) < 1.005 * entropy


@pytest.mark.parametrize(
    ("shape", "p", "dead"),
    [
        ((2441, 4096), 0.1, 0.0),  # bench_recipe.py's layers
        ((1000, 1000), 0.01, 0.0),
        ((1000, 1000), 0.05, 0.5),  # dead rows and columns: flagged
        ((3, 360_000), 0.05, 0.0),  # bands of few rows: columns not flagged
        ((512, 512), 0.002, 0.3),
        ((600, 600), 0.9, 0.0),
    ],
)
def test_fast_parts_are_no_larger_than_version_3(
    shape: tuple[int, int], p: float, dead: float
) -> None:
    idx = _indices(shape, 17, p, 2, dead=dead).astype(np.uint8)
    v3, _ = _core.encode_layers([idx], [shape], 17, 3)
    v4, _ = _core.encode_layers([idx], [shape], 17, 4)
    assert len(v4) < 1.005 * len(v3) + 64


@pytest.mark.parametrize("shape", [(1024, 1024), (4096, 300)])
def test_rows_and_columns_of_unlike_density_are_classed(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)  # rows 0.1 % to 30 % non-zero, columns 20 % to 100 % of that
    p = np.exp(rng.uniform(np.log(1e-3), np.log(0.3), shape[0]))[:, None]
    p = p * np.exp(rng.uniform(np.log(0.2), 0.0, shape[1]))[None, :]
    idx = np.where(rng.random(shape) < p, rng.integers(1, 17, shape), 0).astype(np.uint8)
    flat = idx.reshape(-1)
    _round_trip([flat], [shape], 17)
    v3, _ = _core.encode_layers([flat], [shape], 17, 3)
    v4, _ = _core.encode_layers([flat], [shape], 17, 4)
    assert len(v4) < 0.99 * len(v3)  # (order-0 of all cells: about 10 % more than version 4)


def _fast_segment() -> tuple[bytes, list[tuple[int, int]]]:
    shapes = [(600, 600)]
    idx = _indices(shapes[0], 17, 0.1, 3, dead=0.1).astype(np.uint8)
    data, _ = _core.encode_layers([idx], shapes, 17, 4)
    return bytes(data), shapes


def test_a_corrupt_fast_segment_is_refused() -> None:
    data, shapes = _fast_segment()
    side = data[0] & 127 | data[1] << 7 if data[0] >= 128 else data[0]
    assert len(data) > side + 64
    cases = [
        (b"\xff" * 9, "malformed length"),
        (b"\xff\xff\x7f" + data[3:], "malformed length"),
        (data + b"\x00", "not whole words"),
        (data + b"\x00" * 4, "beyond its values"),
        (data[:-4], "ends before its last value|do not end where they start"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            _core.decode_layers(bad, shapes, 17, 4)
    rng = np.random.default_rng(0)
    messages = []
    for _ in range(200):  # corrupt words of the rANS stream: refused, or other indices
        bad = bytearray(data)
        at = int(rng.integers(len(data) - 64, len(data)))
        bad[at] ^= int(rng.integers(1, 256))
        try:
            arrays, _ = _core.decode_layers(bytes(bad), shapes, 17, 4)
        except ValueError as e:
            messages.append(str(e))
        else:
            assert int(arrays[0].max()) < 17
    assert len(messages) > 150
    assert all("segment 0 of the layer data" in m or "ends before" in m for m in messages)


def test_a_table_out_of_range_is_refused() -> None:
    shapes = [(512, 512)]
    refused = set()
    rng = np.random.default_rng(1)
    for _ in range(300):  # random adaptive streams: tables that do not sum to 2^15
        side = rng.integers(0, 256, int(rng.integers(1, 60)), dtype=np.uint8).tobytes()
        words = rng.integers(0, 256, 4 * int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            arrays, _ = _core.decode_layers(bytes([len(side)]) + side + words, shapes, 17, 4)
        except ValueError as e:
            refused.add(str(e).split(": ")[-1])
        else:
            assert int(arrays[0].max()) < 17
    assert "a fast part's frequency table does not sum to 2^15" in refused, refused
    data, shapes = _fast_segment()  # the probabilities end the adaptive stream: corrupt them
    side, start = (data[0] & 127 | data[1] << 7, 2) if data[0] >= 128 else (data[0], 1)
    refused.clear()
    for _ in range(100):
        bad = bytearray(data)
        bad[int(rng.integers(start + side - 20, start + side))] = int(rng.integers(0, 256))
        try:
            _core.decode_layers(bytes(bad), shapes, 17, 4)
        except ValueError as e:
            refused.add(str(e).split(": ")[-1])
    assert "a fast part's probability is over 2^15" in refused, refused


def test_any_bytes_decode_as_version_4_without_a_crash() -> None:
    rng = np.random.default_rng(2)
    shapes = [(3, 400_000), (30, 20), (700, 1000)]
    outcomes: set[str] = set()
    for _ in range(60):
        data = rng.integers(0, 256, int(rng.integers(0, 600)), dtype=np.uint8).tobytes()
        try:
            arrays, ends = _core.decode_layers(data, shapes, 5, 4, int(rng.integers(1, 3)))
        except ValueError as e:
            outcomes.add(str(e)[:20])
            continue
        outcomes.add("decoded")
        assert [a.size for a in arrays] == [r * c for r, c in shapes]
        assert all(int(a.max()) < 5 for a in arrays)
        assert ends == sorted(ends)
    assert len(outcomes) >= 2
