"""Median time per call of softshare.penalty (value + all gradients) vs the reference.

Usage::

    python benchmarks/bench_penalty.py            # the full table (a few minutes)
    python benchmarks/bench_penalty.py --quick    # N <= 1e6, fewer repeats

N = 1e3 shows the small-input path: a single block never starts OpenMP threads.

Prints a Markdown table: float32 weights, native at 1 and 2 threads, the NumPy
reference (single-threaded, float64, so timed once per N and M), and the
speed-up of native over the reference.
"""

from __future__ import annotations

import argparse
from functools import partial

import softshare
from softshare import reference

from _timing import fmt_ms, machine_line, make_problem, timed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 1e6 and fewer repeats")
    parser.add_argument("--no-reference", action="store_true", help="time native only")
    args = parser.parse_args(argv)

    sizes = [1_000, 10_000, 1_000_000] if args.quick else [1_000, 10_000, 1_000_000, 10_000_000]
    budget = 0.3 if args.quick else 1.5
    print(f"Machine: {machine_line()}\n")
    print(
        "| N | M | native 1 thread (ms) | native 2 threads (ms) | reference (ms) | speed-up 2 threads |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        for m in (3, 16, 64):
            w, mix = make_problem(n, m)
            t_native = {
                threads: timed(partial(softshare.penalty, w, mix, 1e-3, n_threads=threads), budget)
                for threads in (1, 2)
            }
            if args.no_reference:
                t_ref_s, ratio = "-", "-"
            else:
                t_ref = timed(partial(reference.penalty, w, mix, 1e-3), budget, hi=10, warmup=0)
                t_ref_s, ratio = fmt_ms(t_ref), f"{t_ref / t_native[2]:.0f}x"
            print(
                f"| {n:.0e} | {m} | {fmt_ms(t_native[1])} | {fmt_ms(t_native[2])} | "
                f"{t_ref_s} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
