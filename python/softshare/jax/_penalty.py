"""The penalty of a parameter pytree in JAX: :func:`penalty`, checks and eager errors."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._inputs import as_lam, not_finite_error, thread_request
from .._mixture import Mixture, check_component_shapes
from ._ffi import default_float, penalty_flat
from ._tree import kernel_leaf, leaves_of, message_name

__all__ = ["penalty"]


def penalty(
    params: Any,
    mu: Any,
    log_var: Any,
    logit: Any,
    lam: Any = 1.0,
    *,
    n_threads: int | None = None,
) -> jax.Array:
    """Soft weight-sharing penalty ``lam * Omega`` of every leaf of ``params``, for JAX.

    One native pass (the kernel of :func:`softshare.penalty`, called through
    the XLA FFI) computes the value and every gradient; ``jax.grad`` and
    ``jax.value_and_grad`` hand out those gradients (times the cotangent)
    without a second pass. Works eagerly and under ``jax.jit``, ``jax.grad``
    and ``jax.vmap`` (over the weights, the mixture, ``lam``, or several at
    once); the numbers are ``softshare.penalty``'s, bit for bit, for the same
    inputs. Reverse mode only (``jax.custom_vjp``): no ``jax.jvp``/``jacfwd``.

    Parameters
    ----------
    params : pytree of arrays
        The weights: any pytree (a Flax or Equinox parameter tree, a dict, a
        list, one array). All leaves are one set under one mixture; none is
        concatenated. float32 and float64 leaves are used as they are; other
        real dtypes (bfloat16, float16, integers) become the default float
        dtype, and their gradient is cast back.
    mu, log_var, logit : array_like, shape (M,)
        The mixture: component means, log-variances and mixing logits
        (float32 or float64; the kernel computes in float64 from them).
    lam : float or array_like of shape (), default 1.0
        Penalty strength, finite and >= 0. A traced 0-d array: a new ``lam``
        does not compile anew, and ``jax.grad`` gives ``d/d lam = Omega``.
    n_threads : int or None, default None
        As in :func:`softshare.penalty` (static: a new value compiles anew).

    Returns
    -------
    jax.Array, shape ()
        ``lam * Omega``, of the default float dtype: float64 with
        ``jax_enable_x64``, else float32 (the float64 value rounded). Gradients
        come in each argument's own dtype: ``grad_w`` the kernel's, exactly;
        ``mu``, ``log_var``, ``logit`` and ``lam`` ``softshare.penalty``'s
        float64 gradients rounded to theirs (float32 where x64 is off).

    Raises
    ------
    TypeError
        If a leaf or a mixture array is not real-valued, or ``lam`` is not a
        real number (a concrete ``lam``).
    ValueError
        Where the values are known (an eager call, or a concrete ``lam``): as
        :func:`softshare.penalty` (non-finite weights naming the leaf and its
        index, a bad mixture or ``lam``, an overflow). If the mixture arrays
        are not 1-D of one length M >= 1 (always, also under ``jit``).
    jax.errors.JaxRuntimeError
        Under ``jit`` or a transformation, for bad values: the same messages,
        raised when the result is computed (``block_until_ready`` or a read),
        never a crash. Inside ``vmap``, for arguments whose batch dimensions
        disagree (vmap itself refuses mismatched sizes first).

    Notes
    -----
    JAX dispatches CPU work asynchronously; the handler never touches Python.
    It runs the kernel's OpenMP threads beside XLA's own thread pool: pass
    ``n_threads=1`` where other computations run concurrently on every core.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, softshare.jax as ssj
    >>> params = {"w": jnp.linspace(-0.3, 0.3, 7), "b": jnp.zeros(3)}
    >>> mu, log_var, logit = jnp.array([0.0, 0.2]), jnp.array([-6.0, -4.0]), jnp.array([1.0, 0.0])
    >>> value, grads = jax.value_and_grad(ssj.penalty)(params, mu, log_var, logit, 1e-3)
    >>> grads["w"].shape
    (7,)
    """
    threads = thread_request(n_threads)
    pairs, _ = leaves_of(params)
    paths = [path for path, _ in pairs]
    leaves = [kernel_leaf(leaf, path) for path, leaf in pairs]
    mixture = [
        _mixture_array(n, x) for n, x in zip(("mu", "log_var", "logit"), (mu, log_var, logit))
    ]
    check_component_shapes(*(p.shape for p in mixture))
    lam_a = _lam_array(lam)
    names = "\n".join(message_name(p) for p in paths)
    flat = [jnp.reshape(w, (-1,)) for w in leaves]
    value: jax.Array
    if any(isinstance(x, jax.core.Tracer) for x in (lam_a, *mixture, *flat)):
        value = penalty_flat(threads, names, lam_a, *mixture, *flat)
        return value
    try:  # an eager call: its errors now, as softshare.penalty's
        value = jax.block_until_ready(penalty_flat(threads, names, lam_a, *mixture, *flat))
    except jax.errors.JaxRuntimeError as err:
        raise _eager_error(err, paths, leaves, mixture) from None
    return value


def _mixture_array(name: str, x: Any) -> Any:
    """A mixture parameter as a float32/float64 JAX array (other reals: the default float)."""
    arr = jnp.asarray(x)
    if not any(jnp.issubdtype(arr.dtype, k) for k in (jnp.floating, jnp.integer, jnp.bool_)):
        msg = f"{name} must be real numbers, got an array of dtype {arr.dtype}"
        raise TypeError(msg)
    if arr.dtype in (jnp.float32, jnp.float64):
        return arr
    return arr.astype(default_float())


def _lam_array(lam: Any) -> Any:
    """``lam`` as a 0-d array: checked now where it is a Python or NumPy number."""
    if isinstance(lam, jax.Array):
        if lam.shape != ():
            msg = f"lam must be a scalar (a 0-d array), got shape {lam.shape}"
            raise ValueError(msg)
        if not jnp.issubdtype(lam.dtype, jnp.floating):
            msg = f"lam must be a real number, got an array of dtype {lam.dtype}"
            raise TypeError(msg)
        return lam
    if isinstance(lam, np.ndarray) and lam.shape == ():
        lam = lam[()]
    return jnp.asarray(as_lam(lam), dtype=default_float())


_PREFIX = "softshare.jax.penalty: "


def _eager_error(
    err: Exception, paths: list[Any], leaves: list[Any], mixture: list[Any]
) -> Exception:
    """The error of a failed eager call, as ``softshare.penalty`` raises it.

    The handler's message says what is wrong; the mixture and the weights are
    checked again here for the exact message (the leaf's index as a tuple).
    """
    text = str(err)
    found = re.search(re.escape(_PREFIX) + r"(.*)", text, flags=re.DOTALL)
    if found is None:
        return err
    message = found.group(1).strip()
    if "RESOURCE_EXHAUSTED" in text:
        return MemoryError(message)
    if message.startswith(("mu", "log_var", "logit")):
        Mixture(*(np.asarray(p) for p in mixture))  # raises its own error
    if " must be finite: found " in message:
        for path, leaf in zip(paths, leaves):
            host = np.asarray(leaf)
            bad = np.flatnonzero(~np.isfinite(host))
            if bad.size:
                index = tuple(int(i) for i in np.unravel_index(int(bad[0]), host.shape))
                return not_finite_error(message_name(path), host.reshape(-1)[bad[0]], index)
    return ValueError(message)
