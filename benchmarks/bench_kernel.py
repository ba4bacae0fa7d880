"""The AVX-512 float32 block kernel alone against its instruction-count limit.

Usage::

    python benchmarks/bench_kernel.py          # M = 3, 8, 16, 32, 64; cached and streaming

``kernel_block.cpp`` (beside this script) calls the package's own block kernel
(``csrc/softshare/block-inl.hpp``, compiled here with the flags CMake gives the
``avx512`` kernel) on blocks of 4096 float32 weights, without Python, the
driver or threads: one block again and again (cached), or 244 blocks (1e6
weights, streaming from L2/L3 as a real call's arrays do). Pairs per cycle
are measured against the clock under 512-bit load (``cycles.c``); the limit
is what the vector-pipe micro-ops of the installed module's kernel allow
(``_cycles.py``), and "per component" is the marginal cost of a component
(from M = 16 and 32) against the passes' own limit. Needs g++, gcc, objdump
and an AVX-512 CPU; a measurement aid, never part of the package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import _cycles
from _timing import machine_line

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent / "csrc"
FLAGS = [
    "-O3",
    "-std=c++17",
    "-march=x86-64-v4",
    "-mprefer-vector-width=512",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-Wno-psabi",
    "-DSOFTSHARE_ISA_NS=avx512",
    "-DSOFTSHARE_VECTOR_BYTES=64",
]


def build(directory: Path) -> Path:
    """Compile kernel_block.cpp and cycles.c into one executable."""
    cxx, cc = shutil.which("g++"), shutil.which("gcc")
    if cxx is None or cc is None:
        msg = "g++ and gcc are needed to build the kernel benchmark"
        raise SystemExit(msg)
    probe = directory / "cycles.o"
    subprocess.run(
        [cc, "-O2", "-fopenmp", "-c", str(HERE / "cycles.c"), "-o", str(probe)], check=True
    )
    exe = directory / "kernel_block"
    cmd = [cxx, *FLAGS, f"-I{CSRC}", "-fopenmp", str(HERE / "kernel_block.cpp"), str(probe)]
    subprocess.run([*cmd, "-o", str(exe)], check=True)
    return exe


def run(exe: Path, m: int, blocks: int, *, narrow: bool = False) -> tuple[float, float]:
    """(best µs per block, median pairs per cycle) of kernel_block."""
    env = dict(os.environ, **({"NARROW": "1"} if narrow else {}))
    cmd = [str(exe), str(m), str(blocks)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    _, _, best, rate, _, _ = out.stdout.split()
    return float(best), float(rate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=int, nargs="*", default=[3, 8, 16, 32, 64])
    args = parser.parse_args(argv)
    counts = _cycles.instruction_counts(_cycles.core_so())
    if counts is None:
        msg = "needs objdump and the avx512 kernel in the installed softshare"
        raise SystemExit(msg)
    print(f"Machine: {machine_line()}")
    print(
        f"Vector-pipe micro-ops: passes 1-3 {counts.passes} per component and tile of 64, "
        f"flush {counts.flush} per sum, {counts.tile} per tile\n"
    )
    print("| M | setup | µs per block | pairs/cycle | limit | of the limit |")
    print("|---:|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        exe = build(Path(tmp))
        cycles: dict[int, float] = {}
        for m in args.ms:
            for blocks, narrow, label in (
                (1, False, "cached"),
                (244, False, "1e6 weights"),
                (1, True, "codebook, cached"),
            ):
                if narrow and m not in (8, 16):
                    continue
                best, rate = run(exe, m, blocks, narrow=narrow)
                if blocks == 1 and not narrow:
                    cycles[m] = 64 * m / rate  # cycles per tile
                limit = counts.limit(m)
                print(
                    f"| {m} | {label} | {best:.2f} | {rate:.3f} | {limit:.3f} | {rate / limit:.0%} |",
                    flush=True,
                )
    if 16 in cycles and 32 in cycles:
        per = (cycles[32] - cycles[16]) / 16
        own = counts.per_component() / _cycles.PIPES
        print(
            f"\nPer component and tile (cached, M = 16 -> 32): {per:.1f} cycles; "
            f"its micro-ops allow {own:.1f} ({own / per:.0%})."
        )


if __name__ == "__main__":
    main()
