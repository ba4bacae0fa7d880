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
    assert compress.load_quantized(tmp_path / "cnn_seed0.npz").keys() == {
        n.replace(".", "_") for n, _ in model.named_parameters()
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
