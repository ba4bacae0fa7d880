"""The penalty over torch.distributed: sharded weights (FSDP2) and split work (DDP).

The penalty is a sum over weights, so every rank computes the op on its own
weights (its FSDP2 shards, or its piece of replicated weights) and one
all-reduce of the value and the three mixture gradients (3M + 1 float64
numbers, linear in the partial sums [sum L, n, S0, S1, S2]) gives every rank
the global value and mixture gradients. The weight gradients stay local.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from ._compute import compute
from ._function import handed_out

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = ["is_sharded", "local_pieces", "reduced_penalty", "replicated", "sharded_locals"]


def is_sharded(t: Tensor) -> bool:
    """Whether ``t`` is a DTensor (FSDP2 parameters outside the forward pass are).

    Without ``torch.distributed.tensor`` imported (by FSDP2 or the user) no
    tensor is a DTensor, so it is never imported here: it takes a third of a
    second, more than the rest of ``import softshare.torch``.
    """
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def sharded_locals(ws: Sequence[Any]) -> tuple[list[Tensor], Any]:
    """The local shards of DTensor weights and their process group (one mesh for all).

    Raises ``ValueError`` for a mix of DTensors and plain tensors or for
    DTensors on different meshes.
    """
    flags = [is_sharded(w) for w in ws]
    if not all(flags):
        k = flags.index(False)
        msg = (
            "weights mix DTensors (sharded, e.g. by FSDP2's fully_shard) and plain tensors: "
            f"weights[{k}] is a plain tensor; shard all of them or none"
        )
        raise ValueError(msg)
    mesh = ws[0].device_mesh
    for k, w in enumerate(ws):
        if w.device_mesh != mesh:
            msg = f"weights[{k}] lives on another device mesh than weights[0]: use one mesh"
            raise ValueError(msg)
    if mesh.ndim != 1:
        msg = f"sharded weights need a 1-D device mesh, got {mesh.ndim}-D"
        raise ValueError(msg)
    return [w.to_local() for w in ws], mesh.get_group()


def replicated(p: Any) -> Tensor:
    """A mixture parameter as a plain tensor: the whole of a DTensor, differentiably."""
    whole: Tensor = p.full_tensor() if is_sharded(p) else p
    return whole


def local_pieces(ws: Sequence[Tensor], group: Any) -> tuple[list[Tensor], int]:
    """This rank's contiguous piece of the flattened weights, and the world size.

    The N weights (all tensors, flattened in order) are cut into W nearly equal
    ranges; the piece is a list of flat views (slices) of the tensors it covers.
    """
    if not (dist.is_available() and dist.is_initialized()):
        msg = (
            "split_work=True needs an initialised torch.distributed process group "
            "(torch.distributed.init_process_group)"
        )
        raise ValueError(msg)
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    sizes = [w.numel() for w in ws]
    n = sum(sizes)
    lo, hi = n * rank // world, n * (rank + 1) // world
    pieces, start = [], 0
    for w, size in zip(ws, sizes):
        a, b = max(lo, start), min(hi, start + size)
        if a < b:
            pieces.append(w.reshape(-1)[a - start : b - start])
        start += size
    return pieces, world


class _Reduced(torch.autograd.Function):
    """Local op, one all-reduce; backward scales the saved gradients."""

    @staticmethod
    def forward(
        ctx: Any,
        lam: float,
        backend: str,
        group: Any,
        grad_w_scale: float,
        *tensors: Tensor,
    ) -> Tensor:
        *ws, mu, log_var, logit = tensors
        value, grads, g_mu, g_lv, g_logit = compute(ws, mu, log_var, logit, lam, backend)
        vec = torch.cat([value.reshape(1).double(), g_mu.double(), g_lv.double(), g_logit.double()])
        dist.all_reduce(vec, group=group)
        m = mu.shape[0]
        mixture = [vec[1 + k * m : 1 + (k + 1) * m].to(p.dtype) for k, p in enumerate(tensors[-3:])]
        if grad_w_scale != 1.0:
            grads = [g * grad_w_scale for g in grads]
        ctx.grads = [*grads, *mixture]  # in the order of ``tensors``
        return vec[0].to(value.dtype)

    @staticmethod
    def backward(ctx: Any, grad_value: Tensor) -> tuple[Any, ...]:
        return (None, None, None, None, *handed_out(ctx, grad_value, ctx.needs_input_grad[4:]))


def reduced_penalty(
    local: Sequence[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,
    backend: str,
    group: Any,
    grad_w_scale: float = 1.0,
) -> Tensor:
    """The global penalty from this rank's weights: value and mixture gradients all-reduced.

    ``grad_w_scale`` multiplies the local weight gradients (the world size for
    split work under DDP, whose gradient averaging then gives the exact
    single-process gradient).
    """
    params = [replicated(p) for p in (mu, log_var, logit)]
    apply: Any = _Reduced.apply  # untyped in torch's stubs
    value: Tensor = apply(lam, backend, group, float(grad_w_scale), *local, *params)
    return value
