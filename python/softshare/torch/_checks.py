"""Checks of the torch adapter's inputs, shared by the plain and the overlapped penalty."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

import torch
from torch import Tensor

from .._inputs import as_lam
from .._mixture import check_component_shapes

__all__ = ["BACKENDS", "TensorOrTensors", "checked_inputs", "layout_error"]

#: Backends of the op: "auto" picks "native" where it applies, else "torch".
BACKENDS = ("auto", "native", "torch")

#: One tensor, or any iterable of tensors (``model.parameters()``).
TensorOrTensors = Union[Tensor, Iterable[Tensor]]


def checked_inputs(
    weights: TensorOrTensors,
    mu: Any,
    log_var: Any,
    logit: Any,
    lam: object,
    backend: str,
) -> tuple[list[Tensor], float]:
    """The weights as a list and ``lam`` as a float, after every check of the arguments.

    Raises ``ValueError`` for an unknown backend, mixture tensors that are not
    1-D of one length, tensors on more than one device or a bad ``lam``, and
    ``TypeError`` for what is not a dense (strided, not nested) real
    floating-point tensor.
    """
    ws = [weights] if isinstance(weights, Tensor) else list(weights)
    if backend not in BACKENDS:
        msg = f"backend must be one of {BACKENDS}, got {backend!r}"
        raise ValueError(msg)
    _check_dtypes_and_devices(ws, mu, log_var, logit)
    check_component_shapes(
        tuple(mu.shape), tuple(log_var.shape), tuple(logit.shape), kind="tensors"
    )
    return ws, as_lam(lam)


def _name(k: int, n_weights: int) -> str:
    """How messages name the k-th of the weights followed by mu, log_var and logit."""
    return f"weights[{k}]" if k < n_weights else ("mu", "log_var", "logit")[k - n_weights]


def layout_error(name: str, t: Tensor) -> TypeError:
    """The error for a tensor that is not dense: sparse, mkldnn, nested."""
    if t.is_nested:
        kind, hint = "nested", "pass its pieces (t.unbind()) instead"
    else:
        kind, hint = str(t.layout).replace("torch.", "").lstrip("_"), "convert it (t.to_dense())"
    return TypeError(f"{name} is a {kind} tensor: softshare takes dense (strided) tensors; {hint}")


def _check_dtypes_and_devices(ws: list[Any], mu: Any, log_var: Any, logit: Any) -> None:
    """Real floating-point tensors, all on one device (TypeError / ValueError otherwise).

    One pass, no strings unless something is wrong: it runs on every step.
    """
    tensors = [*ws, mu, log_var, logit]
    for k, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            msg = f"{_name(k, len(ws))} must be a torch.Tensor, got {type(t).__name__}"
            raise TypeError(msg)
        if t.layout is not torch.strided or t.is_nested:
            raise layout_error(_name(k, len(ws)), t)
        if not t.is_floating_point():
            msg = f"{_name(k, len(ws))} must be a real floating-point tensor, got dtype {t.dtype}"
            raise TypeError(msg)
    if mu.is_cpu and all(t.is_cpu for t in tensors):  # the common case, without device objects
        return
    device = mu.device
    for k, t in enumerate(tensors):
        if t.device != device:
            msg = (
                f"all tensors must be on one device: {_name(k, len(ws))} is on {t.device}, "
                f"mu on {device}"
            )
            raise ValueError(msg)
