"""Time per training step of a LeNet-300-100-sized MLP, with and without the prior.

Usage::

    python benchmarks/bench_torch.py [--steps 200] [--threads 2]

The model is 784-300-100-10 (266,610 parameters), batch 128, Adam, on random
data (the data does not change the time); the mixture has M = 17 components
(a zero component and 16 others), as in Ullrich et al. Three variants:

- ``none``: cross-entropy only;
- ``plain autograd``: + the penalty written with torch ops (an N x M tensor);
- ``softshare``: + :func:`softshare.torch.penalty` through ``MixturePrior``.

Prints the median step time of each and the overhead over ``none``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

import softshare.torch as sst
from softshare.testing import dense_penalty

from _timing import machine_line

LAM = 1e-6


def make(variant: str, seed: int = 0) -> tuple:  # type: ignore[type-arg]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 300),
        torch.nn.ReLU(),
        torch.nn.Linear(300, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )
    m = 17
    prior = sst.MixturePrior(
        mu=torch.cat([torch.zeros(1), torch.linspace(-0.6, 0.6, m - 1)]),
        log_var=torch.full((m,), 2 * math.log(0.05)),
        logit=torch.cat(
            [torch.full((1,), math.log(0.9)), torch.full((m - 1,), math.log(0.1 / (m - 1)))]
        ),
    )
    groups = [{"params": model.parameters()}]
    if variant != "none":
        groups += prior.parameter_groups(lr_mu=5e-4, lr_log_var=1e-2, lr_logit=3e-3)
    opt = torch.optim.Adam(groups, lr=2e-3)
    x = torch.randn(128, 784)
    y = torch.randint(0, 10, (128,))
    return model, prior, opt, x, y


def step(variant: str, model, prior, opt, x, y) -> None:  # type: ignore[no-untyped-def]
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    if variant == "plain autograd":
        loss = loss + dense_penalty(
            list(model.parameters()), prior.mu, prior.log_var, prior.logit, LAM
        )
    elif variant == "softshare":
        loss = loss + prior(model, LAM)
    loss.backward()
    opt.step()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per variant")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    variants = ["none", "plain autograd", "softshare"]
    state = {v: make(v) for v in variants}
    n_weights = sum(p.numel() for p in state["none"][0].parameters())
    for v in variants:  # warm-up
        for _ in range(20):
            step(v, *state[v])
    times: dict[str, list[float]] = {v: [] for v in variants}
    # Interleave the variants so that machine noise hits all of them alike.
    for _ in range(args.rounds):
        for v in variants:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(v, *state[v])
            times[v].append((time.perf_counter() - t0) / args.steps)
    base = statistics.median(times["none"])
    print(f"Machine: {machine_line()}, torch {torch.__version__}, {args.threads} threads")
    print(
        f"MLP 784-300-100-10 ({n_weights} weights), batch 128, Adam, M = 17; "
        f"median of {args.rounds} rounds of {args.steps} steps\n"
    )
    print("| penalty | ms per step | overhead vs none |")
    print("|---|---:|---:|")
    for v in variants:
        t = statistics.median(times[v])
        over = "-" if v == "none" else f"{100 * (t / base - 1):+.1f}%"
        print(f"| {v} | {t * 1e3:.3f} | {over} |")


if __name__ == "__main__":
    main()
