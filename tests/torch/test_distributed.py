"""The penalty over torch.distributed (gloo, 2 and 3 CPU processes on loopback)."""

from __future__ import annotations

import socket
from typing import Any, Callable

import pytest

torch = pytest.importorskip("torch", reason="the distributed penalty needs PyTorch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():  # pragma: no cover
    pytest.skip("torch was built without torch.distributed", allow_module_level=True)

import torch.multiprocessing as mp

import softshare.torch as sst

from tests.torch import _distributed_workers as workers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(fn: Callable[..., None], world: int, *args: Any) -> None:
    mp.spawn(fn, args=(world, _free_port(), *args), nprocs=world, join=True)


@pytest.fixture(autouse=True)
def _one_thread_per_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_weights_match_one_process(world: int) -> None:
    _spawn(workers.sharded_matches_single, world)


@pytest.mark.parametrize("world", [2, 3])
def test_split_work_matches_one_process(world: int) -> None:
    _spawn(workers.split_work_matches_single, world)


def test_add_grad_on_shards_matches_forward() -> None:
    _spawn(workers.sharded_add_grad_matches_forward, 2)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_training_matches_one_process(mode: str) -> None:
    _spawn(workers.training_matches_single, 2, mode)


def test_bad_distributed_input() -> None:
    w = torch.zeros(4)
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    if not dist.is_initialized():
        with pytest.raises(ValueError, match=r"initialised torch\.distributed process group"):
            sst.penalty(w, mu, log_var, logit, split_work=True)
    with pytest.raises(ValueError, match="process_group is used with split_work=True only"):
        sst.penalty(w, mu, log_var, logit, process_group=object())
