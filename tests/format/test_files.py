"""Files in and out on adversarial input: the quantized export's archive and the MNIST loaders.

Every reproducer of "never silently wrong, never hung" for files gets the
right answer or a clear exception whose message is checked.
"""

from __future__ import annotations

import gzip
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
from softshare import compress, demo
from softshare.compress._format import npz as _npzfile
from softshare.demo import data as demo_data

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


def _zeros_npz(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "|u1") -> Path:
    """An .npz of zero arrays written in chunks (a zip bomb costs nothing to make)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, shape in shapes.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as f:
                header = {"descr": dtype, "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
                left = int(np.prod(shape)) * np.dtype(dtype).itemsize
                while left:
                    f.write(bytes(min(left, 1 << 22)))
                    left -= min(left, 1 << 22)
    return path


def _declare(path: Path, member: str, size: int) -> Path:
    """Make the zip directory declare ``size`` bytes for ``member`` (its data unchanged)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # the first directory entry
    while True:
        n_name, n_extra, n_comment = (
            int.from_bytes(raw[at + i : at + i + 2], "little") for i in (28, 30, 32)
        )
        if raw[at + 46 : at + 46 + n_name] == member.encode():
            raw[at + 24 : at + 28] = size.to_bytes(4, "little")
            path.write_bytes(bytes(raw))
            return path
        at += 46 + n_name + n_extra + n_comment


def test_load_refuses_zip_bombs_and_too_many_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = _zeros_npz(tmp_path / "bomb.npz", {"codebook": (1,), "w": (100 << 20,)})
    assert bomb.stat().st_size < (1 << 20)  # 100 MiB of indices in under 1 MiB of file
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"bytes from .*\(a zip bomb\)"):
            compress.load_quantized(bomb)
        assert tracemalloc.get_traced_memory()[1] < 4 << 20  # refused before reading
    finally:
        tracemalloc.stop()
    liar = _declare(
        _zeros_npz(tmp_path / "liar.npz", {"codebook": (1,), "w": (9,)}), "w.npy", 3_000_000_000
    )
    with pytest.raises(ValueError, match=r"3000000\d{3} bytes from"):
        compress.load_quantized(liar)  # judged by what it declares
    small = _zeros_npz(tmp_path / "small.npz", {"codebook": (1,), "w": (10_000,)})
    assert len(compress.load_quantized(small)["w"]) == 10_000  # small files: any ratio
    monkeypatch.setattr(_npzfile, "MAX_BYTES", 5_000)
    with pytest.raises(ValueError, match="over 5000"):
        compress.load_quantized(small)
    monkeypatch.setattr(_npzfile, "MAX_MEMBERS", 3)
    many = _zeros_npz(tmp_path / "many.npz", {f"m{i}": (1,) for i in range(4)})
    with pytest.raises(ValueError, match="more than 3 members"):
        compress.load_quantized(many)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)  # makes zipfile write a ZIP64 record
    zip64 = _zeros_npz(tmp_path / "zip64.npz", {f"m{i}": (1,) for i in range(3)})
    with pytest.raises(ValueError, match="ZIP64"):
        compress.load_quantized(zip64)


# ---- the MNIST loaders ---------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, header: bytes | None = None) -> None:
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    data = (head if header is None else header) + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _mnist(n_train: int = 50, n_test: int = 20, side: int = 28) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _idx_folder(folder: Path, arrays: dict[str, np.ndarray], *, gz: bool = False) -> Path:
    folder.mkdir()
    for key, stem in demo_data._IDX_FILES.items():
        _write_idx(folder / (stem + (".gz" if gz and key.endswith("train") else "")), arrays[key])
    return folder


def test_mnist_loaders_on_small_synthetic_files(tmp_path: Path) -> None:
    arrays = _mnist()
    npz = tmp_path / "mnist.npz"
    np.savez(npz, **arrays)
    idx = _idx_folder(tmp_path / "idx", arrays, gz=True)
    for source in (npz, idx):
        loaded = demo.load_mnist(source)
        for got, key in zip(loaded, ("x_train", "y_train", "x_test", "y_test")):
            np.testing.assert_array_equal(got, arrays[key])
        data = demo.load_data(str(source), seed=0)
        assert data.side == 28
        assert data.x_train.shape[1:] == (28, 28)
        assert len(data.y_train) + len(data.y_val) == 50
        assert len(data.y_test) == 20
        assert float(data.x_train.max()) <= 1.0
    with pytest.raises(FileNotFoundError, match="IDX"):
        demo.load_mnist(tmp_path / "idx_missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        demo.load_mnist(tmp_path / "empty")


def _bad_idx(tmp_path: Path, key: str, array: np.ndarray, header: bytes | None = None) -> Path:
    folder = _idx_folder(tmp_path / "idx", _mnist())
    _write_idx(folder / demo_data._IDX_FILES[key], array, header)
    return folder


@pytest.mark.parametrize(
    ("key", "array", "header", "match"),
    [
        ("y_train", np.zeros(49), None, "train-images.* holds 50 images but .*labels.* 49 labels"),
        ("x_test", np.zeros((20, 14, 14)), None, r"x_test must have shape \(n, 28, 28\).*14, 14"),
        ("x_test", np.zeros((20, 784)), None, r"x_test must have shape .* found \(20, 784\)"),
        ("y_test", np.zeros((20, 28, 28)), None, r"y_test must have shape \(n,\)"),
        ("y_test", np.array([1, 2, 10, *[0] * 17]), None, "label 10 at position 2 is not a digit"),
        ("y_test", np.zeros(0), b"\0\0", "not an IDX file"),
        ("y_test", np.zeros(0), b"\0\0\x0d\x01" + (3).to_bytes(4, "big"), "not an IDX file"),
        ("y_test", np.zeros(0), b"\0\0\x08\x02" + bytes(8), r"y_test must .* found \(0, 0\)"),
        ("y_test", np.zeros(19), b"\0\0\x08\x01" + (20).to_bytes(4, "big"), "holds 19$"),
        ("y_test", np.zeros(21), b"\0\0\x08\x01" + (20).to_bytes(4, "big"), "holds 20 and more"),
        ("y_test", np.zeros(0), b"\0\0\x08\x01\0\0", "not an IDX file"),
        (
            "x_test",
            np.zeros(0),
            b"\0\0\x08\x03" + (10**9).to_bytes(4, "big") + bytes([0, 0, 0, 28]) * 2,
            "at most",
        ),
    ],
)
def test_idx_files_are_checked(
    tmp_path: Path, key: str, array: np.ndarray, header: bytes | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        demo.load_mnist(_bad_idx(tmp_path, key, array, header))


def test_gzip_bomb_reads_no_more_than_declared(tmp_path: Path) -> None:
    folder = _idx_folder(tmp_path / "idx", _mnist())
    path = folder / (demo_data._IDX_FILES["y_train"] + ".gz")
    with gzip.open(path, "wb", compresslevel=1) as f:  # 50 labels declared, 200 MiB held
        f.write(b"\0\0\x08\x01" + (50).to_bytes(4, "big"))
        for _ in range(50):
            f.write(bytes(4 << 20))
    (folder / demo_data._IDX_FILES["y_train"]).unlink()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="holds 50 and more"):
            demo.load_mnist(folder)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"extra": np.zeros(1)}, "more than 4 members"),
        ({"x_test": None}, "holds exactly"),
        ({"x_train": np.zeros((50, 28, 28), np.float32)}, "x_train must hold uint8 pixels"),
        ({"y_train": np.zeros(50, bool)}, "y_train must hold integer labels"),
        ({"y_train": np.full(50, -1, np.int64)}, "label -1 at position 0 is not a digit"),
        ({"x_train": np.zeros((200, 14, 14), np.uint8)}, r"x_train must have shape \(n, 28, 28\)"),
        ({"y_test": np.zeros(21, np.uint8)}, r"x_test\] holds 20 images but .*y_test\] holds 21"),
        ({"y_train": np.zeros(1, np.uint8), "x_train": np.zeros((1, 28, 28), np.uint8)}, "2 train"),
    ],
)
def test_npz_is_checked(tmp_path: Path, change: dict[str, Any], match: str) -> None:
    arrays = {**_mnist(), **change}
    path = tmp_path / "mnist.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(ValueError, match=match):
        demo.load_data(str(path), seed=0)


def test_other_files_are_not_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "mnist.npy", np.zeros((3, 28, 28), np.uint8))
    (tmp_path / "tiny").write_bytes(b"\0\0")
    for name in ("mnist.npy", "tiny"):
        with pytest.raises(ValueError, match=r"not an \.npz archive or a folder of IDX files"):
            demo.load_mnist(tmp_path / name)
    shapes = {"x_train": (50, 28, 28), "y_train": (50,), "x_test": (1, 28, 28), "y_test": (1,)}
    bomb = _declare(_zeros_npz(tmp_path / "bomb.npz", shapes), "x_train.npy", 1_350_000_000)
    assert bomb.stat().st_size < 150_000
    with pytest.raises(ValueError, match=r"13500\d{5} bytes from \d+: .*\(a zip bomb\)"):
        demo.load_mnist(bomb)
    monkeypatch.setattr(demo_data, "_MAX_BYTES", 1000)
    np.savez(tmp_path / "ok.npz", **_mnist())
    with pytest.raises(ValueError, match="over 1000"):
        demo.load_mnist(tmp_path / "ok.npz")


def test_load_data_split_sizes(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", **_mnist(n_train=2, n_test=1))
    data = demo.load_data(str(tmp_path / "m.npz"), seed=0, val_fraction=0.9)
    assert (len(data.y_train), len(data.y_val)) == (1, 1)
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        demo.load_data(str(tmp_path / "m.npz"), seed=0, val_fraction=1.0)
