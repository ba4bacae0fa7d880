"""Worker processes of tests/torch/test_distributed.py (gloo on loopback, one process per rank).

Each worker computes the single-process answer itself (the inputs are seeded)
and asserts that the distributed one matches; an AssertionError in any rank
fails the spawning test with that rank's traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist

import softshare.torch as sst
from softshare.torch._distributed import is_sharded

LAM = 3e-3


def _init(rank: int, world: int, port: int) -> Any:
    from torch.distributed.device_mesh import init_device_mesh

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    return init_device_mesh("cpu", (world,))


def _finish() -> None:
    """Leave the group together, then exit without the interpreter's teardown.

    gloo's threads can abort the process ("terminate called without an active
    exception") when they are torn down during interpreter shutdown; the
    worker's work is done and checked by then, so skip that teardown.
    """
    dist.barrier()  # no rank closes its connections while another still uses them
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return (
        {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 1e-6}
    )


def _problem(dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    # (1, 4) and (2,) leave some rank of 3 with an empty shard
    shapes = [(7, 3), (5,), (1, 4), (2,), (40, 11)]
    weights = [(0.3 * torch.randn(s, generator=g, dtype=torch.float64)).to(dtype) for s in shapes]
    mixture = [
        torch.tensor([0.0, -0.3, 0.25, 0.5], dtype=dtype),
        torch.tensor([-5.0, -3.0, -3.5, -2.5], dtype=dtype),
        torch.tensor([1.5, 0.0, -0.2, 0.1], dtype=dtype),
    ]
    return weights, mixture


def _single(weights: list[torch.Tensor], mixture: list[torch.Tensor]) -> tuple[Any, ...]:
    ws = [w.clone().requires_grad_(True) for w in weights]
    ps = [p.clone().requires_grad_(True) for p in mixture]
    value = sst.penalty(ws, *ps, LAM)
    grads = torch.autograd.grad(value, [*ws, *ps])
    return value.detach(), grads[: len(ws)], grads[len(ws) :]


def sharded_matches_single(rank: int, world: int, port: int) -> None:
    """FSDP2-style DTensor shards: global value and mixture gradients, sharded grad_w."""
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = _init(rank, world, port)
    for dtype in (torch.float64, torch.float32):
        weights, mixture = _problem(dtype)
        value_1, grad_w_1, grad_mix_1 = _single(weights, mixture)
        shards = [distribute_tensor(w, mesh, [Shard(0)]).requires_grad_(True) for w in weights]
        ps = [p.clone().requires_grad_(True) for p in mixture]
        value = sst.penalty(shards, *ps, LAM)
        value.backward()
        torch.testing.assert_close(value, value_1, **_tol(dtype))
        for p, want in zip(ps, grad_mix_1):
            torch.testing.assert_close(p.grad, want, **_tol(dtype))
        for s, want in zip(shards, grad_w_1):
            assert s.grad.placements == s.placements
            torch.testing.assert_close(s.grad.full_tensor(), want, **_tol(dtype))
    if world == 3:
        assert shards[2].to_local().numel() == 0 or rank == 0  # some rank holds nothing
    try:  # a mix of shards and plain tensors is refused, naming the plain one
        sst.penalty([shards[0], weights[1]], *mixture, LAM)
    except ValueError as err:
        assert "weights[1] is a plain tensor" in str(err)  # noqa: PT017 (no pytest here)
    else:
        raise AssertionError("a mix of DTensors and plain tensors was accepted")
    _finish()


def split_work_matches_single(rank: int, world: int, port: int) -> None:
    """DDP-style split work: the gradient averaged over ranks is the single-process one."""
    _init(rank, world, port)
    for dtype in (torch.float64, torch.float32):
        weights, mixture = _problem(dtype)
        value_1, grad_w_1, grad_mix_1 = _single(weights, mixture)
        ws = [w.clone().requires_grad_(True) for w in weights]
        ps = [p.clone().requires_grad_(True) for p in mixture]
        value = sst.penalty(ws, *ps, LAM, split_work=True)
        value.backward()
        torch.testing.assert_close(value, value_1, **_tol(dtype))
        for p, want in zip(ps, grad_mix_1):
            torch.testing.assert_close(p.grad, want, **_tol(dtype))
        for w, want in zip(ws, grad_w_1):
            # a tensor outside this rank's piece gets no gradient from it
            averaged = torch.zeros_like(w) if w.grad is None else w.grad.clone()
            dist.all_reduce(averaged)  # what DDP does, then / W
            torch.testing.assert_close(averaged / world, want, **_tol(dtype))
    _finish()


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(784, 300),
        torch.nn.ReLU(),
        torch.nn.Linear(300, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )


def _prior(**kwargs: Any) -> sst.MixturePrior:
    m = 17
    return sst.MixturePrior(
        mu=torch.cat([torch.zeros(1), torch.linspace(-0.1, 0.1, m - 1)]),
        log_var=torch.full((m,), -7.0),
        logit=torch.cat([torch.tensor([2.0]), torch.zeros(m - 1)]),
        **kwargs,
    )


def _train(
    model: torch.nn.Module,
    prior: sst.MixturePrior,
    rank: int,
    world: int,
    *,
    sharded: bool = False,
) -> None:
    """20 SGD steps on this rank's slice of seeded batches of 60."""
    opt = torch.optim.SGD(
        # mixture steps small enough that the mixture's dynamics are not chaotic: the
        # runs are compared to float rounding, which chaos would amplify
        [{"params": model.parameters()}, *prior.parameter_groups(1e-6, 1e-4, 1e-4)],
        lr=0.05,
    )
    g = torch.Generator().manual_seed(1)
    batch = 60  # divisible by 1, 2 and 3: every rank gets an equal slice
    for _ in range(20):
        x = torch.randn(batch, 784, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        lo, hi = batch * rank // world, batch * (rank + 1) // world
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[lo:hi]), y[lo:hi])
        # under FSDP2 the prior sees the local shards (the distributed path)
        assert all(is_sharded(p) for p in model.parameters()) == sharded
        loss = loss + prior(model, 1e-4)
        loss.backward()
        opt.step()


def _state(model: torch.nn.Module, prior: sst.MixturePrior) -> list[torch.Tensor]:
    full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]
    return [t.detach().clone() for t in (*full, prior.mu, prior.log_var, prior.logit)]


def training_matches_single(rank: int, world: int, port: int, mode: str) -> None:
    """20 steps under FSDP2 or DDP with split work end where one process ends; twice alike."""
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    mesh = _init(rank, world, port)
    model, prior = _mlp(), _prior()
    _train(model, prior, 0, 1)
    single = _state(model, prior)
    runs = []
    for _ in range(2):
        model = _mlp()
        if mode == "fsdp":
            prior = _prior()
            for layer in model:  # the FSDP2 recipe: each layer, then the root; after
                if isinstance(layer, torch.nn.Linear):  # forward the layers are
                    fully_shard(layer, mesh=mesh)  # resharded, so the prior sees shards
            fully_shard(model, mesh=mesh)
        else:
            prior = _prior(split_work=True)
            model = DistributedDataParallel(model)
        _train(model, prior, rank, world, sharded=mode == "fsdp")
        runs.append(_state(model.module if mode == "ddp" else model, prior))
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a, b), "two runs at the same world size differ"
    for got, want in zip(runs[0], single):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    _finish()


def sharded_add_grad_matches_forward(rank: int, world: int, port: int) -> None:
    """add_grad_ on DTensor shards (its autograd fallback) gives forward's gradients."""
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = _init(rank, world, port)
    weights, mixture = _problem(torch.float32)
    runs = []
    for direct in (False, True):
        shards = [distribute_tensor(w, mesh, [Shard(0)]).requires_grad_(True) for w in weights]
        prior = sst.MixturePrior(*mixture)
        loss = sum(s.square().sum() for s in shards)  # one gradient per shard
        if direct:
            loss.backward()
            value = prior.add_grad_(shards, LAM)
        else:
            total = prior(shards, LAM)
            (loss + total).backward()
            value = total.item()
        grads = [s.grad.full_tensor() for s in shards] + [p.grad for p in prior.parameters()]
        runs.append((value, grads))
    assert runs[0][0] == runs[1][0]
    for k, (a, b) in enumerate(zip(runs[0][1], runs[1][1])):
        assert torch.equal(a, b), (k, (a - b).abs().max().item(), a.dtype, b.dtype)
    _finish()
