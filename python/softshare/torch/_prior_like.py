"""What the prior's helper modules read of a ``MixturePrior``, as a protocol they can import.

:mod:`._add_grad` and :mod:`._overlap` take the prior as an argument and
``prior.py`` imports them: typing the argument as this protocol, not as the
class, keeps their imports pointing one way (no cycle, type-only included).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch import Tensor, nn

    from ..compress._hyperprior import HyperPrior
    from ._checks import TensorOrTensors

__all__ = ["PriorLike"]


class PriorLike(Protocol):
    """The parts of :class:`softshare.torch.MixturePrior` that its penalty's helpers use."""

    @property
    def mu(self) -> nn.Parameter: ...

    @property
    def log_var(self) -> nn.Parameter: ...

    @property
    def logit(self) -> nn.Parameter: ...

    @property
    def zero_component(self) -> bool: ...

    @property
    def pi_zero(self) -> float | None: ...

    @property
    def hyperprior(self) -> HyperPrior | None: ...

    @property
    def split_work(self) -> bool: ...

    def __call__(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        lam: float = 1.0,
        *,
        hyper_lam: float | None = None,
    ) -> Tensor: ...

    def effective(self) -> tuple[Tensor, Tensor, Tensor]: ...

    def hyperprior_penalty(self) -> Tensor: ...

    def penalized_parameters(
        self, model_or_params: nn.Module | TensorOrTensors
    ) -> list[Tensor]: ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...
