"""Every step of the torch-side recipe at 1e6-1e8 weights, beside one penalty pass and torch.save.

Usage::

    python benchmarks/bench_recipe.py [--sizes 1e6 1e7 1e8] [--threads 2] [--repeat 3]

A module of 4096-wide linear layers (float32, no biases) holding N weights,
drawn as a network retrained with the prior looks (90 % in a narrow zero
component, the rest in 16 clusters over [-0.3, 0.3]). ``from_weights`` is
timed on it; the later steps act on the prior such a retraining ends with
(the 17-component mixture the weights were drawn from). For each step of the
recipe (``from_weights``, ``merge_``, ``quantize_``, ``snapshot``,
``requantize_``, ``compression_report``, ``save_compressed`` with the state,
``load_compressed``) the median wall time and the largest rise of the
process's resident memory above where the step started (sampled every
millisecond), each beside one NumPy penalty pass over the same weights (the
native ``softshare.penalty`` with ``out=``) measured in the same run, and
beside ``torch.save`` / ``torch.load`` of the module's state_dict. The file's
bytes are checked against the entropy bound of the report.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import softshare
import softshare.torch as sst

from _timing import machine_line, median_time

WIDTH = 4096
CENTRES = [float(c) for c in np.linspace(-0.3, 0.3, 16)]


def rss() -> int:
    """Resident bytes of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fn: Any, repeat: int) -> tuple[float, int, Any]:
    """Median seconds of ``fn()``, the largest resident-memory rise of one call, its last result."""
    result: list[Any] = [None]

    def once() -> None:
        result[0] = fn()

    peak, stop = [0], threading.Event()
    start = rss()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss() - start)
            time.sleep(0.001)

    watcher = threading.Thread(target=sample)
    watcher.start()
    once()
    stop.set()
    watcher.join()
    return median_time(once, repeat=repeat, warmup=0), peak[0], result[0]


def make_model(n: int, seed: int = 0) -> torch.nn.Module:
    """Linear layers of 4096 inputs, N weights in all, drawn like a network retrained with the prior."""
    rows = max(1, round(n / WIDTH))
    per = [min(WIDTH, rows - i) for i in range(0, rows, WIDTH)]
    model = torch.nn.Sequential(*(torch.nn.Linear(WIDTH, r, bias=False) for r in per))
    gen = np.random.default_rng(seed)
    centres = np.array(CENTRES)
    with torch.no_grad():
        for layer in model:
            w = layer.weight.numpy()
            flat = w.reshape(-1)
            which = gen.integers(0, 16, flat.size)
            flat[:] = centres[which] + gen.normal(0.0, 0.01, flat.size)
            flat[gen.random(flat.size) < 0.9] *= 1e-3  # the zero component's share
    return model


def bench(n: int, threads: int, repeat: int) -> list[tuple[str, float, int]]:
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    model = make_model(n)
    weights = [p.detach().numpy() for p in model.parameters()]
    n_real = sum(w.size for w in weights)
    rows: list[tuple[str, float, int]] = []

    t, mem, _ = measured(lambda: sst.MixturePrior.from_weights(model, 17), repeat)
    rows.append(("from_weights", t, mem))
    # the steps after retraining act on a trained prior: the mixture the weights were drawn from
    mix = softshare.Mixture.from_pi_sigma(
        [0.9] + [0.1 / 16] * 16, [0.0, *CENTRES], [3e-4] + [0.01] * 16
    )
    prior = sst.MixturePrior.from_mixture(mix, zero_component=True)
    grads = [np.empty_like(w) for w in weights]
    t_pass = median_time(
        lambda: softshare.penalty(weights, mix, 1e-4, out=grads, n_threads=threads),
        repeat=max(repeat, 5),
    )
    rows.insert(0, ("penalty pass (NumPy, out=)", t_pass, 0))

    def merge() -> Any:
        fresh = sst.MixturePrior.from_mixture(mix, zero_component=True)
        return fresh.merge_(model)

    t, mem, _ = measured(merge, repeat)
    rows.append(("merge_", t, mem))
    prior.merge_(model)
    original = [w.copy() for w in weights]

    def quantize() -> Any:
        for w, o in zip(weights, original):
            np.copyto(w, o)
        return prior.quantize_(model)

    t, mem, state = measured(quantize, repeat)
    rows.append(("quantize_", t, mem))
    t, mem, _ = measured(lambda: prior.snapshot(model), repeat)
    rows.append(("snapshot", t, mem))
    t, mem, state = measured(lambda: prior.requantize_(model, state), repeat)
    rows.append(("requantize_", t, mem))
    t, mem, report = measured(state.compression_report, repeat)
    rows.append(("compression_report", t, mem))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.sws"
        t, mem, written = measured(
            lambda: sst.save_compressed(path, model, prior, state=state), repeat
        )
        rows.append(("save_compressed", t, mem))
        fresh = torch.nn.Sequential(
            *(torch.nn.Linear(WIDTH, p.shape[0], bias=False) for p in model.parameters())
        )
        t, mem, _ = measured(lambda: sst.load_compressed(path, fresh), repeat)
        rows.append(("load_compressed", t, mem))
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters()))
        buf = io.BytesIO()
        t, mem, _ = measured(lambda: torch.save(model.state_dict(), buf), repeat)
        rows.append(("torch.save (state_dict, in memory)", t, mem))
        raw = buf.getvalue()
        t, mem, _ = measured(lambda: torch.load(io.BytesIO(raw)), repeat)
        rows.append(("torch.load", t, mem))
    above = 100 * (8 * written.file_bytes / report.bits_entropy - 1)
    print(
        f"\nN = {n_real:.2e} float32 weights ({n_real * 4 / 2**20:.0f} MiB) in "
        f"{len(weights)} layers, M = 17 -> {prior.n_components} after merge_, {threads} threads; "
        f"file {written.file_bytes:,} bytes, {written.ratio:.1f}x, {above:+.1f} % against the "
        f"entropy bound, {100 * state.nonzero_fraction:.1f} % non-zero"
    )
    print("| step | ms | x pass | memory rise (MiB) | x weights' bytes |")
    print("|---|---:|---:|---:|---:|")
    for name, t, mem in rows:
        print(
            f"| {name} | {t * 1e3:.1f} | {t / t_pass:.2f} | {mem / 2**20:.0f} | "
            f"{mem / (4 * n_real):.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(machine_line())
    for n in args.sizes:
        bench(int(n), args.threads, args.repeat)


if __name__ == "__main__":
    main()
