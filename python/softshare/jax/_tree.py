"""A parameter pytree's leaves: their names, kernel dtypes and host copies."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ._ffi import default_float

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["Leaves", "host_arrays", "kernel_leaf", "leaves_of", "message_name", "path_name"]

#: One pytree's leaves: (key path, leaf) pairs, and its structure.
Leaves = tuple[list[tuple[Any, Any]], Any]


def leaves_of(params: Any) -> Leaves:
    """Every leaf of ``params`` (any pytree; an array is a tree of one leaf) with its key path."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(params)
    return list(pairs), treedef


def path_name(path: Any) -> str:
    """A leaf's name in a file: its keys joined by dots (``"Dense_0.kernel"``).

    The leaf of a bare array (an empty path) is ``"params"``.
    """
    parts = []
    for key in path:
        for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return ".".join(parts) or "params"


def message_name(path: Any) -> str:
    """A leaf's name in messages: ``params`` and its key path (``params['Dense_0']['kernel']``)."""
    return "params" + str(jax.tree_util.keystr(tuple(path)))


def kernel_leaf(leaf: Any, path: Any) -> Any:
    """The leaf as a JAX array of a kernel dtype.

    float32 and float64 are used as they are; other real dtypes (bfloat16,
    float16, integers, bool) become the default float dtype (float64 with x64
    enabled, float32 otherwise), as ``softshare.penalty`` makes them float64;
    the gradient reaches the leaf in its own dtype through that conversion.

    Raises
    ------
    TypeError
        If the leaf is not an array of real numbers (complex, object, strings).
    """
    try:
        arr = jnp.asarray(leaf)
    except (TypeError, ValueError) as err:
        msg = f"{message_name(path)} could not be read as a numeric array: {err}"
        raise TypeError(msg) from err
    _check_real(arr.dtype, path)
    if arr.dtype in (jnp.float32, jnp.float64):
        return arr
    return arr.astype(default_float())


def _check_real(dtype: Any, path: Any) -> None:
    """TypeError unless ``dtype`` is a real (floating, integer or bool) dtype."""
    if not any(jnp.issubdtype(dtype, k) for k in (jnp.floating, jnp.integer, jnp.bool_)):
        msg = f"{message_name(path)} must hold real numbers, got an array of dtype {dtype}"
        raise TypeError(msg)


def host_arrays(params: Any) -> dict[str, NDArray[Any]]:
    """The leaves as NumPy arrays (copies from the device), by :func:`path_name`.

    Raises
    ------
    ValueError
        If two leaves have the same name (``{"a.b": x, "a": {"b": y}}``).
    TypeError
        If a leaf is not an array of real numbers.

    Notes
    -----
    bfloat16 and float16 leaves become float32 (NumPy has no bfloat16 of its
    own, and the file stores float32 or float64).
    """
    pairs, _ = leaves_of(params)
    out: dict[str, NDArray[Any]] = {}
    for path, leaf in pairs:
        name = path_name(path)
        if name in out:
            msg = f"two leaves of params are both named {name!r} (keys joined by dots)"
            raise ValueError(msg)
        arr = np.asarray(leaf)
        _check_real(arr.dtype, path)
        if jnp.issubdtype(arr.dtype, jnp.floating) and arr.dtype.itemsize < 4:
            arr = arr.astype(np.float32)  # bfloat16, float16: float32 in the file
        out[name] = arr
    return out
