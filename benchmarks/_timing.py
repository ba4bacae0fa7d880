"""Shared helpers of the benchmark scripts: the problem, timing, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def median_time(fn: Callable[[], object], *, repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def repeats_for(seconds_per_call: float, budget: float = 1.0, lo: int = 3, hi: int = 50) -> int:
    """How many timed calls fit in about ``budget`` seconds (at least ``lo``)."""
    if seconds_per_call <= 0:
        return hi
    return max(lo, min(hi, int(budget / seconds_per_call)))


def timed(
    fn: Callable[[], object], budget: float, *, lo: int = 3, hi: int = 50, warmup: int = 1
) -> float:
    """Median seconds per call of ``fn()``, with as many calls as fit in ``budget``."""
    once = median_time(fn, repeat=1, warmup=warmup)
    return median_time(fn, repeat=repeats_for(once, budget, lo, hi), warmup=0)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """One line describing the machine the figures come from."""
    import numpy as np

    import softshare

    return (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, softshare {softshare.__version__} "
        f"(SIMD {softshare.simd_target()}, OpenMP {softshare.has_openmp()})"
    )


def fmt_ms(seconds: float) -> str:
    """Seconds as a short millisecond string."""
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def make_problem(n: int, m: int, seed: int = 0) -> tuple[Any, Any]:
    """float32 weights ~ N(0, 0.1) and an M-component mixture spread over them."""
    import numpy as np

    import softshare

    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 0.1, n).astype(np.float32)
    mix = softshare.Mixture(
        mu=np.linspace(-0.3, 0.3, m),
        log_var=np.full(m, 2 * np.log(0.05)),
        logit=rng.normal(0.0, 0.5, m),
    )
    return w, mix


def make_codebook(n: int, m: int, seed: int = 0) -> tuple[Any, Any]:
    """float32 weights ~ N(0, 0.1) and an M-component codebook over them (issue 14's
    setup): means spread evenly over the weights' range, sigma half their spacing."""
    import numpy as np

    import softshare

    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 0.1, n).astype(np.float32)
    mu = np.linspace(float(w.min()), float(w.max()), m)
    sigma = 0.5 * (mu[-1] - mu[0]) / max(m - 1, 1)
    mix = softshare.Mixture(
        mu=mu, log_var=np.full(m, 2 * np.log(sigma)), logit=rng.normal(0.0, 0.5, m)
    )
    return w, mix
