"""The mixture's formulas, each written once, with arithmetic operators only.

Every function here takes NumPy arrays, torch tensors (or plain floats) alike:
it uses ``+ - * /`` and nothing else, so the value, the reference, the torch
fallback and the hyper-priors share one copy of each formula (the math is in
``docs/math.md``). Functions needing ``exp`` or ``log`` take those results as
arguments, computed by the caller in its own framework.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "HALF_LOG_2PI",
    "assign_constants",
    "assign_scores",
    "beta_neg_log_density",
    "gamma_neg_log_density",
    "grad_sigma",
    "log_term_offset",
    "log_terms",
    "mixture_gradients",
    "overflow_error",
]

#: ``0.5 * ln(2 pi)``, the Gaussian's normalising constant in log space.
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log_term_offset(log_pi: Any, log_var: Any) -> Any:
    """``c_j = ln pi_j - 0.5 ln(2 pi) - 0.5 xi_j``: the part of ``l_ij`` free of ``w_i``."""
    return log_pi - HALF_LOG_2PI - 0.5 * log_var


def log_terms(d: Any, offset: Any, inv_var: Any) -> Any:
    """``l_ij = c_j - d_ij**2 / (2 sigma_j**2)`` from ``d_ij = w_i - mu_j`` (broadcasting)."""
    # (d sqrt(inv_var / 2))^2, not d*d first: d*d overflows for |d| > 1.3e154 even
    # where sigma is as large and the term itself is small
    return offset - (d * (0.5 * inv_var) ** 0.5) ** 2


def assign_constants(log_var: Any, var: Any, log_pi: Any, use_pi: bool) -> tuple[Any, Any]:
    """``(base, inv2var)`` of the assignment scores :func:`assign_scores`, per component.

    ``base_j = -0.5 xi_j + (ln pi_j if use_pi else 0)`` and ``inv2var_j = 0.5 / sigma_j**2``:
    ``l_ij`` less its constant ``-0.5 ln(2 pi)`` (and less ``ln pi_j`` without ``use_pi``).
    The native ``softshare._core.assign`` takes these two arrays as they are.
    """
    base = -0.5 * log_var + (log_pi if use_pi else 0.0)
    inv2var = 0.5 / var
    return base, inv2var


def assign_scores(d: Any, base: Any, inv2var: Any) -> Any:
    """``base_j - (d_ij * d_ij) * inv2var_j``: the scores whose argmax over j assigns ``w_i``.

    The order of the operations is the native kernel's (``csrc/softshare/recipe-inl.hpp``,
    each rounded on its own, no FMA), so that the argmax is the same bit for bit.
    """
    return base - d * d * inv2var


def mixture_gradients(
    s0: Any, s1: Any, s2: Any, n: Any, lam: Any, var: Any, pi: Any
) -> tuple[Any, Any, Any]:
    """Gradients of ``lam * Omega`` from the component sums S0, S1, S2.

    Returns
    -------
    (grad_mu, grad_log_var, grad_logit)
        ``-lam S1 / sigma^2``, ``lam/2 (S0 - S2 / sigma^2)`` and ``lam (N pi - S0)``.

    Notes
    -----
    The native twin, ``csrc/softshare/gradients.hpp``, finishes
    ``softshare.torch``'s step without returning to Python;
    ``tests/torch/test_torch.py`` holds the two together.
    """
    grad_mu = -lam * s1 / var
    grad_log_var = 0.5 * lam * (s0 - s2 / var)
    grad_logit = lam * (n * pi - s0)
    return grad_mu, grad_log_var, grad_logit


def grad_sigma(s0: Any, s2: Any, lam: Any, sigma: Any, var: Any) -> Any:
    """``d(lam Omega)/d sigma_j = lam (S0_j / sigma_j - S2_j / sigma_j**3)``."""
    return lam * ((s0 - s2 / var) / sigma)


def overflow_error(value: object) -> ValueError:
    """The error for a penalty whose value is not finite (a weight too far from every component)."""
    return ValueError(
        "the penalty overflowed: some weight is too far from every mixture component for "
        f"its log-density to be represented (value = {value}); rescale the weights or "
        "widen the components"
    )


def gamma_neg_log_density(shape: Any, rate: Any, log_var: Any, precision: Any) -> Any:
    """``-ln Gamma(1/sigma^2 | shape, rate)`` per component, up to its constant.

    With ``ln(1/sigma^2) = -xi``: ``(shape - 1) xi + rate / sigma^2``. Callers
    keep only the components that have a hyper-prior (``rate > 0``).
    """
    return (shape - 1.0) * log_var + rate * precision


def beta_neg_log_density(a: float, b: float, log_p: Any, log1m_p: Any) -> Any:
    """``-ln Beta(p | a, b)`` up to its constant, from ``ln p`` and ``ln(1 - p)``."""
    return -(a - 1.0) * log_p - (b - 1.0) * log1m_p
