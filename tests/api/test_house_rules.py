"""What a user meets around the library: ``softshare --version``, files made with the umask's mode, import cost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import softshare
from softshare import compress
from softshare.__main__ import main


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"softshare {softshare.__version__}\n"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_written_file_takes_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    layers = {"w": np.array([0.0, 0.5, -0.5, 0.0], dtype=np.float32)}
    mix = softshare.Mixture(mu=[0.0, -0.5, 0.5], log_var=[-8.0, -8.0, -8.0], logit=[1.0, 0.0, 0.0])
    old = os.umask(umask)
    try:
        compress.write_file(tmp_path / "m.sws", layers, mix)
    finally:
        os.umask(old)
    assert (tmp_path / "m.sws").stat().st_mode & 0o777 == 0o666 & ~umask


def test_importing_the_torch_adapter_leaves_torch_distributed_tensor_alone() -> None:
    pytest.importorskip("torch")
    code = "import sys, softshare.torch\nprint('torch.distributed.tensor' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
