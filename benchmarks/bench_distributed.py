"""Penalty time per rank under torch.distributed (gloo, CPU), at W = 1 and 2 ranks.

Each rank runs one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``)
and computes the penalty with ``split_work=True`` (DDP-style: its 1/W of the
flattened weights), forward and backward, with M = 17. Reported per N and W:
the median time per call on rank 0, the median time of the all-reduce alone
(3M + 1 float64 numbers), its share, and the ratio to W = 1.

Usage::

    python benchmarks/bench_distributed.py            # N = 1e6 and 1e7
    python benchmarks/bench_distributed.py --quick    # N = 1e6 only
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

os.environ["OMP_NUM_THREADS"] = "1"

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import softshare.torch as sst

from _timing import fmt_ms, machine_line

M = 17
REPEAT = 15


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _median(fn, repeat: int = REPEAT) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeat):
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _worker(rank: int, world: int, port: int, n: int, out: dict[tuple[int, int], tuple]) -> None:  # type: ignore[type-arg]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(0)
    weights = [(0.1 * torch.randn(n // 4, generator=g)).requires_grad_(True) for _ in range(4)]
    mu = torch.cat([torch.zeros(1), torch.linspace(-0.3, 0.3, M - 1)]).requires_grad_(True)
    log_var = torch.full((M,), -7.0, requires_grad=True)
    logit = torch.zeros(M, requires_grad=True)

    def step() -> None:
        for t in (*weights, mu, log_var, logit):
            t.grad = None
        sst.penalty(weights, mu, log_var, logit, 1e-4, split_work=True).backward()

    vec = torch.zeros(3 * M + 1, dtype=torch.float64)
    t_step = _median(step)
    t_reduce = _median(lambda: dist.all_reduce(vec))
    if rank == 0:
        out[(n, world)] = (t_step, t_reduce)
    dist.barrier()  # no rank closes its connections while another still uses them
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1e6 only")
    args = parser.parse_args(argv)
    sizes = [10**6] if args.quick else [10**6, 10**7]
    results = mp.Manager().dict()
    for n in sizes:
        for world in (1, 2):
            mp.spawn(_worker, args=(world, _port(), n, results), nprocs=world, join=True)
    print(machine_line())
    print(f"softshare.torch.penalty(split_work=True), M = {M}, float32, forward + backward,")
    print(f"one thread per rank, gloo on loopback; median of {REPEAT} calls on rank 0\n")
    print("| N | ranks W | time per rank | all-reduce | all-reduce share | vs W = 1 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        base = results[(n, 1)][0]
        for world in (1, 2):
            t_step, t_reduce = results[(n, world)]
            print(
                f"| {n:.0e} | {world} | {fmt_ms(t_step)} | {fmt_ms(t_reduce)} | "
                f"{100 * t_reduce / t_step:.1f} % | {t_step / base:.2f}x |"
            )


if __name__ == "__main__":
    main()
