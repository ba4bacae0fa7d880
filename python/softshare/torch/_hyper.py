"""The hyper-priors' term of ``MixturePrior``'s penalty, in torch ops (differentiable)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .._formulas import beta_neg_log_density, gamma_neg_log_density

if TYPE_CHECKING:
    from torch import Tensor

    from ..compress._hyperprior import HyperPrior

__all__ = ["hyperprior_value"]


def hyperprior_value(hp: HyperPrior | None, log_var: Tensor, logit: Tensor) -> Tensor:
    """The negative log-density of ``hp`` at the effective ``log_var`` and ``logit``.

    Gamma priors on the precisions ``exp(-log_var)`` (components whose rate is
    0 have none) and a Beta prior on the zero component's proportion, without
    the densities' normalising constants; 0 without a hyper-prior.
    """
    value = torch.zeros((), dtype=log_var.dtype, device=log_var.device)
    if hp is None:
        return value
    shape, rate = (
        torch.as_tensor(a, dtype=log_var.dtype, device=log_var.device)
        for a in hp.shape_rate(log_var.shape[0])
    )
    terms = gamma_neg_log_density(shape, rate, log_var, torch.exp(-log_var))
    value = value + torch.where(rate > 0, terms, torch.zeros_like(terms)).sum()
    if hp.beta is not None:
        log_p0 = torch.log_softmax(logit, dim=0)[0]
        value = value + beta_neg_log_density(*hp.beta, log_p0, torch.log1p(-torch.exp(log_p0)))
    return value
