"""softshare.jax.penalty (jitted value and grad) against the NumPy call and the jitted dense formula.

Usage::

    python benchmarks/bench_jax.py [--n 1e3 1e6 1e7] [--m 3 16 64] [--rounds 7]
        [--dense-max 2e8]  # N x M above which the dense formula is not timed

Per problem (float32 weights ~ N(0, 0.1) in a pytree of one leaf, the mixture
float32, lam a traced 0-d array), timed in interleaved rounds so that machine
noise hits all alike, each call until its result is ready:

- ``numpy``: :func:`softshare.penalty` on the NumPy array (value and every
  gradient; the baseline);
- ``softshare.jax``: ``jax.jit(jax.value_and_grad(softshare.jax.penalty,
  argnums=(0, 1, 2, 3)))``: the value and the gradients of the weights and the
  three mixture arrays, through the XLA FFI;
- ``jax dense``: the same ``jit(value_and_grad(...))`` of
  :func:`softshare.testing.dense_penalty` (the N x M formula in ``jax.numpy``),
  what a JAX user writes without softshare.

Ratios are medians over rounds of the per-round ratios. Issue 26's bounds:
at 1e6 x 16, ``softshare.jax`` at most 1.2x ``numpy`` and at least 20x faster
than ``jax dense``; at 1e3 at most 3x ``numpy``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import softshare
import softshare.jax as ssj
from softshare.testing import dense_penalty

from _timing import fmt_ms, machine_line, make_problem


def _per_call(fn: Callable[[], object], seconds: float) -> float:
    """Median seconds per call of ``fn()`` over as many calls as fit in ``seconds``."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while not times or (time.perf_counter() - start < seconds and len(times) < 20000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _variants(n: int, m: int, dense: bool) -> dict[str, Callable[[], object]]:
    w, mix = make_problem(n, m)
    lam = 1e-4
    params = {"w": jnp.asarray(w)}
    args = (
        params,
        jnp.asarray(mix.mu, jnp.float32),
        jnp.asarray(mix.log_var, jnp.float32),
        jnp.asarray(mix.logit, jnp.float32),
        jnp.asarray(lam, jnp.float32),
    )
    ffi = jax.jit(jax.value_and_grad(ssj.penalty, argnums=(0, 1, 2, 3)))

    def dense_fn(p: Any, mu: Any, log_var: Any, logit: Any, lam_: Any) -> Any:
        return dense_penalty(p["w"], mu, log_var, logit, lam_)

    out: dict[str, Callable[[], object]] = {
        "numpy": lambda: softshare.penalty(w, mix, lam),
        "softshare.jax": lambda: jax.block_until_ready(ffi(*args)),
    }
    if dense:
        dense_vg = jax.jit(jax.value_and_grad(dense_fn, argnums=(0, 1, 2, 3)))
        out["jax dense"] = lambda: jax.block_until_ready(dense_vg(*args))
    return out


def _check(n: int, m: int) -> None:
    """The jitted value and grad_w equal softshare.penalty's, bit for bit."""
    w, mix = make_problem(min(n, 10**5), m)
    mu, lv, lg = (jnp.asarray(a, jnp.float32) for a in (mix.mu, mix.log_var, mix.logit))
    ref = softshare.penalty(
        w,
        softshare.Mixture(np.asarray(mu), np.asarray(lv), np.asarray(lg)),
        float(np.float32(1e-4)),
    )
    value, grads = jax.jit(jax.value_and_grad(ssj.penalty))({"w": w}, mu, lv, lg, 1e-4)
    assert value == np.float32(ref.value)
    assert np.array_equal(grads["w"], ref.grad_w)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=float, nargs="+", default=[1e3, 1e6, 1e7])
    parser.add_argument("--m", type=int, nargs="+", default=[3, 16, 64])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.3, help="per variant and round")
    parser.add_argument("--dense-max", type=float, default=2e8)
    args = parser.parse_args()
    print(machine_line())
    print(f"jax {jax.__version__}, x64 {jax.config.jax_enable_x64}, {args.rounds} rounds")
    print()
    print("Median ms per call (value and every gradient); ratios: median of per-round ratios.")
    print()
    print("| N | M | numpy | softshare.jax | jax dense | jax / numpy | dense / jax |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_f in args.n:
        for m in args.m:
            n = int(n_f)
            _check(n, m)
            variants = _variants(n, m, dense=n * m <= args.dense_max)
            rounds: dict[str, list[float]] = {k: [] for k in variants}
            for _ in range(args.rounds):
                for name, fn in variants.items():
                    rounds[name].append(_per_call(fn, args.seconds))
            med = {k: statistics.median(v) for k, v in rounds.items()}
            ratio = statistics.median(
                a / b for a, b in zip(rounds["softshare.jax"], rounds["numpy"])
            )
            dense = "-"
            dense_ratio = "-"
            if "jax dense" in rounds:
                dense = fmt_ms(med["jax dense"])
                pairs = zip(rounds["jax dense"], rounds["softshare.jax"])
                dense_ratio = f"{statistics.median(a / b for a, b in pairs):.1f}x"
            print(
                f"| {n:.0e} | {m} | {fmt_ms(med['numpy'])} | {fmt_ms(med['softshare.jax'])} | "
                f"{dense} | {ratio:.2f}x | {dense_ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
