"""The penalty written the plain way (an N x M array), for tests and benchmarks to compare with.

:func:`dense_penalty` is what a user would write without softshare: the N x M
log-terms in memory and the framework's own ``logsumexp``. It takes NumPy
arrays, torch tensors (differentiable by autograd, traceable by
``torch.compile``) and JAX arrays (``jax.grad``, ``jax.jit``) alike, with the
framework chosen by the type of ``mu``; only that framework is imported.

>>> import numpy as np
>>> from softshare.testing import dense_penalty
>>> float(dense_penalty(np.zeros(3), np.zeros(1), np.zeros(1), np.zeros(1)))  # 3 * ln sqrt(2 pi)
2.756815599614018
"""

from __future__ import annotations

from typing import Any

from ._formulas import log_term_offset, log_terms

__all__ = ["dense_penalty"]


def _framework(x: Any) -> str:
    module = type(x).__module__
    if module.startswith("torch"):
        return "torch"
    if module.startswith(("jax", "jaxlib")):
        return "jax"
    return "numpy"


def dense_penalty(weights: Any, mu: Any, log_var: Any, logit: Any, lam: float = 1.0) -> Any:
    """``lam * Omega(w)`` from the full N x M array of log-terms (no gradients of its own).

    Parameters
    ----------
    weights : array or tensor, or a list/tuple of them
        The weights, any shapes; a list is concatenated (flattened).
    mu, log_var, logit : array or tensor, shape (M,)
        The mixture, of the same framework as the weights.
    lam : float, default 1.0
        Penalty strength.

    Returns
    -------
    scalar array or tensor
        ``-lam * sum_i logsumexp_j l_ij`` in the framework of ``mu``: for torch
        and JAX, differentiate it with their autograd to get every gradient.
    """
    kind = _framework(mu)
    lse: Any
    w: Any  # a torch tensor, JAX array or NumPy array, as are log_pi and inv_var
    log_pi: Any
    inv_var: Any
    items = list(weights) if isinstance(weights, (list, tuple)) else [weights]
    if kind == "torch":
        import torch

        w = torch.cat([t.reshape(-1) for t in items]) if len(items) > 1 else items[0].reshape(-1)
        log_pi = torch.log_softmax(logit, dim=0)
        inv_var = torch.exp(-log_var)
        lse = torch.logsumexp
    elif kind == "jax":
        import jax
        import jax.numpy as jnp

        w = jnp.concatenate([jnp.reshape(t, -1) for t in items])
        log_pi = jax.nn.log_softmax(logit)
        inv_var = jnp.exp(-log_var)
        lse = jax.nn.logsumexp
    else:
        import numpy as np

        w = np.concatenate([np.asarray(t, dtype=np.float64).reshape(-1) for t in items])
        mu, log_var, logit = (np.asarray(a, dtype=np.float64) for a in (mu, log_var, logit))
        top = np.max(logit)
        log_pi = logit - (top + np.log(np.sum(np.exp(logit - top))))
        inv_var = np.exp(-log_var)

        def lse(a: Any, dim: int) -> Any:
            top = np.max(a, axis=dim, keepdims=True)
            return np.squeeze(top, axis=dim) + np.log(np.sum(np.exp(a - top), axis=dim))

    terms = log_terms(w[:, None] - mu[None, :], log_term_offset(log_pi, log_var), inv_var)
    if kind == "jax":
        return -lam * lse(terms, axis=1).sum()
    return -lam * lse(terms, dim=1).sum()
