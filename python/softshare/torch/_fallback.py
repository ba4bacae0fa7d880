"""The penalty in plain torch ops, for devices and dtypes the native kernel does not take."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .._formulas import log_term_offset, log_terms, mixture_gradients, overflow_error
from .._inputs import not_finite_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = ["check_finite", "differentiable_value", "forward_torch"]

_CHUNK = 1 << 16


def _fits(dtype: torch.dtype, *tensors: Tensor) -> bool:
    """Whether every nonzero finite entry lies within ``dtype``'s normal range."""
    info = torch.finfo(dtype)
    for t in tensors:
        a = t.abs()
        bad = (a > info.max) | ((a < info.tiny) & (a > 0))
        if bool(bad[torch.isfinite(t)].any()):
            return False
    return True


def check_finite(name: str, t: Tensor) -> None:
    """Raise ``ValueError`` naming the first non-finite entry of ``t`` and its index."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise not_finite_error(name, t[index].item(), index)


def forward_torch(
    weights: Sequence[Tensor], mu: Tensor, log_var: Tensor, logit: Tensor, lam: float
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    """Value and gradients on the tensors' device, in chunks: O(chunk x M) memory.

    Log-terms and responsibilities are computed in float32 (float64 for float64
    input); the per-component sums and the value accumulate in float64 where the
    device has it (float32 on MPS).

    Returns
    -------
    (value, grad_w, grad_mu, grad_log_var, grad_logit)
        The value as a 0-d accumulation-dtype tensor, ``grad_w`` shaped and
        typed like each weight, the mixture gradients in their parameters' dtypes.
    """
    device = mu.device
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    work = torch.float64 if any(t.dtype == torch.float64 for t in weights) else torch.float32
    mu_acc = mu.detach().to(acc_dtype)
    log_var_acc = log_var.detach().to(acc_dtype)
    log_pi = torch.log_softmax(logit.detach().to(acc_dtype), dim=0)
    inv_var_acc = torch.exp(-log_var_acc)
    if work != acc_dtype and not _fits(work, mu_acc, inv_var_acc, log_pi):
        work = acc_dtype  # a mixture float32 cannot hold: compute in float64 instead
    offset = log_term_offset(log_pi, log_var_acc).to(work)
    mu_w = mu_acc.to(work)
    # mu's rounding to the working dtype, subtracted after w - mu_w (exact when w is near
    # mu_w): a weight closer to mu than float32 resolves keeps its distance, as in the kernel
    mu_lo = (mu_acc - mu_w.to(acc_dtype)).to(work)
    inv_var = inv_var_acc.to(work)
    sum_l = torch.zeros((), dtype=acc_dtype, device=device)
    s0, s1, s2 = (torch.zeros_like(mu_acc) for _ in range(3))
    grads = []
    n = 0
    for w in weights:
        flat = w.detach().reshape(-1)
        n += flat.numel()
        grad = torch.empty(flat.shape, dtype=w.dtype, device=w.device)
        for i0 in range(0, flat.numel(), _CHUNK):
            d = (flat[i0 : i0 + _CHUNK].to(work)[:, None] - mu_w[None, :]) - mu_lo[None, :]
            terms = log_terms(d, offset, inv_var)
            big_l = torch.logsumexp(terms, dim=1)
            gamma = torch.softmax(terms, dim=1)  # max subtracted first: exact for huge terms
            # gamma * d / var in the accumulation dtype: in float32 a distance near
            # float32's smallest normal over a wide component underflows to 0 before
            # lam (up to 1e300) scales it; lam times a zero gradient stays 0, not inf * 0
            d_acc = d.to(acc_dtype)
            gd = gamma.to(acc_dtype) * d_acc
            grad[i0 : i0 + _CHUNK] = (lam * (gd * inv_var_acc).sum(dim=1)).to(w.dtype)
            sum_l += big_l.to(acc_dtype).sum()
            s0 += gamma.to(acc_dtype).sum(dim=0)
            s1 += gd.sum(dim=0)
            s2 += (gd * d_acc).sum(dim=0)
        grads.append(grad.reshape(w.shape))
    if lam == 0.0:  # no penalty: exactly 0 everywhere (0 times an infinite sum is NaN)
        zeros = [torch.zeros_like(g) for g in grads]
        g_mu, g_lv, g_logit = (torch.zeros_like(p) for p in (mu, log_var, logit))
        return torch.zeros_like(sum_l), zeros, g_mu, g_lv, g_logit
    value = -lam * sum_l
    if not bool(torch.isfinite(value)):
        raise overflow_error(value.item())
    g_mu, g_lv, g_logit = mixture_gradients(
        s0, s1, s2, n, lam, torch.exp(log_var_acc), torch.exp(log_pi)
    )
    return value, grads, g_mu.to(mu.dtype), g_lv.to(log_var.dtype), g_logit.to(logit.dtype)


def differentiable_value(
    weights: Sequence[Tensor], mu: Tensor, log_var: Tensor, logit: Tensor, lam: float
) -> Tensor:
    """``lam * Omega`` built from differentiable torch ops (autograd keeps N x M terms).

    Used only for higher-order derivatives (``create_graph=True``): the op's
    own backward returns the first derivatives saved by the fused pass, and
    differentiating those again needs a graph of the whole computation.
    """
    log_pi = torch.log_softmax(logit, dim=0)
    offset = log_term_offset(log_pi, log_var)
    inv_var = torch.exp(-log_var)
    value = torch.zeros((), dtype=mu.dtype, device=mu.device)
    for w in weights:
        d = w.reshape(-1).to(mu.dtype)[:, None] - mu[None, :]
        value = value + torch.logsumexp(log_terms(d, offset, inv_var), dim=1).sum()
    return -lam * value
