"""``softshare demo`` on bad arguments and bad data: a one-line error and status 2, before any work.

Every argument is checked as it is parsed and the data right after it is
read, so none of these runs reaches the data (for bad arguments) or training
(for bad data); an interrupted run exits with 130 and leaves no results.json.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import softshare.demo
from softshare.__main__ import main
from softshare.demo import cli
from softshare.demo.recipe import RunResult


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the run reads data or trains."""

    def fail(*_: object, **__: object) -> None:
        raise AssertionError("the run went past its checks")

    monkeypatch.setattr(cli, "load_data", fail)
    monkeypatch.setattr(cli, "run_network", fail)


def test_help_opens_with_the_demo_packages_first_line() -> None:
    """``cli.DESCRIPTION`` is a copy (the package imports ``cli``: it cannot import the package)."""
    assert (softshare.demo.__doc__ or "").splitlines()[0] == cli.DESCRIPTION
    assert cli._parser().description == cli.DESCRIPTION


def _mnist_npz(path: Path, **change: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 30, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10, dtype=np.uint8),
    }
    np.savez(path, **{**arrays, **change})
    return path


def _exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``softshare`` with ``argv``; it must exit with 2 and one error line. Returns stderr."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("softshare demo: error: ")
    return err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
        (["--seeds", "-1"], "argument --seeds: must be at least 1, got -1"),
        (["--seeds", "two"], "argument --seeds: 'two' is not an integer"),
        (["--retrain-epochs", "0"], "argument --retrain-epochs: must be at least 1, got 0"),
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (
            ["--threads", "100000000"],
            (
                f"argument --threads: must be at most {cli.MAX_THREADS:,} (4 threads per core, "
                f"{cli.CORES} here), got 100000000"
            ),
        ),
        (
            ["--threads", "99999999999999999999999"],
            "argument --threads: must be at most",
        ),
        (["--seeds", "1001"], "argument --seeds: must be at most 1,000, got 1001"),
        (
            ["--retrain-epochs", "99999999999999999999"],
            "argument --retrain-epochs: must be at most 100,000, got 99999999999999999999",
        ),
        (["--tau", "-1"], "argument --tau: must be a finite number above 0, got '-1'"),
        (["--tau", "0"], "argument --tau: must be a finite number above 0, got '0'"),
        (["--tau", "nan"], "argument --tau: must be a finite number above 0, got 'nan'"),
        (["--tau", "inf"], "argument --tau: must be a finite number above 0, got 'inf'"),
        (
            ["--error-budget", "-0.1"],
            "argument --error-budget: must be percentage points in [0, 100] or 'off', got '-0.1'",
        ),
        (
            ["--error-budget", "nan"],
            "argument --error-budget: must be percentage points in [0, 100] or 'off', got 'nan'",
        ),
        (
            ["--error-budget", "none"],
            "argument --error-budget: must be percentage points in [0, 100] or 'off', got 'none'",
        ),
        (["--models"], "argument --models: expected at least one argument"),
        (["--models", "mlp", "mlp"], "argument --models: a model is named twice"),
        (["--models", "rnn"], "argument --models: invalid choice: 'rnn'"),
        (
            ["--models", "mlp", "lenet-5-caffe"],
            (
                "argument --models: lenet-5-caffe is built for 28x28 images (MNIST form) and the "
                "data's are 8x8: give MNIST-form data with --data, or use --models mlp cnn"
            ),
        ),
    ],
)
@pytest.mark.usefixtures("no_work")
def test_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert message in _exits_2(["demo", *args], capsys)


@pytest.mark.usefixtures("no_work")
@pytest.mark.usefixtures("no_work")
def test_a_meta_device_and_a_folder_in_the_way_are_refused_before_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    err = _exits_2(["demo", "--device", "meta", "--out", str(tmp_path / "o")], capsys)
    assert "argument --device: meta: meta tensors hold no values to train" in err
    (tmp_path / "t" / "cnn_seed1_budget.png").mkdir(parents=True)
    err = _exits_2(["demo", "--seeds", "2", "--out", str(tmp_path / "t")], capsys)
    assert f"argument --out: {tmp_path / 't' / 'cnn_seed1_budget.png'} is a folder" in err


@pytest.mark.usefixtures("no_work")
def test_bad_out_and_data_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        err = _exits_2(["demo", "--out", str(out)], capsys)
        assert f"argument --out: {afile} is a file, not a folder" in err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").mkdir()  # cannot be replaced
    assert "argument --out:" in _exits_2(["demo", "--out", str(tmp_path / "out")], capsys)
    err = _exits_2(["demo", "--data", str(tmp_path / "missing.npz")], capsys)
    assert "missing.npz: no such file or folder" in err


def test_arguments_are_checked_within_a_second(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "softshare", "demo", "--seeds", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "softshare demo: error: argument --seeds: must be at least 1, got 0"
    )
    assert time.perf_counter() - t0 < 10  # python and numpy start; no data, no torch
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y_train": np.full(30, 10, np.uint8)}, "label 10 at position 0 is not a digit 0..9"),
        ({"x_test": np.zeros((40, 14, 14), np.uint8)}, "x_test must have shape (n, 28, 28)"),
        ({"y_test": np.zeros(9, np.uint8)}, "holds 10 images but"),
    ],
)
def test_bad_data_stops_before_training(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, np.ndarray],
    message: str,
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr(cli, "run_network", lambda *_, **__: pytest.fail("training started"))
    monkeypatch.setattr("torch.set_num_threads", lambda _: None)
    data = _mnist_npz(tmp_path / "mnist.npz", **change)
    assert message in _exits_2(["demo", "--data", str(data), "--out", str(tmp_path)], capsys)
    npy = tmp_path / "mnist.npy"
    np.save(npy, np.zeros(3))
    err = _exits_2(["demo", "--data", str(npy), "--out", str(tmp_path)], capsys)
    assert "not an .npz archive or a folder of IDX files" in err


def _fake_result(
    kind: str, _data: object, _cfg: object, seed: int, *_: object, **__: object
) -> RunResult:
    return RunResult(kind, seed, 0.1, 0.12, 0.11, 0.05, 7, 50.0, 60.0, 30.0, "merged", 1.0, 100)


def test_a_run_replaces_results_json_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr("torch.set_num_threads", lambda _: None)
    data = _mnist_npz(tmp_path / "mnist.npz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"old": true}')

    def interrupted(*_: object, **__: object) -> None:
        assert not (out / "results.json").exists()  # gone before any work
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_network", interrupted)
    assert main(["demo", "--data", str(data), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == f"softshare demo: interrupted; {out} holds no results.json"
    assert not (out / "results.json").exists()

    monkeypatch.setattr(cli, "run_network", _fake_result)
    argv = [
        "demo",
        "--data",
        str(data),
        "--out",
        str(out),
        "--seeds",
        "2",
        "--models",
        "mlp",
        "cnn",
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [(m["name"], m["seed"]) for m in results["models"]] == [
        ("mlp", 0),
        ("cnn", 0),
        ("mlp", 1),
        ("cnn", 1),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # no partial file left
    assert "| mlp | 1 | 10.00 | 12.00 | +2.00 | 5.00 | 7 | 0 | 50.0x | 60.0x |" in (
        capsys.readouterr().out
    )
    assert results["mean"][0]["compression_ratio_entropy"] == 60.0


@pytest.mark.usefixtures("no_work")
def test_a_device_torch_cannot_use_is_refused_before_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "softshare-demo").mkdir()
    (tmp_path / "softshare-demo" / "results.json").write_text("{}")  # an earlier run's
    assert "argument --device: 'nowhere' is not a torch device" in _exits_2(
        ["demo", "--device", "nowhere"], capsys
    )
    assert (tmp_path / "softshare-demo" / "results.json").read_text() == "{}"  # untouched
    _exits_2(["demo", "--device", "nowhere", "--out", str(tmp_path / "new")], capsys)
    assert not (tmp_path / "new").exists()  # nor made
    if not torch.cuda.is_available():
        assert "argument --device: cuda: no CUDA device here" in _exits_2(
            ["demo", "--device", "cuda"], capsys
        )


def test_the_default_models_follow_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr("torch.set_num_threads", lambda _: None)
    monkeypatch.setattr(cli, "run_network", _fake_result)
    data = _mnist_npz(tmp_path / "mnist.npz")
    assert main(["demo", "--data", str(data), "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["name"] for m in results["models"]] == ["lenet-300-100", "lenet-5-caffe"]
    printed = capsys.readouterr().out
    assert "schedule per network, full: pretrain 1,080 + retrain 7,200 + fine-tune 1,080" in printed
    assert "on full MNIST: pretrain 17,200 + retrain 86,000 + fine-tune 8,600" in printed


@pytest.mark.parametrize(
    ("args", "budget", "tau"),
    [
        ([], 1e-3, 2e-3),
        (["--error-budget", "0.25"], 2.5e-3, 2e-3),
        (["--error-budget", "0"], 0.0, 2e-3),
        (["--error-budget", "OFF", "--tau", "0.01"], None, 0.01),
    ],
)
def test_the_error_budget_is_given_in_percentage_points_or_turned_off(
    args: list[str], budget: float | None, tau: float
) -> None:
    cfg = cli._config(cli._parser().parse_args(args))
    assert cfg.error_budget == (None if budget is None else pytest.approx(budget))
    assert cfg.tau == tau


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: softshare demo" in capsys.readouterr().err
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: softshare demo" in out
    assert "softshare inspect FILE [FILE ...]" in out
    assert main(["train"]) == 2
    assert "unknown command 'train' (the commands are 'demo' and 'inspect')" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_training_exits_130_without_a_traceback(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    (tmp_path / "results.json").write_text("{}")  # an earlier run's
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from softshare.__main__ import main; sys.exit(main())"
    )
    argv = [sys.executable, "-c", code, "demo", "--quick", "--out", str(tmp_path)]
    with subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        seen = b""
        while b"pretrain [" not in seen:  # the progress bar: training has started
            seen += proc.stderr.read(1) or pytest.fail(f"no training: {seen!r}")
        proc.send_signal(signal.SIGINT)
        err = (seen + proc.stderr.read()).decode()
        assert proc.wait(timeout=60) == 130
    assert "Traceback" not in err
    assert err.splitlines()[-1] == f"softshare demo: interrupted; {tmp_path} holds no results.json"
    assert not (tmp_path / "results.json").exists()


def test_inspect_prints_every_layer_and_refuses_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from softshare import Mixture, compress

    mix = Mixture([0.0, -0.5, 0.5], [-9.0, -9.0, -9.0], [2.0, 0.0, 0.0])
    layers = {"fc.weight": np.array([[0.5, 0.0], [-0.5, 0.0]], np.float32), "fc.bias": np.zeros(2)}
    path = tmp_path / "m.sws"
    written = compress.write_file(path, layers, mix, keep_mixture=True)
    assert main(["inspect", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{path}: 6 weights in 2 layers, a codebook of 3 float64 values") == 2
    assert "a mixture of 3 components" in out
    assert (
        f"| fc.weight | (2, 2) | float32 | 4 | 50.00 | 3 | {written.layer_bytes['fc.weight']} |"
        in out
    )
    assert f"| **total** | | | 6 | | | {written.file_bytes} |" in out
    npz = tmp_path / "q.npz"
    compress.save_quantized(npz, compress.export_quantized(layers, mix))
    for bad, message in ((npz, "not a softshare model file"), (tmp_path / "x.sws", "No such file")):
        with pytest.raises(SystemExit) as info:
            main(["inspect", str(bad)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert (
            err.strip().splitlines()[-1].startswith(f"softshare inspect: error: {bad}: {message}")
        )
    with pytest.raises(SystemExit):
        main(["inspect"])
    assert "the following arguments are required: FILE" in capsys.readouterr().err


def test_inspect_into_a_pipe_closed_early_prints_no_traceback(tmp_path: Path) -> None:
    from softshare import Mixture, compress

    mix = Mixture([0.0, -0.5, 0.5], [-9.0, -9.0, -9.0], [2.0, 0.0, 0.0])
    path = tmp_path / "m.sws"
    compress.write_file(path, {f"l{i}.weight": np.zeros((3, 3)) for i in range(50)}, mix)
    code = "import sys; from softshare.__main__ import main; sys.exit(main(sys.argv[1:]))"
    # the reader takes one line and closes the pipe while inspect still writes
    shell = f"{sys.executable} -c '{code}' inspect {' '.join([str(path)] * 400)} | head -n 1"
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {shell}"], check=True, capture_output=True, text=True
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert "BrokenPipeError" not in done.stderr
    assert done.stdout.startswith(str(path))
