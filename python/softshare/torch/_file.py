"""A module's quantized weights and its prior in a compressed model file, and back into a module.

The file is the one :func:`softshare.compress.write_file` writes (docs/format.md);
this module reaches it through :mod:`softshare._modelfile`, never through the
compression recipe.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .._assign import quantize_layers
from .._modelfile import ModelFile, read_model, write_model
from .prior import MixturePrior

if TYPE_CHECKING:
    from .._mixture import Mixture

__all__ = ["load_compressed", "save_compressed"]


def _weights(module: nn.Module, prior: MixturePrior | None = None) -> dict[str, nn.Parameter]:
    """The module's parameters by name, leaving out those of every MixturePrior (and ``prior``)."""
    own = {id(p) for m in module.modules() if isinstance(m, MixturePrior) for p in m.parameters()}
    if prior is not None:
        own.update(id(p) for p in prior.parameters())
    return {n: p for n, p in module.named_parameters() if id(p) not in own}


def _check_types(module: object, prior: object) -> None:
    if not isinstance(module, nn.Module) or not isinstance(prior, MixturePrior):
        msg = f"need an nn.Module and a MixturePrior, got {type(module).__name__}, {type(prior).__name__}"
        raise TypeError(msg)


def save_compressed(
    path: str | os.PathLike[str], module: nn.Module, prior: MixturePrior, *, use_pi: bool = True
) -> ModelFile:
    """Quantize a module's parameters with its prior and write them, with the prior, to ``path``.

    Every parameter (but the prior's own) becomes the mean of its most
    responsible component, as :func:`softshare.compress.quantize` does; the
    file keeps the parameter names, shapes and dtypes (float32, else float64),
    the codebook of the means in use, and the prior's mixture. It appears
    complete or not at all.

    Parameters
    ----------
    path : str or PathLike
        The file to write (no suffix is added; ``.sws`` is the custom).
    module : torch.nn.Module
        The network; its parameters are read, never changed.
    prior : MixturePrior
        The prior whose (effective) mixture quantizes the weights.
    use_pi : bool, default True
        Weigh components by their mixing proportions (MAP); False: likelihood alone.

    Returns
    -------
    softshare.compress.ModelFile
        What the file holds and the bytes of every part.

    Examples
    --------
    >>> import torch, softshare.torch as sst
    >>> model = torch.nn.Linear(4, 2)
    >>> prior = sst.MixturePrior(mu=[0.0, 0.3], log_var=[-6.0, -6.0], logit=[1.0, 0.0])
    >>> sst.save_compressed("model.sws", model, prior).file_bytes  # doctest: +SKIP
    """
    _check_types(module, prior)
    layers = {}
    for name, p in _weights(module, prior).items():
        t = p.detach().cpu()
        if t.is_complex() or not t.is_floating_point():
            msg = f"parameter {name!r} has dtype {t.dtype}: only real floating-point weights"
            raise TypeError(msg)
        layers[name] = (t if t.dtype in (torch.float32, torch.float64) else t.double()).numpy()
    mixture = prior.mixture()
    book, indices, float64 = quantize_layers(layers, mixture, use_pi=use_pi)
    return write_model(path, book, dict(indices), float64, mixture)


def load_compressed(
    path: str | os.PathLike[str], module: nn.Module, prior: MixturePrior | None = None
) -> Mixture | None:
    """Load a file's quantized weights into a module of the same architecture.

    Names and shapes must match exactly: every parameter of ``module`` (but
    those of its MixturePriors) is in the file with its shape, and the file
    holds nothing else. Values are copied into the parameters in place (their
    device and dtype kept).

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
        mismatched parameters), the prior's size differs from the file's
        mixture, or the file is not a valid compressed model file.
    """
    contents = read_model(path)
    params = _weights(module, prior)
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    stored = {n: tuple(i.shape) for n, i in contents.indices.items()}
    problems = []
    if missing := sorted(set(shapes) - set(stored)):
        problems.append(f"missing from the file: {missing[:10]}")
    if unexpected := sorted(set(stored) - set(shapes)):
        problems.append(f"not in the module: {unexpected[:10]}")
    wrong = [
        f"{n}: file {stored[n]}, module {shapes[n]}"
        for n in shapes
        if stored.get(n, shapes[n]) != shapes[n]
    ]
    if wrong:
        problems.append(f"shapes differ: {wrong[:10]}")
    mixture = contents.mixture
    if prior is not None and (mixture is None or mixture.n_components != prior.n_components):
        have = "no mixture" if mixture is None else f"{mixture.n_components} components"
        problems.append(f"the prior has {prior.n_components} components, the file {have}")
    if problems:
        msg = f"{os.fspath(path)} does not fit the module: " + "; ".join(problems)
        raise ValueError(msg)
    layers = contents.layers()
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(layers[name])))
        if prior is not None and mixture is not None:
            for param, values in (
                (prior.mu, mixture.mu),
                (prior.log_var, mixture.log_var),
                (prior.logit, mixture.logit),
            ):
                param.copy_(torch.tensor(np.array(values), dtype=param.dtype))
    return mixture
