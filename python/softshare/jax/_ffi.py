"""The native pass as a JAX primitive: the XLA FFI call and its ``jax.custom_vjp``.

``_core.jax_penalty_handler()`` (``csrc/jax_ffi.cpp``) is registered once, at
import, as the CPU target ``softshare_penalty``. :func:`penalty_flat` calls it
on flat float32/float64 weight arrays: the forward pass computes the value and
every gradient in the one native pass and keeps the gradients; the backward
pass only scales them by the incoming cotangent. Under ``vmap`` the call runs
with ``vmap_method="expand_dims"``: the handler checks every argument's batch
dimensions against the call's (equal or 1) and runs one pass per element.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import _core

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["TARGET", "default_float", "penalty_flat"]

#: The name the handler is registered under (platform "cpu").
TARGET = "softshare_penalty"

if not hasattr(jax, "ffi"):  # pragma: no cover - jax before 0.4.38
    msg = f"softshare.jax needs jax >= 0.6.0 (pip install softshare[jax]), found {jax.__version__}"
    raise ImportError(msg)
jax.ffi.register_ffi_target(TARGET, _core.jax_penalty_handler(), platform="cpu")


def default_float() -> np.dtype[Any]:
    """JAX's default float dtype: float64 with x64 enabled, float32 otherwise."""
    real: np.dtype[Any] = np.dtype(jax.dtypes.canonicalize_dtype(np.float64))
    return real


def _call(
    n_threads: int, names: str, lam: Any, mu: Any, log_var: Any, logit: Any, leaves: Sequence[Any]
) -> list[Any]:
    """One FFI call: ``[value, sum_l, grad_mu, grad_log_var, grad_logit, *grad_w]``.

    ``value`` and ``sum_l`` (the weights' log-likelihood) are of the default
    float dtype; every gradient has the dtype of its argument.
    """
    real = default_float()
    results = [
        jax.ShapeDtypeStruct((), real),
        jax.ShapeDtypeStruct((), real),
        *(jax.ShapeDtypeStruct(p.shape, p.dtype) for p in (mu, log_var, logit)),
        *(jax.ShapeDtypeStruct(w.shape, w.dtype) for w in leaves),
    ]
    call = jax.ffi.ffi_call(TARGET, results, vmap_method="expand_dims")
    out = call(lam, mu, log_var, logit, *leaves, n_threads=np.int64(n_threads), names=names)
    return list(out)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def penalty_flat(
    n_threads: int, names: str, lam: Any, mu: Any, log_var: Any, logit: Any, *leaves: Any
) -> Any:
    """``lam * Omega`` of flat float32/float64 weight arrays under the mixture.

    ``n_threads`` is :func:`softshare._inputs.thread_request`'s encoding and
    ``names`` the arrays' names for messages, one a line (both static: a change
    compiles anew, a new ``lam`` does not). Arguments are checked by the caller
    (:func:`softshare.jax.penalty`); values by the handler.
    """
    return _call(n_threads, names, lam, mu, log_var, logit, leaves)[0]


def _forward(
    n_threads: int, names: str, lam: Any, mu: Any, log_var: Any, logit: Any, *leaves: Any
) -> tuple[Any, tuple[Any, ...]]:
    value, sum_l, *grads = _call(n_threads, names, lam, mu, log_var, logit, leaves)
    return value, (lam, sum_l, *grads)


def _backward(_n_threads: int, _names: str, saved: tuple[Any, ...], ct: Any) -> tuple[Any, ...]:
    """The cotangent times each saved gradient, in that gradient's dtype.

    ``d value / d lam`` is ``Omega = -sum_l``. The cotangent is rounded to each
    gradient's dtype first: for a cotangent of 1 (``grad`` of the penalty
    itself) every gradient is the forward pass's, bit for bit.
    """
    lam, sum_l, *grads = saved
    grad_lam = (ct * -sum_l).astype(jnp.result_type(lam))
    return (grad_lam, *(ct.astype(g.dtype) * g for g in grads))


penalty_flat.defvjp(_forward, _backward)
