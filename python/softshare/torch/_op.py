"""The custom op ``torch.ops.softshare.penalty``: kernel, fake kernel, autograd, :func:`penalty`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Callable, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from .._inputs import as_lam
from .._mixture import Mixture, check_component_shapes
from .._penalty import penalty as _native_penalty
from ._distributed import is_sharded, local_pieces, reduced_penalty, sharded_locals
from ._fallback import check_finite, differentiable_value, forward_torch

__all__ = ["BACKENDS", "TensorOrTensors", "penalty"]

#: Backends of the op: "auto" picks "native" where it applies, else "torch".
BACKENDS = ("auto", "native", "torch")
_NATIVE_DTYPES = (torch.float32, torch.float64)
_check: Callable[..., None] = torch._check  # untyped in torch's stubs

#: One tensor, or any iterable of tensors (``model.parameters()``).
TensorOrTensors = Union[Tensor, Iterable[Tensor]]


def _native_applies(weights: Sequence[Tensor], params: Sequence[Tensor]) -> bool:
    return all(t.device.type == "cpu" for t in (*weights, *params)) and all(
        w.dtype in _NATIVE_DTYPES for w in weights
    )


def _value_dtype(weights: Sequence[Tensor], params: Sequence[Tensor]) -> torch.dtype:
    dtype = params[0].dtype
    for t in (*weights, *params):
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _as_numpy(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor, through DLPack.

    Not ``Tensor.numpy()``: that marks the storage non-resizable for good, and
    FSDP2 frees unsharded parameters by resizing theirs.
    """
    return np.from_dlpack(t.detach())


def mixture_of(mu: Tensor, log_var: Tensor, logit: Tensor) -> Mixture:
    """A float64 :class:`softshare.Mixture` of mixture tensors (checked by ``Mixture``)."""
    return Mixture(*(_as_numpy(p.to("cpu", torch.float64)) for p in (mu, log_var, logit)))


def _forward_native(
    weights: Sequence[Tensor], mu: Tensor, log_var: Tensor, logit: Tensor, lam: float
) -> tuple[float, list[Tensor], Tensor, Tensor, Tensor]:
    """The fused native pass on CPU tensors (no copy of contiguous float32/float64 weights)."""
    r = _native_penalty([_as_numpy(w) for w in weights], mixture_of(mu, log_var, logit), lam)
    grad_w = r.grad_w if isinstance(r.grad_w, list) else [r.grad_w]
    grads = [torch.from_numpy(np.asarray(g)) for g in grad_w]
    return (
        r.value,
        grads,
        torch.from_numpy(r.grad_mu).to(mu.dtype),
        torch.from_numpy(r.grad_log_var).to(log_var.dtype),
        torch.from_numpy(r.grad_logit).to(logit.dtype),
    )


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
    params = (mu, log_var, logit)
    value_dtype = _value_dtype(weights, params)
    use_native = backend == "native" or (backend == "auto" and _native_applies(weights, params))
    if use_native:
        if not _native_applies(weights, params):
            msg = "backend='native' needs CPU tensors and float32/float64 weights"
            raise ValueError(msg)
        # softshare.Mixture and the kernel check finiteness themselves
        value, grads, g_mu, g_lv, g_logit = _forward_native(weights, mu, log_var, logit, lam)
        return torch.tensor(value, dtype=value_dtype), grads, g_mu, g_lv, g_logit
    for name, p in zip(("mu", "log_var", "logit"), params):
        check_finite(name, p.detach())
    for k, w in enumerate(weights):
        check_finite(f"weights[{k}]", w.detach())
    value_t, grads, g_mu, g_lv, g_logit = forward_torch(weights, mu, log_var, logit, lam)
    return value_t.to(value_dtype), grads, g_mu, g_lv, g_logit


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
    value = mu.new_empty((), dtype=_value_dtype(weights, (mu, log_var, logit)))
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
    """Chain rule: ``grad_value`` times each saved gradient, in the gradient's dtype.

    Under ``create_graph=True`` (Hessian-vector products, ``gradgradcheck``)
    the gradients are recomputed with differentiable torch ops instead, so
    that they can be differentiated again.
    """
    saved = ctx.saved_tensors
    k = ctx.n_weights
    if torch.is_grad_enabled():
        return _differentiable_backward(ctx, grad_value, saved[k + 3 :])
    grads: list[Tensor | None] = [(grad_value * g).to(g.dtype) for g in saved[:k]]
    g_mu, g_lv, g_logit = ((grad_value * g).to(g.dtype) for g in saved[k : k + 3])
    return grads, g_mu, g_lv, g_logit, None, None


def _differentiable_backward(
    ctx: Any, grad_value: Tensor, inputs: tuple[Tensor, ...]
) -> tuple[list[Tensor | None], Tensor | None, Tensor | None, Tensor | None, None, None]:
    weights, (mu, log_var, logit) = list(inputs[:-3]), inputs[-3:]
    wanted = [t for t in inputs if t.requires_grad]
    found = {}
    if wanted:
        value = differentiable_value(weights, mu, log_var, logit, ctx.lam)
        grads = torch.autograd.grad(value, wanted, grad_value, create_graph=True, allow_unused=True)
        found = {id(t): g for t, g in zip(wanted, grads)}

    def of(t: Tensor) -> Tensor | None:
        g = found.get(id(t))
        return None if g is None else g.to(t.dtype)

    return [of(w) for w in weights], of(mu), of(log_var), of(logit), None, None


_penalty_op.register_autograd(_backward, setup_context=_setup_context)


def _check_dtypes_and_devices(ws: list[Any], mu: Any, log_var: Any, logit: Any) -> None:
    """Real floating-point tensors, all on one device (TypeError / ValueError otherwise)."""
    named: list[tuple[str, Any]] = [
        *((f"weights[{k}]", w) for k, w in enumerate(ws)),
        *zip(("mu", "log_var", "logit"), (mu, log_var, logit)),
    ]
    for name, t in named:
        if not isinstance(t, Tensor):
            msg = f"{name} must be a torch.Tensor, got {type(t).__name__}"
            raise TypeError(msg)
        if not t.is_floating_point():
            msg = f"{name} must be a real floating-point tensor, got dtype {t.dtype}"
            raise TypeError(msg)
    device = mu.device
    for name, t in named:
        if t.device != device:
            msg = f"all tensors must be on one device: {name} is on {t.device}, mu on {device}"
            raise ValueError(msg)


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
    ws = [weights] if isinstance(weights, Tensor) else list(weights)
    if backend not in BACKENDS:
        msg = f"backend must be one of {BACKENDS}, got {backend!r}"
        raise ValueError(msg)
    _check_dtypes_and_devices(ws, mu, log_var, logit)
    check_component_shapes(
        tuple(mu.shape), tuple(log_var.shape), tuple(logit.shape), kind="tensors"
    )
    lam_f = as_lam(lam)
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
    value: Tensor = torch.ops.softshare.penalty(ws, mu, log_var, logit, lam_f, backend)[0]
    return value
