"""Autograd of the penalty: backward hands out the gradients the forward pass computed.

Two front ends share it: :class:`PenaltyFunction`, the eager path (a plain
``torch.autograd.Function``: a few microseconds of dispatch), and the
registered op ``torch.ops.softshare.penalty`` (``_op.py``), which
``torch.compile`` and fake tensors go through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ._compute import Computed, compute
from ._fallback import differentiable_value

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = ["PenaltyFunction", "differentiable_grads", "handed_out", "scaled_grads"]


_KEEP_GRAPH_QUERY = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)


def _keeps_graph() -> bool:
    """Whether the running backward keeps its graph (``retain_graph=True``).

    Unknown (an older or newer torch without the query) counts as keeping it:
    the gradients then stay saved, which is always correct.
    """
    return True if _KEEP_GRAPH_QUERY is None else bool(_KEEP_GRAPH_QUERY())


def scaled_grads(grad_value: Tensor, saved: Sequence[Tensor], *, eager: bool) -> list[Tensor]:
    """``grad_value`` times each saved gradient, in the gradient's dtype.

    ``eager`` (not traced): for ``grad_value`` exactly 1 on the CPU
    (``loss.backward()`` of a sum) the saved tensors themselves: no
    multiplication and no new tensor, and autograd accumulates them into
    ``.grad`` as they are. A traced backward cannot branch on the value.
    """
    if eager and grad_value.device.type == "cpu" and grad_value.item() == 1.0:
        return list(saved)
    return [(grad_value * g).to(g.dtype) for g in saved]


def handed_out(ctx: Any, grad_value: Tensor, needs: Sequence[bool]) -> list[Tensor | None]:
    """The gradients a backward returns (None where ``needs`` is false) from those
    ``ctx.grads`` saved: never a tensor it keeps.

    A backward that frees its graph drops its references first and hands out
    the saved tensors themselves (autograd may take them as ``.grad``: no
    copy). One that keeps its graph (``retain_graph=True``) hands out copies:
    a tensor it returned may become ``.grad`` (or a view of it a parameter's
    ``.grad``) or what ``torch.autograd.grad`` returns, which the caller may
    change in place, and the next backward must still read the original.
    """
    saved = ctx.grads
    if saved is None:
        msg = (
            "Trying to backward through the graph a second time: the penalty's gradients "
            "were handed out already; specify retain_graph=True the first time"
        )
        raise RuntimeError(msg)
    keep = _keeps_graph()
    if not keep:
        ctx.grads = None
    wanted = [g for g, need in zip(saved, needs) if need]
    grads = iter(scaled_grads(grad_value, wanted, eager=True))
    out: list[Tensor | None] = []
    for s, need in zip(saved, needs):
        g = next(grads) if need else None
        out.append(g.clone() if keep and g is s else g)
    return out


def differentiable_grads(
    lam: float, grad_value: Tensor, weights: Sequence[Tensor], params: Sequence[Tensor]
) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """Gradients recomputed with differentiable torch ops, for ``create_graph=True``.

    Hessian-vector products and ``gradgradcheck`` differentiate the backward
    itself, which the saved first derivatives cannot support.
    """
    mu, log_var, logit = params
    inputs = [*weights, *params]
    wanted = [t for t in inputs if t.requires_grad]
    found = {}
    if wanted:
        value = differentiable_value(weights, mu, log_var, logit, lam)
        grads = torch.autograd.grad(value, wanted, grad_value, create_graph=True, allow_unused=True)
        found = {id(t): g for t, g in zip(wanted, grads)}

    def of(t: Tensor) -> Tensor | None:
        g = found.get(id(t))
        return None if g is None else g.to(t.dtype)

    return [of(w) for w in weights], [of(p) for p in params]


class PenaltyFunction(torch.autograd.Function):
    """``lam * Omega`` of ``weights`` under the mixture ``(mu, log_var, logit)``.

    ``apply(lam, source, mu, log_var, logit, *weights)`` returns the value; the
    forward pass computes every gradient and keeps them, and backward returns
    them (times the incoming gradient). ``source`` is the backend, or the
    result of :func:`~softshare.torch._compute.compute` for exactly these
    tensors, computed earlier (the overlapped penalty, ``_overlap.py``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        lam: float,
        source: str | Computed,
        mu: Tensor,
        log_var: Tensor,
        logit: Tensor,
        *weights: Tensor,
    ) -> Tensor:
        if isinstance(source, str):
            source = compute(weights, mu, log_var, logit, lam, source)
        value, grads, g_mu, g_lv, g_logit = source
        ctx.lam = lam
        ctx.grads = [g_mu, g_lv, g_logit, *grads]
        # references, no copies: only a differentiable backward reads them
        ctx.save_for_backward(mu, log_var, logit, *weights)
        return value

    @staticmethod
    def backward(ctx: Any, grad_value: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True
            mu, log_var, logit, *weights = ctx.saved_tensors
            g_w, g_p = differentiable_grads(ctx.lam, grad_value, weights, (mu, log_var, logit))
            return (None, None, *g_p, *g_w)
        return (None, None, *handed_out(ctx, grad_value, ctx.needs_input_grad[2:]))
