"""``softshare demo`` fuzzed over every argument: a run, or one ``error:`` line and status 2, never a traceback.

Training is replaced by a fake result (the arguments, the data and the output
folder are what is under test); every argument gets values of every kind:
numbers in and out of range, huge integers, words, empty text, and paths that
exist as files, folders or nothing, or lie under a file or a read-only folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softshare.__main__ import main
from softshare.demo import cli
from softshare.demo._loop import TrainingDiverged, _check_finite
from softshare.demo.recipe import RunResult

NUMBERS = ["0", "1", "2", "-1", "1e-3", "0.1", "nan", "inf", "-inf", "1e400", "", "x", "off"]
HUGE = ["99999999999999999999999", "100000000", "1001", "100001", "4", "1.5"]


def _fake_result(
    kind: str, _data: object, _cfg: object, seed: int, *_: object, **__: object
) -> Any:
    return RunResult(kind, seed, 0.1, 0.12, 0.11, 0.05, 7, 50.0, 60.0, 30.0, "merged", 1.0, 100)


@pytest.fixture
def places(tmp_path: Path) -> dict[str, str]:
    """Paths of every kind, made once per test."""
    afile = tmp_path / "afile"
    afile.write_text("not data")
    (tmp_path / "folder").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    taken = tmp_path / "taken"
    (taken / "mlp_seed0.sws").mkdir(parents=True)
    return {
        "file": str(afile),
        "under_file": str(afile / "sub"),
        "folder": str(tmp_path / "folder"),
        "missing": str(tmp_path / "missing"),
        "locked": str(locked / "out"),
        "taken": str(taken),
        "new": str(tmp_path / "new" / "out"),
    }


def _options(places: dict[str, str]) -> st.SearchStrategy[list[str]]:
    paths = st.sampled_from(sorted(places.values()))
    values = {
        "--seeds": st.sampled_from(NUMBERS + HUGE),
        "--threads": st.sampled_from(NUMBERS + HUGE),
        "--retrain-epochs": st.sampled_from(NUMBERS + HUGE),
        "--tau": st.sampled_from(NUMBERS + HUGE),
        "--error-budget": st.sampled_from([*NUMBERS, *HUGE, "OFF", "100", "100.5"]),
        "--device": st.sampled_from(["cpu", "meta", "cuda:7", "nonsense", "", "mps"]),
        "--models": st.sampled_from(["mlp", "cnn", "rnn", "lenet-5-caffe", ""]),
        "--out": paths,
        "--data": paths,
    }
    flags = st.sampled_from(["--quick", "--no-progress", "--help-me"])
    one = st.one_of(
        st.sampled_from(sorted(values)).flatmap(lambda k: values[k].map(lambda v: [k, v])),
        flags.map(lambda f: [f]),
    )
    return st.lists(one, max_size=4).map(lambda parts: [a for p in parts for a in p])


def test_every_argument_ends_in_a_run_or_one_error_line(
    places: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    monkeypatch.setattr("torch.set_num_threads", lambda _: None)
    monkeypatch.setattr(cli, "run_network", _fake_result)
    seen: set[int] = set()

    @settings(
        max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(args=_options(places))
    def run(args: list[str]) -> None:
        if "--out" not in args:
            args = [*args, "--out", places["new"]]
        try:
            status = main(["demo", *args])
        except SystemExit as e:
            status = int(e.code or 0)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        seen.add(status)
        assert status in (0, 2), (args, status, err)
        if status == 2:
            lines = err.strip().splitlines()
            assert lines[-1].startswith("softshare demo: error: argument ") or (
                lines[-1].startswith("softshare demo: error: ")
            ), (args, err)

    run()
    assert seen == {0, 2}


def test_a_diverging_run_ends_with_one_line_and_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr("torch.set_num_threads", lambda _: None)
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[0, 1] = float("nan")

    def diverge(*_: object, **__: object) -> None:
        _check_finite(model, "retraining with the prior", 41)

    monkeypatch.setattr(cli, "run_network", diverge)
    assert main(["demo", "--quick", "--out", str(tmp_path / "out"), "--models", "mlp"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == (
        "softshare demo: training diverged: retraining with the prior left weight non-finite at "
        "step 42 (a smaller --tau, or --error-budget with the default tau, trains); "
        f"{tmp_path / 'out'} holds no results.json"
    )
    _check_finite(torch.nn.Linear(2, 2), "pretraining", 0)  # finite: nothing raised
    assert issubclass(TrainingDiverged, ValueError)


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else False, reason="root")
def test_a_read_only_out_folder_is_refused(places: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--out", places["locked"]])
    assert info.value.code == 2
