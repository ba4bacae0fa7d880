"""JAX adapter: the soft weight-sharing penalty inside ``jit``, ``grad`` and ``vmap``, and the recipe.

Optional: needs ``jax`` (``pip install softshare[jax]``); ``import softshare``
never imports this package (nor jax).

>>> import jax, jax.numpy as jnp, softshare.jax as ssj
>>> params = {"w": jnp.linspace(-0.5, 0.5, 101)}
>>> mu, log_var, logit = jnp.array([0.0, 0.3]), jnp.array([-6.0, -6.0]), jnp.array([1.0, 0.0])
>>> loss, grads = jax.jit(jax.value_and_grad(ssj.penalty))(params, mu, log_var, logit, 1e-3)

:func:`penalty` is a ``jax.custom_vjp`` whose forward pass calls the native
kernel of :func:`softshare.penalty` once, through an XLA FFI handler compiled
into ``softshare._core`` (``csrc/jax_ffi.cpp``, registered for the CPU
platform when this package is imported): value, ``grad_w`` and the component
sums in one pass, on the weights' own buffers. The backward pass scales the
saved gradients. The recipe's steps for a parameter pytree,
:func:`init_mixture`, :func:`quantize`, :func:`write_file` and
:func:`read_file`, run :mod:`softshare.compress` on host copies of the leaves.

Modules: :mod:`softshare.jax._ffi` (the FFI call and its VJP),
:mod:`softshare.jax._penalty` (:func:`penalty`: checks, eager errors),
:mod:`softshare.jax._tree` (leaves, names, dtypes) and
:mod:`softshare.jax._recipe` (the recipe).
"""

from __future__ import annotations

from ._penalty import penalty
from ._recipe import MixtureLike, as_mixture, init_mixture, quantize, read_file, write_file

__all__ = [
    "MixtureLike",
    "as_mixture",
    "init_mixture",
    "penalty",
    "quantize",
    "read_file",
    "write_file",
]
