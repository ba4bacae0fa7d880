"""Every Python example in README.md and docs/*.md runs as written; README stays a front door."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 300


def _blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)


EXAMPLES = [
    pytest.param(code, id=f"{page.relative_to(ROOT).as_posix()}-{index}")
    for page in PAGES
    for index, code in enumerate(_blocks(page))
]


def test_readme_has_examples() -> None:
    assert len(_blocks(README)) >= 2


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/"
    )


def test_readme_gives_the_test_command_ci_runs() -> None:
    """``.ci/run`` runs exactly this command: README must give it as it is."""
    assert "python -m pytest tests\n" in README.read_text(encoding="utf-8")
    assert "\npython -m pytest tests\n" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _relative_links(text: str) -> list[str]:
    """Targets of markdown links and images that are not URLs or in-page anchors."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"^(#|[a-z][a-z0-9+.-]*:)", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files(page: Path) -> None:
    missing = [
        target
        for target in _relative_links(page.read_text(encoding="utf-8"))
        if not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_every_docs_page_is_linked_from_readme() -> None:
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in _relative_links(README.read_text())}
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unlinked, f"docs pages README.md does not link to: {unlinked}"


def test_readme_figures_are_quoted_from_their_source() -> None:
    """Each ratio or percentage README's prose quotes stands in a docs page or in RESULTS."""
    prose = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    sources = "".join(
        p.read_text(encoding="utf-8") for p in [*PAGES[1:], ROOT / "benchmarks" / "RESULTS.md"]
    )
    figures = re.findall(r"\b\d+\.\d+x|\b\d+\.\d+ %", prose)
    assert figures
    unsourced = [f for f in figures if f not in sources]
    assert not unsourced, f"README.md quotes figures found in no docs page or RESULTS: {unsourced}"


@pytest.mark.parametrize("code", EXAMPLES)
def test_readme_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if code.startswith("# torchrun"):
        _run_with_torchrun(code, tmp_path)
        return
    for module in ("torch", "sklearn", "matplotlib", "jax"):
        if re.search(rf"^\s*(import|from) {module}\b", code, flags=re.MULTILINE) and (
            importlib.util.find_spec(module) is None
        ):
            pytest.skip(f"the example needs {module}")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    exec(compile(code, "a README or docs example", "exec"), {"__name__": "__readme__"})  # noqa: S102


def _run_with_torchrun(code: str, tmp_path: Path) -> None:
    """A script meant for ``torchrun --nproc-per-node 2``: run it so, on loopback."""
    pytest.importorskip("torch")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", str(script)]
    for _ in range(2):
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path
        )
        # About one run in ten on the loaded 2-core machine, a rank aborts at process exit
        # with "terminate called without an active exception" after its work and
        # destroy_process_group() are done: a std::thread left joinable at exit, seen on
        # builds before and after softshare's own threads changed. Such a run is tried once
        # more; any other failure, or the abort twice, fails the test.
        if proc.returncode == 0 or "terminate called without an active exception" not in (
            proc.stderr
        ):
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
