"""Time per training step with and without the prior, for an MLP and LeNet-5-Caffe.

Usage::

    python benchmarks/bench_torch.py [--threads 1 2] [--models mlp lenet5] [--steps 50]
        [--variants ...]  # default: all; "none" and the bare passes always run

Models (random data: the data does not change the time), Adam, a mixture of
M = 17 components (a zero component and 16 others), as in Ullrich et al.:

- ``mlp``: 784-300-100-10 (266,610 parameters), batch 128;
- ``lenet5``: LeNet-5-Caffe, conv 20@5x5, max-pool 2, conv 50@5x5, max-pool 2,
  dense 500, dense 10 on 28x28 input (431,080 parameters), batch 64.

Step variants, timed in interleaved rounds so that machine noise hits all alike:

- ``none``: cross-entropy only;
- ``plain autograd``: + the penalty written with torch ops (an N x M tensor);
- ``torch.compile``: the same penalty through ``torch.compile``;
- ``softshare``: + ``MixturePrior`` (:func:`softshare.torch.penalty`);
- ``softshare overlapped``: ``MixturePrior.start`` at the start of the step,
  ``join()`` before ``optimizer.step()``;
- ``softshare add_grad_``: ``loss.backward()``, then ``MixturePrior.add_grad_``
  adds the penalty's gradients into ``.grad`` (no autograd);
- ``softshare add_grad_, fixed mixture``: the same with the mixture's
  parameters frozen (``requires_grad=False``, not in the optimizer);
- ``none + bare pass``: ``none`` with ``softshare.penalty`` called on NumPy
  views of the weights after the backward pass, its result thrown away (no
  autograd, no gradient added, the mixture not trained): what the pass alone
  costs inside a step, the floor of any form of the prior;
- ``none + bare pass, mixture trained``: the same pass, its ``grad_mu``,
  ``grad_log_var`` and ``grad_logit`` set as the mixture's ``.grad`` and the
  mixture in the optimizer (its three parameter groups, as in every
  ``softshare`` step): the floor of a step that trains the prior.

Also timed in the same rounds: the isolated pass (``softshare.penalty`` on
NumPy views of the weights, the same threads) and ``MixturePrior`` forward +
backward alone (``.grad`` set to None first, as ``zero_grad`` does).
``added to none`` is the median over rounds of a step's time minus ``none``'s
in the same round (machine noise that lasts a round cancels); ``added /
pass`` is that over the isolated pass; ``added /
bare`` divides by what ``none + bare pass`` adds instead (issue 22's bound for
``add_grad_``: 1.15), ``added / bare, trained`` by what ``none + bare pass,
mixture trained`` adds.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

import softshare
import softshare.torch as sst
from softshare.testing import dense_penalty

from _timing import machine_line

LAM = 1e-6
VARIANTS = [
    "none",
    "plain autograd",
    "torch.compile",
    "softshare",
    "softshare overlapped",
    "softshare add_grad_",
    "softshare add_grad_, fixed mixture",
    "none + bare pass",
    "none + bare pass, mixture trained",
]
BARE = ["none + bare pass", "none + bare pass, mixture trained"]
ISOLATED = ["isolated pass (NumPy)", "MixturePrior fwd+bwd"]


def make_model(name: str) -> tuple[nn.Module, tuple[int, ...], int]:
    """The network, its input shape and its batch size."""
    if name == "mlp":
        model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
            nn.Linear(100, 10),
        )  # fmt: skip
        return model, (784,), 128
    model = nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )  # fmt: skip
    return model, (1, 28, 28), 64


def make_prior(m: int = 17) -> sst.MixturePrior:
    return sst.MixturePrior(
        mu=torch.cat([torch.zeros(1), torch.linspace(-0.6, 0.6, m - 1)]),
        log_var=torch.full((m,), 2 * math.log(0.05)),
        logit=torch.cat(
            [torch.full((1,), math.log(0.9)), torch.full((m - 1,), math.log(0.1 / (m - 1)))]
        ),
    )


class Setup:
    """One model, prior, optimizer and batch per variant (same seed: same start)."""

    def __init__(self, model_name: str, variant: str) -> None:
        torch.manual_seed(0)
        self.model, in_shape, batch = make_model(model_name)
        self.prior = make_prior()
        self.params = list(self.model.parameters())
        groups: list[dict[str, Any]] = [{"params": self.params}]
        self.arrays = [p.detach().numpy() for p in self.params]  # views: see the updates
        self.mixture = self.prior.mixture()
        if variant.endswith("fixed mixture"):
            self.prior.requires_grad_(False)
        elif not variant.startswith("none") or variant.endswith("mixture trained"):
            groups += self.prior.parameter_groups(lr_mu=5e-4, lr_log_var=1e-2, lr_logit=3e-3)
        self.opt = torch.optim.Adam(groups, lr=2e-3)
        self.x = torch.randn(batch, *in_shape)
        self.y = torch.randint(0, 10, (batch,))
        self.variant = variant
        self.compiled: Callable[..., torch.Tensor] | None = None
        if variant == "torch.compile":
            self.compiled = torch.compile(dense_penalty)

    def step(self) -> None:
        opt, prior = self.opt, self.prior
        opt.zero_grad(set_to_none=True)
        if self.variant == "softshare overlapped":
            pending = prior.start(self.model, LAM)
            nn.functional.cross_entropy(self.model(self.x), self.y).backward()
            pending.join()
            opt.step()
            return
        loss = nn.functional.cross_entropy(self.model(self.x), self.y)
        if self.variant == "plain autograd":
            loss = loss + dense_penalty(self.params, prior.mu, prior.log_var, prior.logit, LAM)
        elif self.variant == "torch.compile":
            assert self.compiled is not None
            loss = loss + self.compiled(self.params, prior.mu, prior.log_var, prior.logit, LAM)
        elif self.variant == "softshare":
            loss = loss + prior(self.model, LAM)
        loss.backward()
        if self.variant.startswith("softshare add_grad_"):
            prior.add_grad_(self.model, LAM)
        elif self.variant in BARE:
            r = softshare.penalty(self.arrays, self.mixture, LAM, n_threads=torch.get_num_threads())
            if self.variant == BARE[1]:
                grads = (r.grad_mu, r.grad_log_var, r.grad_logit)
                for p, g in zip((prior.mu, prior.log_var, prior.logit), grads):
                    p.grad = torch.from_numpy(g).to(p.dtype)
        opt.step()


def run(
    model_name: str, threads: int, steps: int, rounds: int, variants: list[str]
) -> dict[str, list[float]]:
    """Seconds per call of every variant and isolated measurement, one per round."""
    torch.set_num_threads(threads)
    torch._dynamo.reset()  # compiled kernels take the thread count at compile time
    setups = {v: Setup(model_name, v) for v in variants}
    ref = setups["softshare"] if "softshare" in setups else Setup(model_name, "softshare")
    weights = [p.detach().numpy() for p in ref.params]
    mixture = ref.prior.mixture()

    def isolated_pass() -> None:
        softshare.penalty(weights, mixture, LAM, n_threads=threads)

    def prior_alone() -> None:
        for p in ref.params:
            p.grad = None
        ref.prior(ref.model, LAM).backward()

    calls: dict[str, Callable[[], None]] = {v: s.step for v, s in setups.items()}
    calls[ISOLATED[0]] = isolated_pass
    calls[ISOLATED[1]] = prior_alone
    for fn in calls.values():  # warm-up (and compilation)
        for _ in range(10):
            fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            n = steps if k in variants else 4 * steps
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[k].append((time.perf_counter() - t0) / n)
    return times


def report(model_name: str, threads: int, times: dict[str, list[float]], n_weights: int) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    iso = med[ISOLATED[0]]

    def added_to_none(v: str) -> float:
        return statistics.median(a - b for a, b in zip(times[v], times["none"]))

    bare, trained = (added_to_none(b) for b in BARE)
    print(f"\n### {model_name} ({n_weights:,} weights), {threads} thread(s)\n")
    print(
        "| step | ms per step | added to none | added / isolated pass | added / bare "
        "| added / bare, trained |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for v in [v for v in VARIANTS if v in med]:
        t = med[v]
        if v == "none":
            print(f"| {v} | {t * 1e3:.3f} | - | - | - | - |")
            continue
        added = added_to_none(v)
        print(
            f"| {v} | {t * 1e3:.3f} | {added * 1e3:+.3f} ms | {added / iso:.2f} "
            f"| {added / bare:.2f} | {added / trained:.2f} |"
        )
    fb = med[ISOLATED[1]]
    print(f"| {ISOLATED[0]} | {iso * 1e3:.3f} | | | | |")
    print(f"| {ISOLATED[1]} | {fb * 1e3:.3f} | {(fb - iso) * 1e6:+.0f} us vs NumPy call | | | |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "lenet5"], choices=["mlp", "lenet5"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    args = parser.parse_args(argv)
    variants = [v for v in VARIANTS if v in {*args.variants, "none", *BARE}]
    print(f"Machine: {machine_line()}, torch {torch.__version__}")
    print(
        f"Adam, M = 17, lam = {LAM}; median of {args.rounds} interleaved rounds of "
        f"{args.steps} steps (isolated calls: {4 * args.steps} per round)"
    )
    for model_name in args.models:
        n_weights = sum(p.numel() for p in make_model(model_name)[0].parameters())
        for threads in args.threads:
            times = run(model_name, threads, args.steps, args.rounds, variants)
            report(model_name, threads, times, n_weights)


if __name__ == "__main__":
    main()
