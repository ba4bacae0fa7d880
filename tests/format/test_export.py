"""The quantized export's archive (``save_quantized``/``load_quantized``) on adversarial input.

Every reproducer of "never silently wrong, never hung" for files gets the
right answer or a clear exception whose message is checked.
"""

from __future__ import annotations

import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softshare
from softshare import compress
from softshare.compress._format import npz as _npzfile

from tests._archives import declare, zeros_npz

BOOK = np.linspace(-1.0, 1.0, 10)
BOOK32 = BOOK.astype(np.float32)
#: Layer names that collide with keywords of np.savez / np.load, or look like the codebook.
AWKWARD_NAMES = [
    *("allow_pickle", "file", "fix_imports", "mmap_mode", "encoding", "max_header_size"),
    *("args", "kwds", "compress", "Codebook", "codebook.npy", " codebook", "codebook_"),
    *("a.npy", "über layer \u03c0", ".hidden", "tab\there", "x" * 300),
]


# ---- the export's archive: names, widths, round trips ---------------------------------------


def test_every_valid_layer_name_round_trips(tmp_path: Path) -> None:
    layers = {name: np.array([[i % 10, 9]]) for i, name in enumerate(AWKWARD_NAMES)}
    path = tmp_path / "q.npz"
    compress.save_quantized(path, compress.export_indices(layers, BOOK))
    loaded = compress.load_quantized(path)
    assert sorted(loaded) == sorted(AWKWARD_NAMES)
    for name, idx in layers.items():
        np.testing.assert_array_equal(loaded[name], BOOK32[idx])
    with np.load(path) as z:  # numpy reads the file as well
        assert sorted(z.files) == sorted([*AWKWARD_NAMES, "codebook"])
        np.testing.assert_array_equal(z["codebook"][z["allow_pickle"]], loaded["allow_pickle"])


@pytest.mark.parametrize("name", ["", "a/b", "/abs", "..", "a..b", "a\\b", "nul\0", "\ud800"])
def test_names_that_cannot_be_members_are_refused(tmp_path: Path, name: str) -> None:
    exported = {"codebook": BOOK32, name: np.zeros(2, np.uint8)}
    with pytest.raises(ValueError, match="cannot name an archive member") as info:
        compress.save_quantized(tmp_path / "q.npz", exported)
    assert repr(name) in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


def test_codebook_is_a_reserved_layer_name() -> None:
    with pytest.raises(ValueError, match="may not be called 'codebook'"):
        compress.export_indices({"codebook": np.zeros(3, int)}, BOOK)


def test_save_writes_exactly_at_path_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "model"  # no suffix: none is added
    compress.save_quantized(path, compress.export_indices({"w": np.arange(10)}, BOOK))
    with pytest.raises(TypeError, match="layer 'w': indices must be an integer array"):
        compress.save_quantized(path, {"codebook": BOOK32, "w": np.ones(3)})
    np.testing.assert_array_equal(compress.load_quantized(path)["w"], BOOK32)  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


@pytest.mark.parametrize(
    ("n_used", "dtype"),
    [(1, np.uint8), (256, np.uint8), (257, np.uint16), (65_536, np.uint16), (65_537, np.uint32)],
)
def test_index_width_fits_the_values_used(tmp_path: Path, n_used: int, dtype: type) -> None:
    book = np.arange(n_used + 3, dtype=np.float64)  # exact in float32
    idx = np.arange(n_used)[::-1].reshape(1, -1)
    exported = compress.export_indices({"w": idx}, book)
    assert exported["w"].dtype == dtype
    path = tmp_path / "q.npz"
    compress.save_quantized(path, exported)
    np.testing.assert_array_equal(compress.load_quantized(path)["w"], book[idx])


def test_export_quantized_widens_too() -> None:
    mix = softshare.Mixture(np.arange(300.0), np.full(300, -4.0), np.zeros(300))
    weights = np.arange(300.0)[::-1]
    exported = compress.export_quantized({"w": weights}, mix)
    assert exported["w"].dtype == np.uint16
    np.testing.assert_array_equal(compress.load_quantized(exported)["w"], weights)


_MEMBER_NAMES = st.one_of(
    st.sampled_from(AWKWARD_NAMES),
    st.text(min_size=1, max_size=12).filter(
        lambda s: ".." not in s and not set(s) & set("/\\\0") and s != "codebook"
    ),
)


@st.composite
def _exports(draw: st.DrawFn) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A codebook of 1 .. 300 or 65,537 .. 70,000 values and layers of any shape indexing it."""
    k = draw(st.one_of(st.integers(1, 300), st.integers(65_537, 70_000)))
    names = draw(st.lists(_MEMBER_NAMES, max_size=4, unique=True))
    layers = {}
    for name in names:
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        dtype = draw(st.sampled_from(["<i8", ">i4", "<u4", ">u8", "<i2" if k < 1 << 15 else "<i4"]))
        layers[name] = draw(hnp.arrays(dtype, shape, elements=st.integers(0, k - 1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if k > 65_536:  # every value used: uint32 indices
        layers[draw(_MEMBER_NAMES.filter(lambda s: s not in layers))] = rng.permutation(k)
    return rng.normal(0.0, 1.0, k), layers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_exports())
def test_save_load_round_trip_is_exact(case: tuple[np.ndarray, dict[str, np.ndarray]]) -> None:
    book, layers = case
    exported = compress.export_indices(layers, book)
    n_used = exported["codebook"].size
    width = np.uint8 if n_used <= 256 else np.uint16 if n_used <= 65_536 else np.uint32
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "q.npz"
        compress.save_quantized(path, exported)
        loaded = compress.load_quantized(path)
    assert sorted(loaded) == sorted(layers)
    book32 = book.astype(np.float32)
    for name, idx in layers.items():
        assert exported[name].dtype == width
        assert loaded[name].dtype == np.float32
        assert loaded[name].shape == idx.shape
        np.testing.assert_array_equal(loaded[name], book32[idx])


# ---- the export's checks on load -----------------------------------------------------------

_BAD_EXPORTS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"codebook": BOOK, "w": np.array([2, -1])}, ValueError, r"layer 'w': index -1 at \(1,\)"),
    ({"codebook": BOOK, "w": np.array([[0, 10]])}, ValueError, r"index 10 at \(0, 1\).*\[0, 10\)"),
    ({"codebook": BOOK, "w": np.array([True])}, TypeError, "layer 'w'.*dtype bool"),
    ({"codebook": BOOK, "w": np.array([1.0])}, TypeError, "layer 'w'.*dtype float64"),
    ({"codebook": BOOK, "w": np.array([1], object)}, TypeError, "layer 'w'.*dtype object"),
    ({"codebook": [0.0, np.nan], "w": np.array([0])}, ValueError, r"codebook\[1\] = nan"),
    ({"codebook": [np.inf], "w": np.array([0])}, ValueError, r"codebook\[0\] = inf"),
    ({"codebook": [1e300], "w": np.array([0])}, ValueError, r"codebook\[0\].*not finite in float"),
    ({"codebook": np.ones((2, 2)), "w": np.array([0])}, ValueError, "codebook must be a 1-D"),
    ({"codebook": np.array([1j]), "w": np.array([0])}, ValueError, "codebook must be.*real"),
    ({"codebook": np.array([True]), "w": np.array([0])}, ValueError, "codebook must be.*real"),
    ({"w": np.array([0])}, ValueError, "needs a 'codebook' entry"),
]


@pytest.mark.parametrize(("exported", "error", "match"), _BAD_EXPORTS)
def test_load_refuses_bad_exports(
    tmp_path: Path, exported: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        compress.load_quantized(exported)
    if exported["w"].dtype.kind == "O":
        return
    path = tmp_path / "bad.npz"  # the same export in a file (np.savez writes anything)
    np.savez(path, **exported)
    with pytest.raises(error, match=match):
        compress.load_quantized(path)


def _zip(path: Path, members: dict[str, bytes], **kwargs: Any) -> Path:
    with zipfile.ZipFile(path, "w", **kwargs) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(shape: tuple[int, ...], dtype: str, data: bytes | None = None) -> bytes:
    """An .npy file's bytes: a header declaring ``shape`` and ``dtype``, then ``data``."""
    with tempfile.TemporaryFile() as f:
        header = {"descr": dtype, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(int(np.prod(shape)) * np.dtype(dtype).itemsize) if data is None else data)
        f.seek(0)
        return f.read()


def test_load_refuses_files_that_are_not_exports(tmp_path: Path) -> None:
    book = _npy((3,), "<f4")
    cases = {
        "two_bytes": (b"PK", "not an .npz archive"),
        "array.npy": (_npy((3,), "<f8"), "not an .npz archive"),
        "text.npz": (b"hello " * 20, "not an .npz archive"),
        "objects.npz": ({"codebook.npy": book, "w.npy": _npy((1,), "|O")}, "Python objects"),
        "raw.npz": ({"codebook.npy": book, "readme.txt": b"x"}, "unencrypted .npy arrays"),
        "liar.npz": ({"codebook.npy": book, "w.npy": _npy((10**12,), "<u1", b"\0")}, "its size"),
        "short.npz": ({"codebook.npy": book, "w.npy": _npy((4,), "<u1", b"\0")}, "its size"),
        "long.npz": ({"codebook.npy": book, "w.npy": _npy((1,), "<u1", b"\0\0")}, "its size"),
        "garbage.npz": ({"codebook.npy": book, "w.npy": b"\x93NUMPY\x09"}, "not a readable .npy"),
    }
    for name, (content, match) in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            _zip(path, content)
        with pytest.raises(ValueError, match=match):
            compress.load_quantized(path)
    with pytest.raises(FileNotFoundError):
        compress.load_quantized(tmp_path / "missing.npz")


def test_load_refuses_a_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "q.npz"
    rng = np.random.default_rng(0)
    layers = {"w": rng.integers(0, 10, 5000)}
    compress.save_quantized(path, compress.export_indices(layers, BOOK))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the layer's compressed data
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"corrupt \.npz archive"):
        compress.load_quantized(path)


def test_load_refuses_zip_bombs_and_too_many_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = zeros_npz(tmp_path / "bomb.npz", {"codebook": (1,), "w": (100 << 20,)})
    assert bomb.stat().st_size < (1 << 20)  # 100 MiB of indices in under 1 MiB of file
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bytes from .*\(a zip bomb\)"):
            compress.load_quantized(bomb)
        assert tracemalloc.get_traced_memory()[1] < 4 << 20  # refused before reading
    finally:
        tracemalloc.stop()
    liar = declare(
        zeros_npz(tmp_path / "liar.npz", {"codebook": (1,), "w": (9,)}), "w.npy", 3_000_000_000
    )
    with pytest.raises(ValueError, match=r"3000000\d{3} bytes from"):
        compress.load_quantized(liar)  # judged by what it declares
    small = zeros_npz(tmp_path / "small.npz", {"codebook": (1,), "w": (10_000,)})
    assert len(compress.load_quantized(small)["w"]) == 10_000  # small files: any ratio
    monkeypatch.setattr(_npzfile, "MAX_BYTES", 5_000)
    with pytest.raises(ValueError, match="over 5000"):
        compress.load_quantized(small)
    monkeypatch.setattr(_npzfile, "MAX_MEMBERS", 3)
    many = zeros_npz(tmp_path / "many.npz", {f"m{i}": (1,) for i in range(4)})
    with pytest.raises(ValueError, match="more than 3 members"):
        compress.load_quantized(many)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # makes zipfile write a ZIP64 record
    zip64 = zeros_npz(tmp_path / "zip64.npz", {f"m{i}": (1,) for i in range(3)})
    with pytest.raises(ValueError, match="ZIP64"):
        compress.load_quantized(zip64)
