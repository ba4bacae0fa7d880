"""``softshare demo``: the recipe end to end (quick mode) and the MNIST loaders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the demo needs PyTorch")
pytest.importorskip("sklearn", reason="the demo's default data ships with scikit-learn")

import softshare.torch as sst
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
    for kind, m in zip(("mlp", "cnn"), results["models"]):
        assert 0.0 <= m["error_before"] <= 1.0
        assert 0.0 <= m["error_after"] <= 1.0
        assert 0.0 < m["nonzero_fraction"] <= 1.0
        # the ratio is the file's, and the file is within 3 % of the entropy bound (or below)
        size = (out / f"{kind}_seed0.sws").stat().st_size
        assert m["file_bytes"] == size
        assert m["compression_ratio"] == pytest.approx(4 * m["n_weights"] / size)
        assert m["compression_ratio"] >= m["compression_ratio_entropy"] / 1.03
        assert f"| {kind} | 0 |" in proc.stdout
        assert f" | {size} | {m['compression_ratio']:.1f}x | " in proc.stdout
    data = demo.load_data(None, seed=0)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    for kind, m in zip(("mlp", "cnn"), results["models"]):
        for fig in ("histogram", "scatter", "mixture"):
            assert (out / f"{kind}_seed0_{fig}.png").stat().st_size > 1000
        # the library rebuilds the quantized network that scored error_after
        weights = compress.read_file(out / f"{kind}_seed0.sws")
        model = demo.make_model(kind, data.side)
        params = dict(model.named_parameters())
        assert list(weights) == list(params)
        for name, p in params.items():
            assert weights[name].dtype == np.float32
            assert weights[name].shape == tuple(p.shape)
        assert sst.load_compressed(out / f"{kind}_seed0.sws", model) is None
        for name, p in params.items():
            np.testing.assert_array_equal(p.detach().numpy(), weights[name])
        with torch.no_grad():
            error = float((model(x_test).argmax(dim=1) != y_test).float().mean())
        # within one test image: another torch thread count may flip a near-tie
        assert error == pytest.approx(m["error_after"], abs=1.01 / len(y_test))


def _tiny_mnist(n: int = 24) -> demo.Data:
    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return demo.Data(x[:16], y[:16], x[16:20], y[16:20], x[20:], y[20:], 28, "mnist")


def test_zero_pretraining_epochs_keep_the_initial_weights(tmp_path: Path) -> None:
    cfg = demo.Config(pretrain_epochs=0, retrain_epochs=1, finetune_epochs=0, batch_size=8)
    result = demo.run_network("cnn", _tiny_mnist(), cfg, 0, tmp_path, progress=False, plots=False)
    torch.manual_seed(0)  # the initial model run_network starts from
    model = demo.make_model("cnn", 28)
    x_test, y_test = _tiny_mnist().x_test, _tiny_mnist().y_test
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    assert result.error_before == pytest.approx(float(np.mean(pred != y_test)))
    assert compress.read_file(tmp_path / "cnn_seed0.sws").keys() == {
        n for n, _ in model.named_parameters()
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"pretrain_epochs": -1}, "pretrain_epochs must be an integer >= 0"),
        ({"retrain_epochs": 0}, "retrain_epochs must be an integer >= 1"),
        ({"finetune_epochs": 1.5}, "finetune_epochs must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"tau": -1.0}, "tau must be finite and above 0"),
        ({"tau": float("nan")}, "tau must be finite and above 0"),
    ],
)
def test_run_network_checks_its_settings_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, object], match: str
) -> None:
    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(demo.recipe.Setup, "build", no_training)
    cfg = demo.Config(**change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        demo.run_network("mlp", _tiny_mnist(), cfg, 0, tmp_path, progress=False, plots=False)
