"""A module's quantized weights and its prior in a compressed model file, and back into a module.

The file is the one :func:`softshare.compress.write_file` writes (docs/format.md):
the state's :class:`~softshare.compress.QuantizedNetwork`, the module's other
parameters and buffers stored exactly beside it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..compress._format.model import ModelFile, read_model, write_model
from ._quantized import QuantizedState, check_flag, with_exact, write_layer
from .prior import MixturePrior

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .._mixture import Mixture

__all__ = ["load_compressed", "save_compressed"]


def _weights(module: nn.Module, prior: MixturePrior | None = None) -> dict[str, nn.Parameter]:
    """The module's parameters by name, leaving out those of every MixturePrior (and ``prior``)."""
    own = {id(p) for m in module.modules() if isinstance(m, MixturePrior) for p in m.parameters()}
    if prior is not None:
        own.update(id(p) for p in prior.parameters())
    return {n: p for n, p in module.named_parameters() if id(p) not in own}


def _check_types(module: object, prior: object, state: object) -> None:
    if not isinstance(module, nn.Module):
        msg = f"module must be an nn.Module, got {type(module).__name__}"
        raise TypeError(msg)
    if prior is not None and not isinstance(prior, MixturePrior):
        msg = f"prior must be a MixturePrior, got {type(prior).__name__}"
        raise TypeError(msg)
    if state is not None and not isinstance(state, QuantizedState):
        msg = f"state must be a QuantizedState (from quantize_ or requantize_), got {type(state).__name__}"
        raise TypeError(msg)
    if prior is None and state is None:
        msg = "save_compressed needs the prior that quantizes the module, or the state quantize_ returned"
        raise ValueError(msg)


def _persistent_buffers(module: nn.Module) -> dict[str, Tensor]:
    """The buffers ``state_dict`` keeps (non-persistent ones are left out), by name."""
    keys = set(module.state_dict(keep_vars=True))
    return {n: b for n, b in module.named_buffers() if n in keys}


def _exact_array(name: str, t: Tensor) -> NDArray[Any]:
    """A tensor's values as a NumPy array to store exactly; TypeError for a dtype NumPy lacks."""
    if t.device.type == "meta":
        msg = f"tensor {name!r} is on the meta device: it holds no values to store"
        raise ValueError(msg)
    if t.dtype == torch.bfloat16 or t.is_complex() or t.layout != torch.strided:
        msg = f"tensor {name!r} ({t.dtype}, {t.layout}) cannot be stored exactly in a .sws file"
        raise TypeError(msg)
    return t.detach().cpu().contiguous().numpy().copy()


def save_compressed(
    path: str | os.PathLike[str],
    module: nn.Module,
    prior: MixturePrior | None = None,
    *,
    state: QuantizedState | None = None,
    use_pi: bool = True,
    buffers: bool = True,
    mixture: bool = True,
) -> ModelFile:
    """Write a module, its penalised weights quantized, to a compressed model file at ``path``.

    With ``state`` (what :meth:`MixturePrior.quantize_` or ``requantize_``
    returned) the file holds that state's codebook and indices as they are:
    after ``quantize_`` or ``requantize_`` exactly the weights the module
    holds, and nothing is assigned again. Without it the prior assigns every
    penalised weight to its most responsible component (one pass; the module
    is not changed). Every other parameter (those the prior does not
    penalise, e.g. biases with ``penalize="weights"``) and, with ``buffers``,
    every persistent buffer (BatchNorm's running statistics) is stored
    exactly, so that :func:`load_compressed` restores the module. The file
    keeps the prior's mixture; it appears complete or not at all.

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added; ``.sws`` is the custom).
    module : torch.nn.Module
        The network; read, never changed.
    prior : MixturePrior, optional
        The prior that penalises (and, without ``state``, quantizes) the
        module's weights; its mixture is stored. Needed unless ``state`` is given.
    state : QuantizedState, optional
        The quantization to store as it is.
    use_pi : bool, default True
        Without ``state``: MAP assignment (True) or likelihood alone.
    buffers : bool, default True
        Store the module's persistent buffers too (False: leave them out).
    mixture : bool, default True
        Store the prior's mixture (24 bytes a component; False: leave it out,
        and :func:`load_compressed` returns None).

    Returns
    -------
    softshare.compress.ModelFile
        What the file holds (``network``) and the bytes of every part.

    Raises
    ------
    TypeError
        If an argument has the wrong type, or a tensor to store exactly has a
        dtype the file cannot hold (bfloat16, complex).
    ValueError
        If neither ``prior`` nor ``state`` is given, the state's parameters
        are not the module's, or a weight is not finite.

    Examples
    --------
    >>> import torch, softshare.torch as sst
    >>> model = torch.nn.Linear(4, 2)
    >>> prior = sst.MixturePrior(mu=[0.0, 0.3], log_var=[-6.0, -6.0], logit=[1.0, 0.0])
    >>> state = prior.quantize_(model)
    >>> sst.save_compressed("model.sws", model, prior, state=state).file_bytes  # doctest: +SKIP
    """
    _check_types(module, prior, state)
    check_flag("buffers", buffers)
    check_flag("mixture", mixture)
    params = _weights(module, prior)
    if state is None:
        assert prior is not None
        state = prior.snapshot(module, use_pi=use_pi)
    missing = sorted(set(state.network.indices) - set(params))
    if missing:
        msg = f"the state's parameters {missing[:5]} are not parameters of the module"
        raise ValueError(msg)
    exact = {n: _exact_array(n, p) for n, p in params.items() if n not in state.network.indices}
    if buffers:
        exact.update((n, _exact_array(n, b)) for n, b in _persistent_buffers(module).items())
    network = with_exact(state, exact, prior.mixture() if prior is not None else None)
    if not mixture:
        network = dataclasses.replace(network, mixture=None)
    return write_model(path, network)


def load_compressed(
    path: str | os.PathLike[str], module: nn.Module, prior: MixturePrior | None = None
) -> Mixture | None:
    """Load a file into a module of the same architecture: weights, exact tensors, buffers.

    Names and shapes must match exactly: every parameter of ``module`` (but
    those of its MixturePriors) is in the file (quantized or stored exactly)
    with its shape, and everything in the file is a parameter or a buffer of
    the module. Buffers the file does not hold are left as they are. Values
    are copied in place (device and dtype kept).

    Parameters
    ----------
    path : str or PathLike
        A file :func:`save_compressed` (or ``softshare.compress.write_file``) wrote.
    module : torch.nn.Module
        The network to load into.
    prior : MixturePrior, optional
        Also set this prior's parameters to the file's mixture (same number of
        components); with ``zero_component`` or ``pi_zero`` its pinned values stay.

    Returns
    -------
    softshare.Mixture or None
        The mixture the file keeps, or None.

    Raises
    ------
    ValueError
        If names or shapes differ (listing the missing, unexpected and
        mismatched tensors), the module is on the meta device, the prior's
        size differs from the file's mixture, or the file is not a valid
        compressed model file.
    """
    contents = read_model(path)
    params = _weights(module, prior)
    targets: dict[str, Tensor] = {**_persistent_buffers(module), **params}
    network = contents.network
    stored = {n: tuple(i.shape) for n, i in network.indices.items()}
    stored.update((n, tuple(a.shape)) for n, a in network.exact.items())
    problems = []
    if missing := sorted(set(params) - set(stored)):
        problems.append(f"missing from the file: {missing[:10]}")
    if unexpected := sorted(set(stored) - set(targets)):
        problems.append(f"not in the module: {unexpected[:10]}")
    wrong = [
        f"{n}: file {shape}, module {tuple(targets[n].shape)}"
        for n, shape in stored.items()
        if n in targets and tuple(targets[n].shape) != shape
    ]
    if wrong:
        problems.append(f"shapes differ: {wrong[:10]}")
    if meta := [n for n in stored if n in targets and targets[n].device.type == "meta"][:5]:
        problems.append(f"{meta} are on the meta device (no memory to load into)")
    mixture = contents.mixture
    if prior is not None and (mixture is None or mixture.n_components != prior.n_components):
        have = "no mixture" if mixture is None else f"{mixture.n_components} components"
        problems.append(f"the prior has {prior.n_components} components, the file {have}")
    if problems:
        msg = f"{os.fspath(path)} does not fit the module: " + "; ".join(problems)
        raise ValueError(msg)
    with torch.no_grad():
        for name in network.indices:
            write_layer(targets[name], network, name)
        for name, arr in network.exact.items():
            targets[name].copy_(torch.from_numpy(np.array(arr, order="C")))  # 0-d stays 0-d
        if prior is not None and mixture is not None:
            for param, values in (
                (prior.mu, mixture.mu),
                (prior.log_var, mixture.log_var),
                (prior.logit, mixture.logit),
            ):
                param.copy_(torch.tensor(np.array(values), dtype=param.dtype))
    return mixture
