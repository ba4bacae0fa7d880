"""The compressed model file (docs/format.md): exact round trips, sizes, the report, its errors."""

from __future__ import annotations

import math
import tempfile
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softshare
from softshare import _core, compress
from softshare.compress._format import header as _fileheader
from softshare.compress._format import model as _modelfile

AWKWARD_NAMES = [
    *("codebook", "", "a/b", "..", "nul\0", "über layer π", "0", "007", "x" * 300, "a.b.c"),
    *("layer1.0.conv1.weight", "1.weight", "1.bias", "running_mean", "é" * 100, "tab\there"),
]


def _mixture(rng: np.random.Generator, m: int) -> softshare.Mixture:
    mu = np.concatenate([[0.0], rng.normal(0.0, 0.5, m - 1)])
    return softshare.Mixture(mu, rng.uniform(-9.0, -3.0, m), rng.normal(0.0, 1.0, m))


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for (name, x), y in zip(a.items(), b.values()):
        assert x.dtype == y.dtype, name
        assert x.shape == y.shape, name
        bits_x, bits_y = (np.asarray(v).reshape(-1).view(np.uint8) for v in (x, y))
        np.testing.assert_array_equal(bits_x, bits_y, err_msg=name)


# ---- round trips ---------------------------------------------------------------------------


@st.composite
def _weights(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], softshare.Mixture]:
    """Layers of any shapes (empty ones too), float32 or float64, and a mixture of 1 to 40."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = draw(st.integers(1, 40))
    names = draw(
        st.lists(st.sampled_from(AWKWARD_NAMES) | st.text(max_size=12), max_size=5, unique=True)
    )
    layers = {}
    for name in names:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
        dtype = draw(st.sampled_from([np.float32, np.float64]))
        sparse = rng.random(shape) < draw(st.floats(0.0, 1.0))
        layers[name] = np.where(sparse, 0.0, rng.normal(0.0, 0.6, shape)).astype(dtype)
    mix = _mixture(rng, m) if m > 1 else softshare.Mixture([draw(st.floats(-1, 1))], [-4.0], [0.0])
    return layers, mix


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_weights(), st.booleans(), st.booleans())
def test_layers_and_mixture_round_trip_bit_exactly(
    case: tuple[dict[str, np.ndarray], softshare.Mixture], use_pi: bool, keep: bool
) -> None:
    layers, mix = case
    expected = {}
    for name, w in layers.items():
        (q,), _ = compress.quantize([w], mix, use_pi=use_pi)
        expected[name] = q
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.sws"
        written = compress.write_file(path, layers, mix, use_pi=use_pi, keep_mixture=keep)
        loaded = compress.read_file(path)
        contents = compress.inspect_file(path)
        assert written.file_bytes == path.stat().st_size == contents.file_bytes
    _same(loaded, expected)
    _same(written.layers(), expected)
    assert contents.layer_bytes == written.layer_bytes
    assert contents.codebook_bytes == written.codebook_bytes
    assert contents.header_bytes > 0
    if keep:
        assert contents.mixture is not None
        for a, b in zip(
            (contents.mixture.mu, contents.mixture.log_var, contents.mixture.logit),
            (mix.mu, mix.log_var, mix.logit),
        ):
            np.testing.assert_array_equal(a, b)
    else:
        assert contents.mixture is None


@st.composite
def _exports(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """An export: a codebook of 1 .. 300 or 65,537 .. 70,000 values and layers indexing it."""
    k = draw(st.one_of(st.integers(1, 300), st.integers(65_537, 70_000)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    names = draw(st.lists(st.sampled_from(AWKWARD_NAMES[1:]), max_size=4, unique=True))
    layers = {}
    for name in names:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        layers[name] = rng.integers(0, k, shape) * (rng.random(shape) < 0.5)
    if k > 65_536:
        layers["all"] = rng.permutation(k)
    return compress.export_indices(layers, rng.normal(0.0, 1.0, k))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_exports())
def test_exports_round_trip_as_load_quantized(exported: dict[str, np.ndarray]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.sws"
        compress.write_file(path, exported)
        _same(compress.read_file(path), compress.load_quantized(exported))


def test_export_quantized_and_write_file_agree_in_float32(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mix = _mixture(rng, 9)
    layers = {"w": rng.normal(0, 0.5, (30, 20)).astype(np.float32), "b": np.zeros(30, np.float32)}
    compress.write_file(tmp_path / "a.sws", layers, mix)
    compress.write_file(tmp_path / "b.sws", compress.export_quantized(layers, mix))
    reference = compress.load_quantized(compress.export_quantized(layers, mix))
    _same(compress.read_file(tmp_path / "a.sws"), reference)
    _same(compress.read_file(tmp_path / "b.sws"), reference)


def test_edge_cases_round_trip(tmp_path: Path) -> None:
    one = softshare.Mixture([0.25], [-3.0], [0.0])  # a codebook of one value
    cases: list[dict[str, Any]] = [
        {},
        {"empty": np.zeros((0, 5), np.float32), "scalar": np.float64(2.0)},
        {"w": np.full((4, 4), 0.3, np.float32), "v": np.ones(7)},
        {"col": np.ones((9, 1), np.float32), "row": np.ones((1, 9), np.float32)},
    ]
    for i, layers in enumerate(cases):
        path = tmp_path / f"{i}.sws"
        written = compress.write_file(path, layers, one)
        expected = {n: np.full(np.shape(a), 0.25, np.asarray(a).dtype) for n, a in layers.items()}
        expected = {
            n: e if e.dtype == np.float32 else e.astype(np.float64) for n, e in expected.items()
        }
        _same(compress.read_file(path), expected)
        assert written.codebook.size == 1


def test_float64_layers_keep_means_float32_cannot_hold(tmp_path: Path) -> None:
    mix = softshare.Mixture([0.0, 0.1, 1 / 3], [-12.0, -12.0, -12.0], [0.0, 0.0, 0.0])
    layers = {"f64": np.array([0.1, 1 / 3, 0.0]), "f32": np.array([0.1, 1 / 3], np.float32)}
    written = compress.write_file(tmp_path / "m.sws", layers, mix)
    assert written.codebook.dtype == np.float64
    loaded = compress.read_file(tmp_path / "m.sws")
    np.testing.assert_array_equal(loaded["f64"], [0.1, 1 / 3, 0.0])
    assert loaded["f32"].dtype == np.float32
    np.testing.assert_array_equal(loaded["f32"], np.float32([0.1, 1 / 3]))


# ---- sizes and the report --------------------------------------------------------------------


def _sparse_network(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Indices shaped like a pruned MLP: dead rows and columns, 3 % non-zero in the rest."""
    layers = {}
    for name, shape in (("fc1.weight", (300, 64)), ("fc1.bias", (300,)), ("fc2.weight", (10, 300))):
        live = rng.random(shape) < 0.03
        if len(shape) == 2:
            live &= (rng.random(shape[0]) < 0.4)[:, None] & (rng.random(shape[1]) < 0.6)[None, :]
        layers[name] = np.where(live, rng.integers(1, 17, shape), 0)
    return layers


def test_the_file_beats_the_entropy_bound_on_a_pruned_network(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    indices = _sparse_network(rng)
    book = np.concatenate([[0.0], np.linspace(-1, 1, 16)])
    report = compress.compression_report(indices, book)
    written = compress.write_file(tmp_path / "m.sws", compress.export_indices(indices, book))
    assert 8 * written.file_bytes < report.bits_entropy  # rows and columns cost little
    with_file = report.with_file(written)
    assert with_file.file_bytes == written.file_bytes
    assert [c.file_bytes for c in with_file.layers] == list(written.layer_bytes.values())
    assert with_file.ratio_file == pytest.approx(4 * report.n_weights / written.file_bytes)
    table = with_file.to_markdown()
    assert f"| **total** | | {report.n_weights} |" in table
    assert f"File: {written.file_bytes} bytes" in table
    assert f"Entropy bound: {report.ratio_entropy:.1f}x" in table
    assert "| header |" in table
    assert "file bytes" not in report.to_markdown()  # without a file: the old table
    with pytest.raises(ValueError, match="are not the report's"):
        compress.compression_report({"other": indices["fc1.bias"]}, book).with_file(written)


def test_layer_bytes_add_up_and_inspect_prints_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "m.sws"
    written = compress.write_file(path, _sparse_network(rng), _mixture(rng, 5), keep_mixture=True)
    total = written.header_bytes + written.codebook_bytes + sum(written.layer_bytes.values())
    assert total == written.file_bytes
    assert written.layer_bytes["fc1.bias"] < written.layer_bytes["fc1.weight"]
    table = compress.inspect_file(path).to_markdown()
    for name, size in written.layer_bytes.items():
        assert f"| {name} | " in table
        assert f" | {size} | " in table
    assert f"| {written.file_bytes} | **{written.ratio:.1f}x** |" in table


# ---- writing: what the format refuses ---------------------------------------------------------


def test_write_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    mix = softshare.Mixture([0.0, 1.0], [-4.0, -4.0], [0.0, 0.0])
    path = tmp_path / "m.sws"
    cases: list[tuple[Any, Any, type[Exception], str]] = [
        ({"\ud800": np.ones(2)}, mix, ValueError, "is not valid UTF-8"),
        ({"x" * 4097: np.ones(2)}, mix, ValueError, "is over 4096 bytes"),
        ({"w": np.ones((1,) * 33)}, mix, ValueError, "over 32 dimensions"),
        ({"w": np.array([1.0, np.nan])}, mix, ValueError, r"layer 'w': weight nan at \(1,\)"),
        ({"w": np.array(["a"])}, mix, TypeError, "layer 'w' must hold real numbers"),
        ({1: np.ones(2)}, mix, TypeError, "layer names must be str"),
        ({"w": np.ones(2)}, None, ValueError, "must be an export"),
        ({"codebook": [0.0, np.inf], "w": np.zeros(2, int)}, None, ValueError, "not finite"),
        ({"codebook": [0.0], "w": np.ones(2, int)}, None, ValueError, r"index 1 at \(0,\)"),
        (
            {"w": np.ones(2, np.float32)},
            softshare.Mixture([1e39], [-4.0], [0.0]),
            ValueError,
            "float32",
        ),
    ]
    for layers, mixture, error, match in cases:
        with pytest.raises(error, match=match):
            compress.write_file(path, layers, mixture)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


# ---- reading: every check, with what it says ------------------------------------------------


@pytest.fixture
def valid(tmp_path: Path) -> bytes:
    rng = np.random.default_rng(3)
    compress.write_file(
        tmp_path / "v.sws", _sparse_network(rng), _mixture(rng, 6), keep_mixture=True
    )
    return (tmp_path / "v.sws").read_bytes()


def _with_crcs(raw: bytearray) -> bytes:
    """``raw`` with both checksums made right again (to reach the decoders)."""
    length, at, _ = _modelfile._read_varint(raw, 4)
    end = at + length
    raw[end : end + 4] = zlib.crc32(raw[:end]).to_bytes(4, "little")
    raw[-4:] = zlib.crc32(raw[end + 4 : -4]).to_bytes(4, "little")
    return bytes(raw)


def test_read_says_what_is_wrong(valid: bytes, tmp_path: Path) -> None:
    at = 5  # magic, version, a one-byte header length
    flipped = valid[:at] + bytes([valid[at] ^ 1]) + valid[at + 1 :]
    cases = {
        "short": (b"SWS", "not a softshare model file"),
        "npz": (b"PK\x03\x04" + bytes(40), r"does not start with b'SWS'"),
        "version": (valid[:3] + b"\x07" + valid[4:], "format version 7 is not supported"),
        "truncated": (valid[: len(valid) // 2], "header's length does not fit|checksum"),
        "header": (flipped, "header's checksum does not match"),
        "data": (valid[:-6] + bytes([valid[-6] ^ 1]) + valid[-5:], "layer data's checksum"),
        "extended": (valid + b"\0", "layer data's checksum"),
        "varint": (valid[:4] + b"\xff" * 6 + valid[10:], "header's length does not fit"),
    }
    for name, (raw, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        with pytest.raises(ValueError, match=match) as info:
            compress.read_file(path)
        assert str(info.value).startswith(str(path)), name
    with pytest.raises(FileNotFoundError):
        compress.read_file(tmp_path / "missing.sws")


def test_corrupt_streams_behind_good_checksums_are_refused(valid: bytes) -> None:
    raw = bytearray(valid)
    cut = _with_crcs(bytearray(raw[: len(raw) - 40] + raw[-4:]))  # layer data cut short
    with pytest.raises(ValueError, match=r"ends before its last value|beyond its values"):
        _modelfile.parse_model(cut, "f")
    longer = _with_crcs(bytearray(raw[:-4] + bytes(9) + raw[-4:]))
    with pytest.raises(ValueError, match=r"(9|10) bytes beyond its values"):
        _modelfile.parse_model(longer, "f")


def test_bombs_are_refused_before_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = {"zeros": np.zeros((5_000, 5_000), np.float32)}  # 100 MB of weights, all one value
    path = tmp_path / "bomb.sws"
    compress.write_file(path, huge, softshare.Mixture([0.0], [-4.0], [0.0]))
    assert path.stat().st_size < 100
    del huge
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"declares 100000000 bytes of weights in \d+ bytes"):
            compress.read_file(path)
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    monkeypatch.setattr(_modelfile, "FREE_BYTES", 1 << 30)
    monkeypatch.setattr(_modelfile, "MAX_BYTES", 1000)
    with pytest.raises(ValueError, match="over 1000 or 4096x"):
        compress.read_file(path)
    monkeypatch.setattr(_modelfile, "MAX_BYTES", 1 << 34)
    assert compress.read_file(path)["zeros"].shape == (5_000, 5_000)


def test_small_declared_sizes_are_read_at_any_ratio(tmp_path: Path) -> None:
    path = tmp_path / "z.sws"
    compress.write_file(
        path, {"z": np.zeros((1000, 1000))}, softshare.Mixture([0.0], [-1.0], [0.0])
    )
    assert math.isclose(compress.inspect_file(path).ratio, 4e6 / path.stat().st_size)
    assert compress.read_file(path)["z"].dtype == np.float64


def _crafted(write: Any) -> bytes:
    """A file whose header stream ``write(coder)`` writes, checksums right, no layer data."""
    enc = _core.StreamEncoder()
    write(_fileheader._Coder(enc, None))
    head = enc.finish()
    prefix = b"SWS\x01" + bytes([len(head)]) + head
    assert len(head) < 128
    return prefix + zlib.crc32(prefix).to_bytes(4, "little") + zlib.crc32(b"").to_bytes(4, "little")


def _counts(c: Any, k: int, n_layers: int) -> None:
    c.uint(_fileheader.C_COUNT, k)
    c.bit(_fileheader.C_FLAG, 0)
    c.bit(_fileheader.C_FLAG + 1, 0)
    c.uint(_fileheader.C_COUNT + 1, n_layers)


def test_crafted_headers_are_refused_before_allocating() -> None:
    def zeros_codebook(c: Any) -> None:
        _counts(c, 1 << 20, 0)
        for _ in range(1000):  # a million zeros cost next to nothing: refused by count
            c.bit(_fileheader.C_SIGN, 0)

    def many_layers(c: Any) -> None:
        _counts(c, 0, 10**9)

    def bad_name(c: Any) -> None:
        _counts(c, 0, 1)
        c.symbol(_fileheader.C_KIND + 4, 4, _fileheader.BYTE)
        c.symbol(_fileheader.C_BYTE, 256, 0xFF)
        c.symbol(_fileheader.C_KIND + 4, 4, _fileheader.END)

    def twice(c: Any) -> None:
        _counts(c, 0, 2)
        for _ in range(2):
            c.name(b"w")
            c.bit(_fileheader.C_DTYPE, 0)
            c.shape((0,), 0)

    def cut(c: Any) -> None:
        _counts(c, 3, 0)  # the codebook's values are missing

    cases = [
        (zeros_codebook, r"the codebook has 1048576 values: over the limit of \d+"),
        (many_layers, r"declares 1000000000 layers: over the limit of \d+ for its size"),
        (bad_name, r"the name of layer 0 is not UTF-8: b'\\xff'"),
        (twice, "layer name 'w' appears twice"),
        (cut, "the header ends inside the codebook"),
    ]
    for write, match in cases:
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match=match):
                _modelfile.parse_model(_crafted(write), "crafted.sws")
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()
