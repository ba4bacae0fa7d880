"""Every Python example in README.md runs as written."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = BLOCKS[index]
    if code.startswith("# torchrun"):
        _run_with_torchrun(code, tmp_path)
        return
    for module in ("torch", "sklearn", "matplotlib", "jax"):
        if re.search(rf"^\s*(import|from) {module}\b", code, flags=re.MULTILINE) and (
            importlib.util.find_spec(module) is None
        ):
            pytest.skip(f"the example needs {module}")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(code, f"README.md example {index}", "exec"), {"__name__": "__readme__"})  # noqa: S102


def _run_with_torchrun(code: str, tmp_path: Path) -> None:
    """A script meant for ``torchrun --nproc-per-node 2``: run it so, on loopback."""
    pytest.importorskip("torch")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
