"""``MixturePrior.add_grad_``: the penalty's gradients added straight into ``.grad``, no autograd.

The gradient is analytic, so after the network's ``loss.backward()`` one native
pass can add ``lam * dOmega/dw`` into every penalised parameter's ``.grad``
(the kernel's accumulate mode, ``softshare.penalty(..., accumulate=True)``)
instead of handing it to autograd, whose node, engine and own addition cost
more than the pass on small networks. The result is that of the autograd form
``(loss + prior(model, lam)).backward()`` bit for bit wherever the loss's
backward gives a ``.grad`` one term: it then receives the same two terms, and
adding two floating-point numbers does not depend on their order. With more
(a ``.grad`` kept from an earlier backward, a weight the network uses twice)
the penalty's term is added last, where autograd may add it earlier: the same
sum to rounding. The mixture's gradients go into ``mu``, ``log_var`` and
``logit`` the same way; where the prior derives its effective parameters from
them (``pi_zero``) or adds a hyper-prior, that M-sized part goes through a
backward pass of its own graph, built as the autograd form builds it.

What the kernel cannot take (other devices and dtypes, DTensor shards,
non-leaf tensors, a tensor given twice, a ``.grad`` that is not a plain dense
tensor) runs the autograd form and its backward instead: the same gradients
at autograd's cost. ``.grad`` written through its address has its version
counter bumped; tensor hooks do not see the penalty's part.
"""

from __future__ import annotations

import math
from struct import pack, unpack
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from .._inputs import as_lam
from .._mixture import check_component_shapes
from ._checks import checked_inputs
from ._compute import NativeCall, dense, value_dtype
from ._hand_over import accumulate, add_mixture_grads, plain_grad, set_grad

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn

    from ._checks import TensorOrTensors
    from ._prior_like import PriorLike

__all__ = ["add_grad"]


_F64 = torch.float64
_STRIDED = torch.strided
_KERNEL_DTYPES = (torch.float32, torch.float64)
_PLAIN = (Tensor, torch.nn.Parameter)  # what the kernel reads: no DTensor, no other subclass


class _Plan(NamedTuple):
    """The kernel's outputs for the weights, and what to do with each after the pass.

    ``kinds[k]``: "added" (``buffers[k]`` is the ``.grad`` the kernel adds
    into), "set" (a fresh buffer to become ``.grad``), "add" (one to add to
    ``.grad``) or "drop" (the weight does not require grad).
    """

    buffers: list[Tensor]
    kinds: list[str]
    dense: list[Tensor]
    segments: list[tuple[int, int, int, bool]]


def _plan(weights: Sequence[Tensor], params: Sequence[Tensor]) -> _Plan | None:
    """The native plan for these weights, in one pass over them; None for the fallback.

    None unless every weight and mixture tensor is a plain CPU tensor (no
    DTensor), the weights float32/float64, each given once, those that
    require grad leaves whose ``.grad`` is None or plain
    (``_hand_over.plain_grad``). Checks nothing else: the fallback's
    ``checked_inputs`` raises what is wrong.
    """
    strided = _STRIDED
    for p in params:
        if not (type(p) in _PLAIN and p.is_cpu and p.is_floating_point() and p.layout is strided):
            return None
    buffers: list[Tensor] = []
    kinds: list[str] = []
    dense_: list[Tensor] = []
    segments: list[tuple[int, int, int, bool]] = []
    for w in weights:  # written out for speed: this runs on every training step
        if (
            type(w) not in _PLAIN
            or not w.is_cpu
            or w.dtype not in _KERNEL_DTYPES
            or w.layout is not strided
            or w.is_nested
        ):
            return None
        needs = w.requires_grad
        if needs and not w.is_leaf:
            return None
        g = w.grad if needs else None
        if g is not None and not plain_grad(g, w):
            return None
        in_order = w.is_contiguous() and not w.is_neg()
        d = w if in_order else dense(w)
        if g is not None and in_order and g.is_contiguous():
            buffer, kind = g, "added"
        else:
            buffer = torch.empty(w.shape, dtype=w.dtype)
            kind = "drop" if not needs else "set" if g is None else "add"
        buffers.append(buffer)
        kinds.append(kind)
        dense_.append(d)
        segments.append((d.data_ptr(), buffer.data_ptr(), w.numel(), w.dtype == _F64))
    if len({id(w) for w in weights}) != len(kinds):  # a tensor given twice
        return None
    return _Plan(buffers, kinds, dense_, segments)


def _plain_mixture_grads(prior: PriorLike, grads: Sequence[Tensor]) -> None:
    """The mixture part of :func:`add_grad` without ``pi_zero`` or a hyper-prior: leaves only."""
    g_mu, g_lv, g_logit = grads
    if prior.zero_component:  # mu[0] is pinned: autograd's slice gives it +0
        g_mu = torch.cat([torch.zeros_like(g_mu[:1]), g_mu[1:]])
    for p, g in ((prior.mu, g_mu), (prior.log_var, g_lv), (prior.logit, g_logit)):
        if p.requires_grad:
            accumulate(p, g)


def _prior_mixture_grads(
    prior: PriorLike,
    value: Tensor,
    grads: Sequence[Tensor],
    lam: float,
    hyper_lam: float | None,
) -> Tensor:
    """The mixture part of :func:`add_grad`; returns the value, hyper-prior included."""
    if prior.pi_zero is None and prior.hyperprior is None:
        _plain_mixture_grads(prior, grads)
        return value
    extra = None
    if prior.hyperprior is not None:
        weight = lam if hyper_lam is None else hyper_lam

        def extra() -> Tensor:
            return weight * prior.hyperprior_penalty()

    with torch.enable_grad():
        params = prior.effective()
    return add_mixture_grads(value, params, grads, extra)


def _through_autograd(
    prior: PriorLike,
    model_or_params: nn.Module | TensorOrTensors,
    lam: float,
    hyper_lam: float | None,
) -> float:
    """The fallback: the autograd form and a backward pass of its own."""
    with torch.enable_grad():
        value = prior(model_or_params, lam, hyper_lam=hyper_lam)
        if value.requires_grad:
            torch.autograd.backward(value)
    return float(value.item())


def add_grad(
    prior: PriorLike,
    model_or_params: nn.Module | TensorOrTensors,
    lam: float = 1.0,
    *,
    hyper_lam: float | None = None,
    n_threads: int | None = None,
) -> float:
    """:meth:`MixturePrior.add_grad_` (see there).

    Runs under ``no_grad`` and outside inference mode (ordinary tensors as
    ``.grad`` whatever the caller's mode), each mode switched only where it
    is on: the context managers' decorator form costs more than the rest of
    the call's Python on a small network.
    """
    if prior.split_work:
        msg = (
            "add_grad_ does not support split_work: its gradients must pass through DDP's "
            "all-reduce in backward; use forward()"
        )
        raise ValueError(msg)
    if torch.is_inference_mode_enabled():
        with torch.inference_mode(False):
            return add_grad(prior, model_or_params, lam, hyper_lam=hyper_lam, n_threads=n_threads)
    if not torch.is_grad_enabled():
        return _add_grad(prior, model_or_params, lam, hyper_lam, n_threads)
    torch.set_grad_enabled(False)
    try:
        return _add_grad(prior, model_or_params, lam, hyper_lam, n_threads)
    finally:
        torch.set_grad_enabled(True)


def _add_grad(
    prior: PriorLike,
    model_or_params: nn.Module | TensorOrTensors,
    lam: float,
    hyper_lam: float | None,
    n_threads: int | None,
) -> float:
    """:func:`add_grad` under ``no_grad``, outside inference mode."""
    ws = prior.penalized_parameters(model_or_params)
    mu, log_var, logit = params = prior.effective()  # no graph: under no_grad
    plan = _plan(ws, params)
    if plan is None:
        ws, lam_f = checked_inputs(ws, mu, log_var, logit, lam, "auto")
        return _through_autograd(prior, ws, lam_f, hyper_lam)
    lam_f = as_lam(lam)
    check_component_shapes(mu.shape, log_var.shape, logit.shape, kind="tensors")
    call = NativeCall(
        ws,
        mu,
        log_var,
        logit,
        lam_f,
        n_threads,
        grads=plan.buffers,
        accumulate=[k == "added" for k in plan.kinds],
        prepared=(plan.dense, plan.segments),
    )
    call.run()
    value, mixture_grads = _finished(call, ws, params)
    added = []
    for w, buffer, kind in zip(ws, plan.buffers, plan.kinds):
        if kind == "added":
            added.append(buffer)
        elif kind == "set":
            set_grad(w, buffer)
        elif kind == "add":
            w.grad.add_(buffer)  # type: ignore[union-attr]
    if added:
        torch.autograd.graph.increment_version(added)  # written through their addresses
    if prior.pi_zero is None and prior.hyperprior is None and isinstance(value, float):
        _plain_mixture_grads(prior, mixture_grads)
        return value
    value_t = call.finish()[0] if isinstance(value, float) else value
    total = _prior_mixture_grads(prior, value_t, mixture_grads, lam_f, hyper_lam)
    return float(total.item())


def _finished(
    call: NativeCall, ws: Sequence[Tensor], params: Sequence[Tensor]
) -> tuple[float | Tensor, list[Tensor]]:
    """The value and the mixture gradients (in the parameters' dtypes) of a pass.

    The value as a float, rounded as the autograd form rounds it, when the
    kernel finished the pass; else :meth:`NativeCall.finish`'s tensor (the
    slow path, which raises the errors of ``softshare.penalty``).
    """
    raw = call.raw
    if raw is None or raw[0] is None:
        value_t, _, *grads = call.finish()
        return value_t, grads
    grads = [g if g.dtype == p.dtype else g.to(p.dtype) for g, p in zip(call.out, params)]
    dtypes = {t.dtype for t in (*ws, *params)}
    if dtypes == {torch.float32}:  # the common case: round as torch.tensor(v, float32)
        try:
            return unpack("f", pack("f", raw[0]))[0], grads
        except OverflowError:  # rounds to +-inf
            return math.copysign(math.inf, raw[0]), grads
    dtype = value_dtype(ws, params)
    value = raw[0] if dtype == torch.float64 else torch.tensor(raw[0], dtype=dtype).item()
    return value, grads
