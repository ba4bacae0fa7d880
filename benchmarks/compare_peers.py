"""softshare against the implementations a user would pick instead.

Peers (each computes the value and all four gradients, float32 weights):

- ``numpy``: :func:`softshare.reference.penalty` (plain NumPy, float64);
- ``torch``: PyTorch autograd (CPU) — logsumexp over an N x M tensor, backward;
- ``torch.compile``: the same function under ``torch.compile`` (Inductor);
- ``jax``: ``jax.jit(jax.value_and_grad(...))`` on the CPU;
- ``softshare``: the fused native kernel.

Every peer is first checked against the float64 reference; then each is timed
(median of repeated calls after warm-up, 2 threads) for N in {1e4, 1e6, 1e7}
and M in {3, 16, 64} (means in [-0.3, 0.3], sigma 0.05), and for codebooks
(rows "M codebook": means spread evenly over the weights' range, sigma half
their spacing) of M in {8, 16, 256}; the dense peers skip problems of more
than 7e8 weight-component pairs (N x M floats several times over). Writes a Markdown table of times and speed-ups (over
the fastest peer), softshare's pairs per cycle per core next to the limit its
instruction count gives (``_cycles.py``; on AVX-512 machines with objdump and
a C compiler), the peak memory of one call at N = 1e7, M = 16 (each peer
in a subprocess of its own), and a log-log plot of time against N.

Usage::

    python benchmarks/compare_peers.py --out benchmarks/out
    python benchmarks/compare_peers.py --quick           # N <= 1e6, no memory column

Missing optional peers (torch, jax, matplotlib) are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np

import softshare
from softshare import reference
from softshare.testing import dense_penalty

import _cycles
from _timing import fmt_ms, machine_line, make_codebook, make_problem, timed

THREADS = 2
LAM = 1e-3
# Pairs (N x M) beyond which only softshare runs: the dense peers hold N x M
# tensors several times over.
MAX_DENSE_PAIRS = 7e8
Fn = Callable[[], Any]


# Each builder returns a zero-argument function that computes
# (value, grad_w, grad_mu, grad_log_var, grad_logit) as NumPy-convertible objects.


def build_softshare(w: np.ndarray, mix: softshare.Mixture) -> Fn:
    def run() -> tuple[Any, ...]:
        r = softshare.penalty(w, mix, LAM, n_threads=THREADS)
        return r.value, r.grad_w, r.grad_mu, r.grad_log_var, r.grad_logit

    return run


def pairs_per_cycle(
    w: np.ndarray, mix: softshare.Mixture, budget: float, probe: Any
) -> float | None:
    """softshare's weight-component pairs per cycle and core, grad_w into a reused buffer.

    Timed with ``out=`` (the steady state of a training loop: no fresh pages for
    the OS to zero), the clock measured right before and after.
    """
    if probe is None:
        return None
    out = np.empty_like(w)

    def run() -> None:
        softshare.penalty(w, mix, LAM, n_threads=THREADS, out=out)

    ghz = _cycles.clock_ghz(probe, THREADS)
    seconds = timed(run, budget, hi=100, warmup=2)
    ghz = 0.5 * (ghz + _cycles.clock_ghz(probe, THREADS))
    return w.size * mix.n_components / (seconds * ghz * 1e9 * THREADS)


def build_numpy(w: np.ndarray, mix: softshare.Mixture) -> Fn:
    def run() -> tuple[Any, ...]:
        r = reference.penalty(w, mix, LAM)
        return r.value, r.grad_w, r.grad_mu, r.grad_log_var, r.grad_logit

    return run


def _torch_penalty(w: Any, mu: Any, log_var: Any, logit: Any) -> Any:
    return dense_penalty(w, mu, log_var, logit, LAM)


def _torch_tensors(w: np.ndarray, mix: softshare.Mixture) -> list[Any]:
    import torch

    torch.set_num_threads(THREADS)
    return [
        torch.tensor(w, requires_grad=True),
        torch.tensor(mix.mu, dtype=torch.float32, requires_grad=True),
        torch.tensor(mix.log_var, dtype=torch.float32, requires_grad=True),
        torch.tensor(mix.logit, dtype=torch.float32, requires_grad=True),
    ]


def _torch_runner(fn: Callable[..., Any], tensors: list[Any]) -> Fn:
    def run() -> tuple[Any, ...]:
        for t in tensors:
            t.grad = None
        value = fn(*tensors)
        value.backward()
        return (
            value.item(),
            *(t.grad.numpy() for t in (tensors[0], tensors[1], tensors[2], tensors[3])),
        )

    return run


def build_torch(w: np.ndarray, mix: softshare.Mixture) -> Fn:
    return _torch_runner(_torch_penalty, _torch_tensors(w, mix))


def build_torch_compile(w: np.ndarray, mix: softshare.Mixture) -> Fn:
    import torch

    # A fresh compilation for every problem size: static shapes, and never the
    # recompile limit (after which dynamo silently falls back to eager).
    torch._dynamo.reset()
    return _torch_runner(torch.compile(_torch_penalty, dynamic=False), _torch_tensors(w, mix))


def build_jax(w: np.ndarray, mix: softshare.Mixture) -> Fn:
    import jax
    import jax.numpy as jnp

    def pen(w_: Any, mu: Any, log_var: Any, logit: Any) -> Any:
        return dense_penalty(w_, mu, log_var, logit, LAM)

    grad_fn = jax.jit(jax.value_and_grad(pen, argnums=(0, 1, 2, 3)))
    args = [
        jnp.asarray(w),
        *(jnp.asarray(a, dtype=jnp.float32) for a in (mix.mu, mix.log_var, mix.logit)),
    ]

    def run() -> tuple[Any, ...]:
        value, (gw, gmu, glv, glogit) = grad_fn(*args)
        value.block_until_ready()
        gw.block_until_ready()
        return float(value), np.asarray(gw), np.asarray(gmu), np.asarray(glv), np.asarray(glogit)

    return run


PEERS: dict[str, tuple[Callable[[np.ndarray, softshare.Mixture], Fn], str | None]] = {
    "numpy": (build_numpy, None),
    "torch": (build_torch, "torch"),
    "torch.compile": (build_torch_compile, "torch"),
    "jax": (build_jax, "jax"),
    "softshare": (build_softshare, None),
}


def available(module: str | None) -> bool:
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def check(name: str, fn: Fn, w: np.ndarray, mix: softshare.Mixture) -> str | None:
    """None if the peer agrees with the float64 reference, else what differs."""
    ref = reference.penalty(w.astype(np.float64), mix, LAM)
    expected = (ref.value, ref.grad_w, ref.grad_mu, ref.grad_log_var, ref.grad_logit)
    got = fn()
    names = ("value", "grad_w", "grad_mu", "grad_log_var", "grad_logit")
    for label, a, b in zip(names, got, expected):
        a64 = np.asarray(a, dtype=np.float64)
        b64 = np.asarray(b, dtype=np.float64)
        err = np.linalg.norm(a64 - b64) / max(np.linalg.norm(b64), 1e-300)
        if not err <= 1e-3:
            return f"{name}: {label} off by {err:.1e} (norm-relative)"
    return None


PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {bench_dir!r})
    import compare_peers as cp

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    w, mix = cp.make_problem({n}, {m})
    fn = cp.PEERS[{name!r}][0](w, mix)
    fn()  # warm-up: compile, allocate caches
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    print(json.dumps(status("VmHWM") - before))
    """
)


def peak_memory(name: str, n: int, m: int) -> float | None:
    """Peak RSS growth (bytes) of one call, in a fresh subprocess; None if unavailable."""
    script = PEAK_SCRIPT.format(bench_dir=str(Path(__file__).resolve().parent), n=n, m=m, name=name)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def plot(
    results: dict[tuple[str, int, str], float], peers: list[str], sizes: list[int], path: Path
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ms = list(dict.fromkeys(m for (_, _, m) in results))
    fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 3.8), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), ms):
        for name in peers:
            xs = [n for n in sizes if (name, n, m) in results]
            if xs:
                ax.loglog(xs, [results[(name, n, m)] * 1e3 for n in xs], "o-", label=name)
        ax.set_title(f"M = {m}")
        ax.set_xlabel("N (float32 weights)")
        ax.grid(True, which="both", alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("time per call, value + all gradients (ms)")
    np.atleast_1d(axes)[0].legend()
    fig.suptitle(f"Soft weight-sharing penalty, {THREADS} threads, median per call")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 1e6, no memory column")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/out"), help="folder for table and plot"
    )
    parser.add_argument("--peers", nargs="*", default=list(PEERS), help="subset of peers")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per cell")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the values of N")
    parser.add_argument("--ms", type=int, nargs="*", default=[3, 16, 64], help="values of M")
    parser.add_argument(
        "--codebook-ms", type=int, nargs="*", default=[8, 16, 256], help="M of the codebooks"
    )
    args = parser.parse_args(argv)

    sizes = [10_000, 1_000_000] if args.quick else [10_000, 1_000_000, 10_000_000]
    sizes = args.sizes or sizes
    cases = [(str(m), m, make_problem) for m in args.ms]
    cases += [(f"{m} codebook", m, make_codebook) for m in args.codebook_ms]
    notes: list[str] = []
    peers = []
    for name in args.peers:
        if available(PEERS[name][1]):
            peers.append(name)
        else:
            notes.append(f"{name}: skipped ({PEERS[name][1]} is not installed)")

    print(f"Machine: {machine_line()}", flush=True)
    for name in list(peers):
        w, mix = make_problem(5000, 16, seed=1)
        problem = check(name, PEERS[name][0](w, mix), w, mix)
        if problem is not None:
            notes.append(f"{name}: dropped, disagrees with the reference: {problem}")
            peers.remove(name)
        else:
            print(f"checked {name} against the float64 reference: ok", flush=True)

    counts = _cycles.instruction_counts(_cycles.core_so())
    probe = _cycles.build_probe() if counts and softshare.simd_target() == "avx512" else None
    if probe is None:
        notes.append(
            "pairs/cycle/core: not measured (needs the AVX-512 kernel, objdump and a C compiler)"
        )
    per_cycle: dict[tuple[int, str], float | None] = {}
    grouped: set[tuple[int, str]] = set()  # components skipped: N x M overstates the work
    results: dict[tuple[str, int, str], float] = {}
    for n in sizes:
        for label, m, make in cases:
            w, mix = make(n, m)
            for name in peers:
                if name != "softshare" and n * m > MAX_DENSE_PAIRS:
                    continue
                fn = PEERS[name][0](w, mix)
                hi = 10 if name in ("numpy", "torch") else 100
                results[(name, n, label)] = timed(fn, args.budget, hi=hi, warmup=2)
                print(
                    f"N={n:.0e} M={label:>12} {name:>14}: {fmt_ms(results[(name, n, label)])} ms",
                    flush=True,
                )
            if "softshare" in peers:
                per_cycle[(n, label)] = pairs_per_cycle(w, mix, args.budget, probe)
                if softshare._core._grouping(mix.mu, mix.log_var, mix.logit, n, False)[0]:
                    grouped.add((n, label))

    lines = [
        f"Machine: {machine_line()}",
        "",
        (
            f"Median time per call in ms (value + all gradients, float32 weights, {THREADS} threads); "
            "speed-up = fastest other peer / softshare. pairs/cycle/core: softshare's N x M "
            "per cycle and core with grad_w in a reused buffer (out=), the clock measured "
            "under vector load around the timing; limit: what the kernel's vector-pipe "
            "micro-ops allow at that M (benchmarks/_cycles.py; none where the kernel skips "
            "components, whose pairs are counted but not computed)."
        ),
        "",
        "| N | M | " + " | ".join(peers) + " | speed-up | pairs/cycle/core | limit |",
        "|---:|---:|" + "---:|" * (len(peers) + 3),
    ]
    others = [p for p in peers if p != "softshare"]
    for n in sizes:
        for label, _, _ in cases:
            cells = [
                fmt_ms(results[(p, n, label)]) if (p, n, label) in results else "-" for p in peers
            ]
            ratio = "-"
            ran = [results[(p, n, label)] for p in others if (p, n, label) in results]
            if "softshare" in peers and ran:
                ratio = f"{min(ran) / results[('softshare', n, label)]:.1f}x"
            rate, m = per_cycle.get((n, label)), int(label.split()[0])
            pcc = "-" if rate is None else f"{rate:.2f}"
            lim = (
                "-"
                if rate is None or counts is None
                else "(skips components)"
                if (n, label) in grouped
                else f"{counts.limit(m):.2f} ({rate / counts.limit(m):.0%})"
            )
            lines.append(
                f"| {n:.0e} | {label} | " + " | ".join(cells) + f" | {ratio} | {pcc} | {lim} |"
            )

    if not args.quick and 10_000_000 in sizes:
        lines += ["", "Peak memory of one call beyond the inputs, N = 1e7, M = 16 (MiB):", ""]
        lines += ["| " + " | ".join(peers) + " |", "|" + "---:|" * len(peers)]
        cells = []
        for name in peers:
            peak = peak_memory(name, 10_000_000, 16)
            cells.append("n/a" if peak is None else f"{peak / 2**20:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]

    args.out.mkdir(parents=True, exist_ok=True)
    table = "\n".join(lines) + "\n"
    (args.out / "compare_peers.md").write_text(table)
    print()
    print(table)
    if plot(results, peers, sizes, args.out / "compare_peers.png"):
        print(f"plot: {args.out / 'compare_peers.png'}")
    else:
        print("plot: skipped (matplotlib is not installed)")


if __name__ == "__main__":
    main()
