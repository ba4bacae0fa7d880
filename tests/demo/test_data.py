"""softshare.demo's MNIST loaders on adversarial files: IDX folders, .npz archives, bombs.

Every reproducer of "never silently wrong, never hung" for the data files gets
the right answer or a clear exception whose message is checked.
"""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softshare import demo
from softshare.demo import data as demo_data

from tests._archives import declare, zeros_npz


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
    bomb = declare(zeros_npz(tmp_path / "bomb.npz", shapes), "x_train.npy", 1_350_000_000)
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
