"""Gradients computed ahead handed to ``.grad`` as autograd would add them, without its engine.

Shared by ``MixturePrior.add_grad_`` (``_add_grad.py``) and the overlapped
penalty's ``join()`` (``_overlap.py``). A weight's ``.grad`` that is None
becomes the gradient (laid out like the weight, as autograd lays out a new
``.grad``); an existing one has it added in place, the addition autograd's
``AccumulateGrad`` makes. The mixture tensors' part goes to leaves the same
way, and otherwise through a backward pass of their M-sized graph alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ._distributed import is_sharded
from ._function import handed_out

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["accumulate", "add_mixture_grads", "hand_over", "plain_grad", "plain_grads", "set_grad"]


def plain_grads(weights: Sequence[Tensor]) -> bool:
    """Whether ``.grad`` can be written directly for every weight that requires grad.

    Leaves only (autograd fills no other ``.grad``), each tensor once (a tensor
    given twice gets its two terms summed by autograd first), and every
    existing ``.grad`` a plain dense tensor of the weight's dtype and device
    that is not itself part of a graph.
    """
    if len({id(w) for w in weights}) != len(weights):
        return False
    for w in weights:
        if w.requires_grad and (not w.is_leaf or is_sharded(w) or not plain_grad(w.grad, w)):
            return False
    return True


def plain_grad(g: Tensor | None, w: Tensor) -> bool:
    """Whether ``g`` (``w.grad``) is None or a plain dense tensor not part of a graph."""
    return g is None or (
        type(g) is Tensor
        and g.layout == torch.strided
        and not g.requires_grad
        and g.dtype == w.dtype
        and (g.is_cpu if w.is_cpu else g.device == w.device)
    )


def set_grad(w: Tensor, g: Tensor) -> None:
    """``w.grad = g`` (contiguous, fresh), laid out as autograd lays out a new ``.grad``."""
    w.grad = g if w.is_contiguous() else torch.empty_like(w).copy_(g)


def hand_over(weights: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    """Add fresh gradients (contiguous, one per weight) to ``.grad`` as autograd would.

    A ``.grad`` that is None becomes the gradient itself; an existing one is
    added to in place. Weights that do not require grad get nothing.
    """
    for w, g in zip(weights, grads):
        if not w.requires_grad:
            continue
        if w.grad is None:
            set_grad(w, g)
        else:
            w.grad.add_(g)


def accumulate(p: Tensor, g: Tensor) -> None:
    """Autograd's accumulation of ``g`` into the leaf ``p``'s ``.grad``."""
    g = g if g.dtype == p.dtype else g.to(p.dtype)
    if p.grad is None:
        set_grad(p, g)
    else:
        p.grad.add_(g)


class _Handed(torch.autograd.Function):
    """``value``, whose backward hands out gradients computed earlier for ``params``.

    ``apply(value, grads, *params)``: the mixture's part of the penalty's
    autograd node (``_function.PenaltyFunction``), without the weights.
    """

    @staticmethod
    def forward(ctx: Any, value: Tensor, grads: Sequence[Tensor], *_params: Tensor) -> Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad_value: Tensor) -> tuple[Tensor | None, ...]:
        return (None, None, *handed_out(ctx, grad_value, ctx.needs_input_grad[2:]))


def add_mixture_grads(
    value: Tensor,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    extra: Callable[[], Tensor] | None = None,
) -> Tensor:
    """Hand the penalty's gradients for its mixture tensors ``params`` to their ``.grad``.

    Leaves take theirs directly. Tensors derived from others
    (``MixturePrior.effective`` with ``pi_zero``) and ``extra()`` (the
    hyper-prior's term) go through a backward pass of the M-sized graph
    alone, built as the autograd form builds it (the penalty's node first,
    then ``extra``'s), so that each leaf receives its terms in the same order.
    Returns ``value`` plus ``extra()``, detached.
    """
    if extra is None and all(t.is_leaf or not t.requires_grad for t in params):
        for t, g in zip(params, grads):
            if t.requires_grad:
                accumulate(t, g)
        return value
    with torch.enable_grad():
        apply: Any = _Handed.apply  # untyped in torch's stubs
        total: Tensor = apply(value, list(grads), *params)
        if extra is not None:
            total = total + extra()
    if total.requires_grad:
        torch.autograd.backward(total)
    return total.detach()
