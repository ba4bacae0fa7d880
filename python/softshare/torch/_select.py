"""Which tensors a prior applies to: a module's parameters that ``penalize`` selects, or the given ones."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from torch import Tensor, nn

if TYPE_CHECKING:
    from ._checks import TensorOrTensors

__all__ = ["selected"]


def selected(
    model_or_params: nn.Module | TensorOrTensors,
    penalize: str | Callable[[str, Tensor], bool],
    own: set[int],
) -> list[tuple[str, Tensor]]:
    """``(name, tensor)`` of what a prior applies to.

    A module's parameters but those whose ``id`` is in ``own``: all of them
    (``penalize="all"``), those of 2 or more dimensions (``"weights"``) or those
    ``penalize(name, param)`` is true for; tensors given directly are all
    taken, named "0", "1", ... in their order.
    """
    if isinstance(model_or_params, Tensor):
        return [("0", model_or_params)]
    if not isinstance(model_or_params, nn.Module):
        return [(str(i), p) for i, p in enumerate(model_or_params)]
    named = model_or_params.named_parameters()
    if callable(penalize):
        return [(n, p) for n, p in named if id(p) not in own and penalize(n, p)]
    every = penalize == "all"
    return [(n, p) for n, p in named if id(p) not in own and (every or p.dim() >= 2)]
