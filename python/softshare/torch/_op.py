"""The custom op ``torch.ops.softshare.penalty``: kernel, fake kernel, autograd, :func:`penalty`."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensor

from ._checks import BACKENDS, TensorOrTensors, checked_inputs
from ._compute import compute, value_dtype
from ._distributed import is_sharded, local_pieces, reduced_penalty, sharded_locals
from ._function import PenaltyFunction, differentiable_grads, scaled_grads

__all__ = ["BACKENDS", "TensorOrTensors", "penalty"]

_check: Callable[..., None] = torch._check  # untyped in torch's stubs


@torch.library.custom_op("softshare::penalty", mutates_args=())
def _penalty_op(
    weights: list[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,
    backend: str,
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    """Value ``lam * Omega`` and its gradients for weights, mu, log_var and logit."""
    return compute(weights, mu, log_var, logit, lam, backend)


@_penalty_op.register_fake
def _penalty_fake(
    weights: list[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,  # noqa: ARG001 (the op's signature)
    backend: str,
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    """Output metadata only: shapes and dtypes as the real op gives them, checked."""
    _check(mu.dim() == 1, lambda: f"mu must be 1-D, got shape {tuple(mu.shape)}")
    _check(mu.shape[0] >= 1, lambda: "the mixture needs M >= 1 components")
    _check(
        log_var.shape == mu.shape and logit.shape == mu.shape,
        lambda: "mu, log_var and logit must have one shape",
    )
    _check(backend in BACKENDS, lambda: f"backend must be one of {BACKENDS}")
    value = mu.new_empty((), dtype=value_dtype(weights, (mu, log_var, logit)))
    return (
        value,
        [torch.empty_like(w) for w in weights],
        torch.empty_like(mu),
        torch.empty_like(log_var),
        torch.empty_like(logit),
    )


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    """Save the gradients the forward pass already computed; backward only scales them.

    The inputs are saved too (references, no copies): a backward that must
    itself be differentiable (``create_graph=True``) recomputes from them.
    """
    weights, mu, log_var, logit, lam, _ = inputs
    _, grads, g_mu, g_lv, g_logit = output
    ctx.n_weights = len(grads)
    ctx.lam = lam
    ctx.save_for_backward(*grads, g_mu, g_lv, g_logit, *weights, mu, log_var, logit)


def _backward(
    ctx: Any,
    grad_value: Tensor,
    _grad_grads: list[Tensor],
    _g_mu: Tensor,
    _g_lv: Tensor,
    _g_logit: Tensor,
) -> tuple[list[Tensor | None], Tensor | None, Tensor | None, Tensor | None, None, None]:
    """Chain rule: ``grad_value`` times each saved gradient (``_function.scaled_grads``).

    Under ``create_graph=True`` (Hessian-vector products, ``gradgradcheck``)
    the gradients are recomputed with differentiable torch ops instead, so
    that they can be differentiated again.
    """
    saved = ctx.saved_tensors
    k = ctx.n_weights
    if torch.is_grad_enabled():
        inputs = saved[k + 3 :]
        g_w, (g_mu, g_lv, g_logit) = differentiable_grads(
            ctx.lam, grad_value, inputs[:-3], inputs[-3:]
        )
        return g_w, g_mu, g_lv, g_logit, None, None
    grads: list[Tensor | None] = list(scaled_grads(grad_value, saved[: k + 3], eager=False))
    return grads[:k], grads[k], grads[k + 1], grads[k + 2], None, None


_penalty_op.register_autograd(_backward, setup_context=_setup_context)


def _traced(t: Tensor) -> bool:
    """Whether the call is being traced (``torch.compile``, meta or fake tensors).

    Traced calls go through the registered op, which has a fake kernel; eager
    calls through :class:`PenaltyFunction`, which skips the op's dispatch.
    """
    return torch.compiler.is_compiling() or t.device.type == "meta" or isinstance(t, FakeTensor)


def penalty(
    weights: TensorOrTensors,
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float = 1.0,
    *,
    backend: str = "auto",
    split_work: bool = False,
    process_group: Any = None,
) -> Tensor:
    """Soft weight-sharing penalty ``lam * Omega(w)`` as a differentiable tensor.

    Parameters
    ----------
    weights : Tensor or iterable of Tensor
        The weights (any shapes), e.g. ``model.parameters()``: one mixture over
        all of them.
    mu, log_var, logit : Tensor, shape (M,)
        The mixture's means, log-variances and mixing logits. Gradients flow to
        whichever of them (and of the weights) require grad.
    lam : float, default 1.0
        Penalty strength, finite and >= 0.
    backend : {"auto", "native", "torch"}, default "auto"
        "native" runs the fused C++ kernel (CPU tensors, float32/float64
        weights, no copies); "torch" the chunked pure-torch implementation on
        the tensors' device; "auto" the native kernel where it applies.
    split_work : bool, default False
        For weights replicated on every rank (DDP): each rank computes only
        its 1/W of the flattened weights, one all-reduce gives every rank the
        global value and mixture gradients, and the local weight gradients
        are scaled by W so that DDP's gradient averaging yields exactly the
        single-process gradient. Needs an initialised process group.
    process_group : ProcessGroup, optional
        The group for ``split_work`` (default: the world).

    Returns
    -------
    Tensor
        0-d tensor ``lam * Omega``, in the promoted dtype of the inputs. With
        sharded weights (DTensors, as FSDP2's ``fully_shard`` makes them) or
        ``split_work``, the global penalty, the same on every rank.

    Notes
    -----
    Sharded weights need nothing from the caller: each rank computes on its
    local shards, the value and mixture gradients are all-reduced over the
    DTensors' process group, and the weight gradients keep the weights'
    sharding. Mixture parameters may be plain tensors or DTensors (their
    whole value is used).

    Raises
    ------
    ValueError
        Non-finite weights or mixture parameters, ``lam`` negative or not
        finite, an unknown backend, mixture parameters that are not 1-D of
        one length, or tensors on more than one device.
    TypeError
        If ``weights`` or the mixture hold something other than real
        floating-point tensors (integer or complex tensors included).
    """
    ws, lam_f = checked_inputs(weights, mu, log_var, logit, lam, backend)
    if ws and any(is_sharded(w) for w in ws):
        if split_work or process_group is not None:
            msg = "split_work and process_group are for replicated weights; these are sharded"
            raise ValueError(msg)
        local, group = sharded_locals(ws)
        return reduced_penalty(local, mu, log_var, logit, lam_f, backend, group)
    if split_work:
        group = process_group if process_group is not None else dist.group.WORLD
        pieces, world = local_pieces(ws, group)
        return reduced_penalty(pieces, mu, log_var, logit, lam_f, backend, group, world)
    if process_group is not None:
        msg = "process_group is used with split_work=True only"
        raise ValueError(msg)
    if _traced(mu):
        value: Tensor = torch.ops.softshare.penalty(ws, mu, log_var, logit, lam_f, backend)[0]
        return value
    apply: Any = PenaltyFunction.apply  # untyped in torch's stubs
    result: Tensor = apply(lam_f, backend, mu, log_var, logit, *ws)
    return result
