"""softshare.penalty at small M against the best plain fused loop (issue: the kernel at every M).

Usage::

    python benchmarks/bench_small_m.py            # N = 1e6 and 1e7, M = 3, 8, 16
    python benchmarks/bench_small_m.py --quick    # N = 1e6 only

``plain_loop.cpp`` (beside this script) is a plain fused loop written for one
fixed M: unrolled components, a compiler-vectorised loop over the weights, a
polynomial exp2, OpenMP over chunks, the gradient written into a buffer the
caller reuses. It is compiled here with ``g++ -O3 -march=native -fopenmp``
(a comparison, never part of the package). softshare is timed twice: as a new
user calls it (a fresh ``grad_w`` each call) and with ``out=`` (the loop's
reused buffer). Float32 weights N(0, 0.1); the M means spread evenly over the
weights' range, sigma half their spacing, equal proportions.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import softshare

from _timing import fmt_ms, machine_line, median_time

HERE = Path(__file__).resolve().parent


def build_plain_loop(directory: Path) -> ctypes.CDLL:
    """Compile ``plain_loop.cpp`` for this machine and load it."""
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        msg = "a C++ compiler (g++) is needed to build the plain loop"
        raise SystemExit(msg)
    lib = directory / "plain_loop.so"
    flags = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-shared", "-fPIC"]
    subprocess.run([compiler, *flags, "-o", str(lib), str(HERE / "plain_loop.cpp")], check=True)
    dll = ctypes.CDLL(str(lib))
    dll.plain_penalty.restype = ctypes.c_int
    return dll


def problem(n: int, m: int) -> tuple[np.ndarray, softshare.Mixture]:
    """The issue's setup: weights N(0, 0.1), means over their range, sigma half the spacing."""
    w = np.random.default_rng(0).normal(0.0, 0.1, n).astype(np.float32)
    lo, hi = float(w.min()), float(w.max())
    mu = np.linspace(lo, hi, m)
    sigma = np.full(m, 0.5 * (hi - lo) / (m - 1))
    return w, softshare.Mixture.from_pi_sigma(np.full(m, 1.0 / m), mu, sigma)


def measure(
    dll: ctypes.CDLL, n: int, m: int, threads: int, lam: float, repeat: int
) -> dict[str, float]:
    """Median seconds per call: softshare fresh, softshare ``out=``, the plain loop."""
    w, mix = problem(n, m)
    grad = np.empty_like(w)
    out = np.empty_like(w)
    stats = np.empty(1 + 3 * m)
    mu, var, pi = (np.ascontiguousarray(a) for a in (mix.mu, mix.var, mix.pi))

    def as_ptr(a: np.ndarray) -> ctypes.c_void_p:
        return ctypes.c_void_p(a.ctypes.data)

    args = (
        as_ptr(w), as_ptr(grad), ctypes.c_int64(n), ctypes.c_int(m), as_ptr(mu), as_ptr(var),
        as_ptr(pi), ctypes.c_float(lam), as_ptr(stats), ctypes.c_int(threads),
    )  # fmt: skip

    def plain() -> None:
        dll.plain_penalty(*args)

    plain()
    ref = softshare.penalty(w, mix, lam, n_threads=threads)
    # the loop is a fair peer only if it computes the same thing
    assert np.isclose(-lam * stats[0], ref.value, rtol=1e-3), (stats[0], ref.value)
    assert np.allclose(stats[1 : 1 + m], ref.stats[0], rtol=1e-3, atol=n * 1e-7)
    assert np.allclose(grad, ref.grad_w, rtol=1e-3, atol=1e-4 * np.abs(ref.grad_w).max())
    calls = {
        "fresh": lambda: softshare.penalty(w, mix, lam, n_threads=threads),
        "out": lambda: softshare.penalty(w, mix, lam, n_threads=threads, out=out),
        "plain": plain,
    }
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(3):  # interleaved rounds: the machine's drift hits all three
        for k, fn in calls.items():
            times[k].append(median_time(fn, repeat=repeat, warmup=1))
    return {k: float(np.median(v)) for k, v in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e6 only, fewer repeats")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args(argv)
    sizes = [1_000_000] if args.quick else [1_000_000, 10_000_000]
    repeat = 7 if args.quick else 15
    print(f"Machine: {machine_line()}\n")
    print(
        "| N | M | threads | softshare (ms) | softshare out= (ms) | plain loop (ms) "
        "| softshare / plain | out= / plain |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        dll = build_plain_loop(Path(tmp))
        for n in sizes:
            for m in (3, 8, 16):
                for threads in args.threads:
                    t = measure(dll, n, m, threads, 1e-3, repeat)
                    print(
                        f"| {n:.0e} | {m} | {threads} | {fmt_ms(t['fresh'])} | "
                        f"{fmt_ms(t['out'])} | {fmt_ms(t['plain'])} | "
                        f"{t['fresh'] / t['plain']:.2f} | {t['out'] / t['plain']:.2f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
