"""``MixturePrior``: a learnable Gaussian-mixture prior over a module's weights."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from .._mixture import Mixture
from ..compress._hyperprior import HyperPrior
from ._add_grad import add_grad
from ._checks import TensorOrTensors
from ._compute import mixture_of
from ._hyper import hyperprior_value
from ._op import penalty
from ._overlap import PendingPenalty, start_prior
from ._recipe import RecipeSteps
from ._select import selected

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["MixturePrior"]


class _SameComponents:
    """A backward pre-hook: refuse a graph made before ``merge_`` changed the prior's components.

    ``merge_`` gives ``mu``, ``log_var`` and ``logit`` new, shorter data in the
    same parameters; a graph kept from before (``retain_graph=True``) would
    hand them gradients of the old length, which autograd accepts silently.
    """

    def __init__(self, prior: MixturePrior) -> None:
        self.prior = prior
        self.generation = prior._generation_now()

    def __call__(self, _grad_outputs: tuple[Tensor, ...]) -> None:
        if self.prior._generation_now() != self.generation:
            msg = (
                "this penalty's graph was made before merge_ changed the prior's components: "
                "compute the penalty again (prior(model, lam)) after merge_"
            )
            raise RuntimeError(msg)


class MixturePrior(RecipeSteps, nn.Module):
    """A learnable Gaussian-mixture prior over a network's weights.

    Besides the penalty (``prior(model, lam)``), the compression recipe's steps
    on a module, in place: :meth:`merge_`, :meth:`quantize_`, :meth:`requantize_`
    (quantized fine-tuning), :meth:`snapshot` and :meth:`compression_report`;
    :meth:`from_weights` lays a starting prior over trained weights.

    Parameters
    ----------
    mu, log_var, logit : array_like or Tensor, shape (M,)
        Initial means, log-variances and mixing logits, held as
        ``nn.Parameter`` (dtype ``torch.get_default_dtype()`` unless a tensor
        with its own float dtype is given).
    zero_component : bool, default False
        Pin component 0's mean at exactly 0 (``mu[0]`` is then ignored and gets
        no gradient).
    pi_zero : float, optional
        Fix component 0's mixing proportion at this value (the other
        proportions are ``(1 - pi_zero) * softmax(logit[1:])``); by default all
        proportions are ``softmax(logit)`` and learnt.
    hyperprior : softshare.compress.HyperPrior, optional
        Gamma priors on the precisions and a Beta prior on pi_zero, added to
        the penalty (times ``lam``'s scale: see ``forward``).
    split_work : bool, default False
        Under DDP (weights replicated on every rank): each rank computes 1/W of
        the penalty; see :func:`softshare.torch.penalty`. Sharded weights
        (FSDP2) need no option: they are detected.
    process_group : ProcessGroup, optional
        The group for ``split_work`` (default: the world).
    penalize : {"all", "weights"} or callable, default "all"
        Which of a module's parameters the prior applies to: all of them,
        those of 2 or more dimensions ("weights": dense and conv kernels,
        not biases or norm scales), or those ``penalize(name, param)`` is
        true for. Tensors passed directly are always penalised. The recipe's
        steps act on the same parameters (``save_compressed`` on all of them).

    Examples
    --------
    >>> prior = MixturePrior.from_mixture(softshare.Mixture([0.0, 0.1], [-8.0, -6.0], [1.0, 0.0]))
    ... # doctest: +SKIP
    >>> loss = criterion(model(x), y) + prior(model, lam=1e-4)  # doctest: +SKIP
    """

    def __init__(
        self,
        mu: ArrayLike | Tensor,
        log_var: ArrayLike | Tensor,
        logit: ArrayLike | Tensor,
        *,
        zero_component: bool = False,
        pi_zero: float | None = None,
        hyperprior: HyperPrior | None = None,
        split_work: bool = False,
        process_group: Any = None,
        penalize: str | Callable[[str, Tensor], bool] = "all",
    ) -> None:
        super().__init__()
        if not callable(penalize) and penalize not in ("all", "weights"):
            msg = f'penalize must be "all", "weights" or a callable (name, param) -> bool, got {penalize!r}'
            raise ValueError(msg)
        self.penalize = penalize
        tensors = [self._as_tensor(x) for x in (mu, log_var, logit)]
        mixture_of(*tensors)  # checks the values
        if pi_zero is not None and not 0.0 < pi_zero < 1.0:
            msg = f"pi_zero must be in (0, 1), got {pi_zero}"
            raise ValueError(msg)
        if (zero_component or pi_zero is not None) and tensors[0].numel() < 2:
            msg = "a zero component needs M >= 2"
            raise ValueError(msg)
        self.mu = nn.Parameter(tensors[0])
        self.log_var = nn.Parameter(tensors[1])
        self.logit = nn.Parameter(tensors[2])
        self.zero_component = bool(zero_component)
        self.pi_zero = pi_zero
        self.hyperprior = hyperprior
        self.split_work = bool(split_work)
        self.process_group = process_group

    def effective(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, log_var, logit)`` as the penalty sees them (zero component applied)."""
        mu: Tensor = self.mu
        if self.zero_component:
            mu = torch.cat([torch.zeros_like(mu[:1]), mu[1:]])
        logit: Tensor = self.logit
        if self.pi_zero is not None:
            rest = math.log1p(-self.pi_zero) + torch.log_softmax(logit[1:], dim=0)
            logit = torch.cat([torch.full_like(logit[:1], math.log(self.pi_zero)), rest])
        return mu, self.log_var, logit

    def hyperprior_penalty(self) -> Tensor:
        """The hyper-priors' negative log-density (0 without a hyperprior).

        As :meth:`softshare.compress.HyperPrior.value_and_grad`, the value leaves
        out the Gamma and Beta densities' normalising constants (they depend on
        the hyper-parameters only, never on the mixture): it is the negative
        log-density up to an additive constant.
        """
        _, log_var, logit = self.effective()
        return hyperprior_value(self.hyperprior, log_var, logit)

    @staticmethod
    def _as_tensor(x: ArrayLike | Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.detach().clone()
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.get_default_dtype())

    @classmethod
    def from_mixture(
        cls, mixture: Mixture, *, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> MixturePrior:
        """A prior initialised from a :class:`softshare.Mixture`, in ``dtype``.

        Keyword arguments (``zero_component``, ``pi_zero``, ``hyperprior``) are
        passed to the constructor.
        """
        dtype = dtype or torch.get_default_dtype()
        arrays = (mixture.mu, mixture.log_var, mixture.logit)
        return cls(*(torch.tensor(np.asarray(a), dtype=dtype) for a in arrays), **kwargs)

    @property
    def n_components(self) -> int:
        """Number of components M."""
        return int(self.mu.numel())

    def mixture(self) -> Mixture:
        """A float64 :class:`softshare.Mixture` snapshot of the effective parameters."""
        return mixture_of(*self.effective())

    def named_penalized_parameters(
        self, model_or_params: nn.Module | TensorOrTensors
    ) -> list[tuple[str, Tensor]]:
        """``(name, tensor)`` of every tensor the prior applies to: a module's parameters
        (those ``penalize`` selects) except the prior's own, or the given tensors
        (named "0", "1", ...)."""
        own = {id(p) for p in (self.parameters() if self._modules else self._parameters.values())}
        return selected(model_or_params, self.penalize, own)

    def penalized_parameters(self, model_or_params: nn.Module | TensorOrTensors) -> list[Tensor]:
        """The tensors the prior applies to (see :meth:`named_penalized_parameters`)."""
        if isinstance(model_or_params, Tensor):
            return [model_or_params]
        if not isinstance(model_or_params, nn.Module):
            return list(model_or_params)
        return [p for _, p in self.named_penalized_parameters(model_or_params)]

    def forward(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        lam: float = 1.0,
        *,
        hyper_lam: float | None = None,
    ) -> Tensor:
        """``lam * Omega`` over a module's parameters (or the given tensors).

        ``Omega`` is the mixture's whole negative log-density, normalising
        constants included (``docs/math.md``). With a hyperprior, ``hyper_lam``
        times its negative log-density is added (default: ``lam``, i.e. the
        hyper-priors weigh like one weight's prior); that term leaves out the
        Gamma and Beta densities' normalising constants, so it differs from
        the paper's formula by a constant (no gradient depends on it).
        """
        mu, log_var, logit = self.effective()
        value = penalty(
            self.penalized_parameters(model_or_params),
            mu,
            log_var,
            logit,
            lam,
            split_work=self.split_work,
            process_group=self.process_group,
        )
        if not torch.compiler.is_compiling() and value.grad_fn is not None:
            value.grad_fn.register_prehook(_SameComponents(self))  # about 3 us
        if self.hyperprior is not None:
            value = value + (lam if hyper_lam is None else hyper_lam) * self.hyperprior_penalty()
        return value

    def add_grad_(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        lam: float = 1.0,
        *,
        hyper_lam: float | None = None,
        n_threads: int | None = None,
    ) -> float:
        """Add this prior's gradients into ``.grad`` without autograd; return the value.

        ``loss.backward(); prior.add_grad_(model, lam)`` leaves every ``.grad``
        (penalised parameters, ``mu``, ``log_var``, ``logit``) as
        ``(loss + prior(model, lam)).backward()`` does: one native pass adds
        ``lam * dOmega/dw`` into each (a ``.grad`` that is None becomes a new
        tensor), under ``torch.no_grad()``. Bit for bit where the loss gives a
        ``.grad`` one term (a ``.grad`` kept from before, or a weight the loss
        uses twice, gets the penalty's term last: equal to rounding). Only CPU
        float32/float64 tensors go to the kernel; others (devices, dtypes,
        DTensor shards, non-leaf tensors, a tensor given twice) take the
        autograd form and its backward. Tensor hooks miss the penalty's part.

        Parameters
        ----------
        model_or_params, lam, hyper_lam
            As for :meth:`forward`.
        n_threads : int, optional
            Threads of the pass (default: ``torch.get_num_threads()``).

        Returns
        -------
        float
            The value of :meth:`forward` (hyper-priors included).

        Raises
        ------
        ValueError
            As :meth:`forward` (for a non-finite weight the existing ``.grad``
            may then hold part of the penalty's), and for ``split_work``.
        """
        return add_grad(self, model_or_params, lam, hyper_lam=hyper_lam, n_threads=n_threads)

    def start(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        lam: float = 1.0,
        *,
        hyper_lam: float | None = None,
        n_threads: int | None = None,
    ) -> PendingPenalty:
        """Start this prior's penalty on a background thread (the overlapped form of ``forward``).

        ``join()`` the result after the network's ``loss.backward()`` and
        before ``optimizer.step()``: it accumulates exactly the gradients
        ``(loss + prior(model, lam)).backward()`` would have, and returns the
        value (hyper-priors included). See :func:`softshare.torch.start_penalty`
        for ``n_threads``; ``split_work`` and sharded weights are not supported.
        Until the join (or :meth:`PendingPenalty.cancel`), :meth:`merge_`,
        :meth:`quantize_` and :meth:`requantize_` raise ``RuntimeError``; the
        pass pins the weights' memory (their storage becomes non-resizable,
        as ``Tensor.numpy()`` makes it).

        Examples
        --------
        >>> pending = prior.start(model, lam)  # doctest: +SKIP
        >>> criterion(model(x), y).backward()  # doctest: +SKIP
        >>> penalty_value = pending.join()  # doctest: +SKIP
        >>> optimizer.step()  # doctest: +SKIP
        """
        return start_prior(self, model_or_params, lam, hyper_lam, n_threads)

    def parameter_groups(
        self,
        lr_mu: float | None = None,
        lr_log_var: float | None = None,
        lr_logit: float | None = None,
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the mixture, one per kind of parameter.

        A learning rate left as None is not set, so the optimizer's default applies.

        Examples
        --------
        >>> opt = torch.optim.Adam(  # doctest: +SKIP
        ...     [{"params": model.parameters()}, *prior.parameter_groups(5e-4, 1e-2, 3e-3)], lr=2e-3)
        """
        groups: list[dict[str, Any]] = []
        for param, lr in ((self.mu, lr_mu), (self.log_var, lr_log_var), (self.logit, lr_logit)):
            group: dict[str, Any] = {"params": [param]}
            if lr is not None:
                group["lr"] = lr
            groups.append(group)
        return groups

    def extra_repr(self) -> str:
        extras = [f"n_components={self.n_components}"]
        if self.zero_component:
            extras.append("zero_component=True")
        if self.pi_zero is not None:
            extras.append(f"pi_zero={self.pi_zero}")
        return ", ".join(extras)
