"""``softshare demo``: the recipe end to end (quick mode) and the MNIST loaders."""

from __future__ import annotations

import dataclasses
import gzip
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
from softshare.__main__ import main
from softshare.demo._loop import Progress
from softshare.demo.schedule import schedule_for


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


def _tiny(n: int = 24) -> demo.Data:
    rng = np.random.default_rng(0)
    x = rng.random((n, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, n)
    return demo.Data(x[:16], y[:16], x[16:20], y[16:20], x[20:], y[20:], 8, "digits")


def test_zero_pretraining_epochs_keep_the_initial_weights(tmp_path: Path) -> None:
    quick = demo.Config.quick()  # no epochs: the steps alone
    cfg = dataclasses.replace(
        quick, pretrain_steps=0, retrain_steps=1, finetune_steps=0, batch_size=8
    )
    result = demo.run_network("cnn", _tiny(), cfg, 0, tmp_path, progress=False, plots=False)
    torch.manual_seed(0)  # the initial model run_network starts from
    model = demo.make_model("cnn", 8)
    x_test, y_test = _tiny().x_test, _tiny().y_test
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
        ({"pretrain_steps": True}, "pretrain_steps must be an integer >= 0"),
        ({"retrain_steps": 0, "retrain_epochs": 0}, "retraining needs a step"),
        ({"finetune_epochs": 1.5}, "finetune_epochs must be an integer >= 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_evals": 0}, "max_evals must be an integer >= 1"),
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
        demo.run_network("mlp", _tiny(), cfg, 0, tmp_path, progress=False, plots=False)


def test_the_schedule_keeps_the_digits_budget_and_scales_with_the_data() -> None:
    cfg = demo.Config()
    digits = schedule_for(cfg, 1150)  # the bundled digits' training split: 18 batches
    assert (digits.pretrain, digits.retrain, digits.finetune) == (1080, 7200, 1080)  # 60/400/60
    assert digits.every(digits.retrain) == 18  # a validation check per epoch
    mnist = schedule_for(cfg, 55_000)  # 860 batches: 20, 100 and 10 epochs
    assert (mnist.pretrain, mnist.retrain, mnist.finetune) == (17_200, 86_000, 8_600)
    assert mnist.total == 111_800
    assert "= 111,800 steps of 64 images (130.0 epochs of 55,000 training images)" in (
        mnist.describe()
    )
    quick = schedule_for(demo.Config.quick(), 55_000)
    assert (quick.pretrain, quick.retrain, quick.finetune) == (20, 40, 10)


def test_the_papers_networks() -> None:
    sizes = {"lenet-300-100": 266_610, "lenet-5-caffe": 431_080}  # LeCun et al. 1998; Caffe
    for kind, n in sizes.items():
        model = demo.make_model(kind, 28)
        assert sum(p.numel() for p in model.parameters()) == n
        assert model(torch.zeros(3, 28, 28)).shape == (3, 10)
        with pytest.raises(ValueError, match=f"{kind} is built for 28x28 images"):
            demo.make_model(kind, 8)
    with pytest.raises(ValueError, match="unknown model kind 'rnn'"):
        demo.make_model("rnn", 8)


def test_run_network_refuses_a_network_the_images_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lenet-5-caffe is built for 28x28 images"):
        demo.run_network(
            "lenet-5-caffe", _tiny(), demo.Config(), 0, tmp_path, progress=False, plots=False
        )
    assert list(tmp_path.iterdir()) == []


def test_progress_shows_the_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    bar = Progress("mlp seed 0: pretrain", 3, enabled=True)
    for i in range(3):
        bar.update(i, "val err 50.00 %" if i == 0 else None)
    err = capsys.readouterr().err
    assert "mlp seed 0: pretrain [" in err
    assert err.endswith("] 3/3 val err 50.00 % 0:00 taken, 0:00 left   \n")


def _idx(path: Path, array: np.ndarray) -> None:
    dims = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = bytes([0, 0, 8, array.ndim]) + dims + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _mnist_form(tmp_path: Path, form: str) -> Path:
    """A small MNIST-form data set (a bar whose height is the label) as npz, IDX or gzipped IDX."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 40), ("test", 10)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            x[i, 2 + 2 * c : 5 + 2 * c, 4:24] = 200
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    if form == "npz":
        np.savez(tmp_path / "mnist.npz", **arrays)
        return tmp_path / "mnist.npz"
    folder = tmp_path / form
    folder.mkdir()
    for key, stem in demo.data._IDX_FILES.items():
        _idx(folder / (stem + (".gz" if form == "idx.gz" else "")), arrays[key])
    return folder


@pytest.mark.parametrize("form", ["npz", "idx", "idx.gz"])
def test_the_papers_networks_on_mnist_form_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    data = _mnist_form(tmp_path, form)
    out = tmp_path / "out"
    argv = ["demo", "--data", str(data), "--quick", "--out", str(out), "--no-progress"]
    argv += ["--threads", "2"]
    if form == "npz":  # the paper's two networks are the default on 28x28 data
        argv += ["--models", "lenet-300-100", "lenet-5-caffe"]
    else:  # the loaders of the other forms, on the faster network
        argv += ["--models", "lenet-300-100"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    before_training = printed.split("Soft weight-sharing on mnist")[0]
    assert (
        "schedule per network on full MNIST: pretrain 17,200 + retrain 86,000 + fine-tune 8,600 "
        "= 111,800 steps of 64 images (130.0 epochs of 55,000 training images)"
    ) in before_training
    assert "this run (--quick): pretrain 20 + retrain 40 + fine-tune 10 = 70 steps" in (
        before_training
    )
    results = json.loads((out / "results.json").read_text())
    ratios = {"lenet-300-100": (64.2, 40.0), "lenet-5-caffe": (162.0, 39.0)}
    for m in results["models"]:
        assert m["steps"] == {"pretrain": 20, "retrain": 40, "finetune": 10}
        assert m["n_train"] == 32  # 40 less 8 for validation
        assert [p["compression_ratio"] for p in m["paper"]] == list(ratios[m["name"]])
        assert m["paper"][0]["source"].startswith("Ullrich, Meeds & Welling (2017)")
        assert m["paper"][1]["source"].startswith("Han, Mao & Dally (2016)")
        assert f"| {m['name']}: *Ullrich et al. 2017* | paper |" in printed
        assert (out / f"{m['name']}_seed0.sws").stat().st_size == m["file_bytes"]
    lenet300 = next(p for p in results["mean"][0]["paper"] if p["method"] == "Ullrich et al. 2017")
    assert (lenet300["error_before"], lenet300["error_after"]) == (0.0189, 0.0194)
    assert lenet300["nonzero_fraction"] == 0.043
    assert "| lenet-300-100: *Ullrich et al. 2017* | paper | 1.89 | 1.94 | +0.05 | 4.30 |" in (
        printed
    )
