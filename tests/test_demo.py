"""``softshare demo``: the recipe end to end (quick mode) and the MNIST loaders."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the demo needs PyTorch")
pytest.importorskip("sklearn", reason="the demo's default data ships with scikit-learn")

from softshare import compress, demo


@pytest.mark.slow
def test_demo_quick_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "softshare", "demo", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| mlp | 0 |" in proc.stdout
    assert "| cnn | 0 |" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in results["models"]]
    assert names == ["mlp", "cnn"]
    for m in results["models"]:
        assert 0.0 <= m["error_before"] <= 1.0
        assert 0.0 <= m["error_after"] <= 1.0
        assert 0.0 < m["nonzero_fraction"] <= 1.0
        assert m["compression_ratio"] > 1.0
    data = demo.load_data(None, seed=0)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    for kind, m in zip(("mlp", "cnn"), results["models"]):
        for fig in ("histogram", "scatter", "mixture"):
            assert (out / f"{kind}_seed0_{fig}.png").stat().st_size > 1000
        with np.load(out / f"{kind}_seed0.npz") as z:
            exported = dict(z)
        assert "codebook" in exported
        # the library rebuilds the quantized network that scored error_after
        weights = compress.load_quantized(exported)
        model = demo.make_model(kind, data.side)
        params = dict(model.named_parameters())
        assert sorted(weights) == sorted(n.replace(".", "_") for n in params)
        with torch.no_grad():
            for name, p in params.items():
                w = weights[name.replace(".", "_")]
                assert w.dtype == np.float32
                assert w.shape == tuple(p.shape)
                p.copy_(torch.from_numpy(w))
            error = float((model(x_test).argmax(dim=1) != y_test).float().mean())
        # within one test image: another torch thread count may flip a near-tie
        assert error == pytest.approx(m["error_after"], abs=1.01 / len(y_test))


def test_cli_usage() -> None:
    from softshare.__main__ import main

    assert main([]) == 2
    assert main(["--help"]) == 0
    assert main(["train"]) == 2


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_mnist_loaders_on_small_synthetic_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, 50, dtype=np.uint8)
    x_test = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, 20, dtype=np.uint8)
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    idx = tmp_path / "idx"
    idx.mkdir()
    _write_idx(idx / "train-images-idx3-ubyte.gz", x_train)
    _write_idx(idx / "train-labels-idx1-ubyte.gz", y_train)
    _write_idx(idx / "t10k-images-idx3-ubyte", x_test)
    _write_idx(idx / "t10k-labels-idx1-ubyte", y_test)
    for source in (npz, idx):
        loaded = demo.load_mnist(source)
        for got, want in zip(loaded, (x_train, y_train, x_test, y_test)):
            np.testing.assert_array_equal(got, want)
        data = demo.load_data(str(source), seed=0)
        assert data.side == 28
        assert data.x_train.shape[1:] == (28, 28)
        assert len(data.y_train) + len(data.y_val) == 50
        assert len(data.y_test) == 20
        assert float(data.x_train.max()) <= 1.0
    with pytest.raises(FileNotFoundError, match="IDX"):
        demo.load_mnist(tmp_path / "idx_missing")
