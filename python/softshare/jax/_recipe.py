"""The compression recipe for a JAX parameter pytree: a starting mixture, quantization, the file.

Each step copies the leaves to the host and runs :mod:`softshare.compress`'s own
function on them (the native assignment among them): :func:`init_mixture`,
:func:`quantize`, :func:`write_file` and :func:`read_file`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import compress
from .._mixture import Mixture
from ._tree import host_arrays, leaves_of, path_name

if TYPE_CHECKING:
    import os

    from ..compress import ModelFile

__all__ = ["MixtureLike", "as_mixture", "init_mixture", "quantize", "read_file", "write_file"]

#: A mixture: a :class:`softshare.Mixture`, ``(mu, log_var, logit)`` arrays, or a
#: mapping with those three keys (JAX arrays, e.g. trained alongside the network).
MixtureLike = Any


def as_mixture(mixture: MixtureLike) -> Mixture:
    """A :class:`softshare.Mixture` of ``mixture`` (copied to the host).

    Raises
    ------
    TypeError, ValueError
        As :class:`softshare.Mixture` for bad arrays; TypeError for anything
        that is not a mixture, a triple or such a mapping.
    """
    if isinstance(mixture, Mixture):
        return mixture
    if isinstance(mixture, Mapping) and {"mu", "log_var", "logit"} <= set(mixture):
        parts = (mixture["mu"], mixture["log_var"], mixture["logit"])
    elif isinstance(mixture, (tuple, list)) and len(mixture) == 3:
        parts = tuple(mixture)
    else:
        msg = (
            "mixture must be a softshare.Mixture, a (mu, log_var, logit) triple or a mapping "
            f"with keys 'mu', 'log_var' and 'logit', got {type(mixture).__name__}"
        )
        raise TypeError(msg)
    return Mixture(*(np.asarray(p) for p in parts))


def init_mixture(params: Any, n_components: int = 17, **options: Any) -> Mixture:
    """A mixture to start retraining from, laid over trained parameters.

    :func:`softshare.compress.init_mixture` over every leaf of ``params``
    (host copies, not concatenated).

    Parameters
    ----------
    params : pytree of arrays
        The trained parameters (the leaves to be penalized).
    n_components : int, default 17
        Number of components, the zero component included.
    **options
        ``zero_component``, ``pi_zero``, ``spread``, ``sigma``, ``sigma_std``:
        as :func:`softshare.compress.init_mixture`.

    Returns
    -------
    softshare.Mixture
        Its ``mu``, ``log_var`` and ``logit`` are the starting arrays
        (``jnp.asarray(mix.mu, jnp.float32)`` for a float32 training loop).

    Raises
    ------
    ValueError
        As :func:`softshare.compress.init_mixture` (no weights, a weight that
        is not finite, an option out of range).
    """
    return compress.init_mixture(list(host_arrays(params).values()), n_components, **options)


def quantize(params: Any, mixture: MixtureLike, *, use_pi: bool = True) -> Any:
    """Every weight set to the mean of its most responsible component.

    :func:`softshare.compress.quantize` (the native assignment, ties to the
    lowest index) on host copies of the leaves.

    Parameters
    ----------
    params : pytree of arrays
        The parameters.
    mixture : softshare.Mixture, (mu, log_var, logit) or mapping
        The (trained) mixture.
    use_pi : bool, default True
        Weigh the components by their mixing proportions (MAP); False picks
        the nearest component in likelihood alone.

    Returns
    -------
    pytree
        ``params``'s structure, each leaf a JAX array of its dtype and shape
        holding the quantized values (exact zeros for a zero component).
    """
    mix = as_mixture(mixture)
    pairs, treedef = leaves_of(params)
    hosts = host_arrays(params)
    quantized, _ = compress.quantize(list(hosts.values()), mix, use_pi=use_pi)
    leaves = [jnp.asarray(q, dtype=jnp.result_type(leaf)) for q, (_, leaf) in zip(quantized, pairs)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def write_file(
    path: str | os.PathLike[str],
    params: Any,
    mixture: MixtureLike,
    *,
    use_pi: bool = True,
    keep_mixture: bool = False,
) -> ModelFile:
    """Quantize ``params`` with ``mixture`` and write the compressed model file (``.sws``).

    :func:`softshare.compress.write_file` of the leaves, each named by its key
    path joined by dots (``{"Dense_0": {"kernel": k}}`` is ``"Dense_0.kernel"``,
    a bare array ``"params"``); ``softshare inspect`` and
    :func:`softshare.compress.read_file` read it, :func:`read_file` back into
    a pytree.

    Parameters
    ----------
    path : str or PathLike
        The file to write (complete or not at all).
    params : pytree of arrays
        The parameters, quantized here (already quantized ones are unchanged
        by it).
    mixture : softshare.Mixture, (mu, log_var, logit) or mapping
        The mixture to quantize with.
    use_pi : bool, default True
        As in :func:`quantize`.
    keep_mixture : bool, default False
        Also store the mixture (for ``softshare inspect``).

    Returns
    -------
    softshare.compress.ModelFile
        What the file holds and the bytes of its parts.

    Raises
    ------
    ValueError
        If two leaves get the same name, or as
        :func:`softshare.compress.write_file` (a weight that is not finite).
    """
    return compress.write_file(
        path, host_arrays(params), as_mixture(mixture), use_pi=use_pi, keep_mixture=keep_mixture
    )


def read_file(path: str | os.PathLike[str], like: Any) -> Any:
    """The quantized parameters of a file :func:`write_file` wrote, in ``like``'s structure.

    Parameters
    ----------
    path : str or PathLike
        The file.
    like : pytree
        A pytree of the same structure and leaf names (the parameters that
        were written, or a fresh initialisation of the same model).

    Returns
    -------
    pytree
        ``like``'s structure, each leaf a JAX array of the file's values, in
        its dtype (float32 or float64) and the leaf's shape.

    Raises
    ------
    ValueError
        If the file lacks a leaf of ``like`` or holds it in another shape, or
        as :func:`softshare.compress.read_file` (not such a file, corrupt).
    """
    layers = compress.read_file(path)
    pairs, treedef = leaves_of(like)
    leaves = []
    for key_path, leaf in pairs:
        name = path_name(key_path)
        if name not in layers:
            msg = f"{path!s} holds no layer {name!r} (it has {sorted(layers)})"
            raise ValueError(msg)
        if layers[name].shape != np.shape(leaf):
            msg = (
                f"layer {name!r} has shape {layers[name].shape} in the file, {np.shape(leaf)} here"
            )
            raise ValueError(msg)
        leaves.append(jnp.asarray(layers[name]))
    return jax.tree_util.tree_unflatten(treedef, leaves)
