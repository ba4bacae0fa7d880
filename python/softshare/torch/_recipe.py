"""The recipe's steps as ``MixturePrior`` methods: init, merge, quantize, fine-tune, report.

The rules of :mod:`softshare.compress`, whose code they call (``init_mixture``,
``merge_components``, ``quantize_network`` and its native passes), applied in place
to the parameters a prior penalises, so that a plain PyTorch loop runs the whole
recipe with tensors in and out.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..compress._hyperprior import HyperPrior
from ..compress._initmix import init_mixture
from ..compress._merge import MergeReport, merge_components
from ._overlap import refuse_while_pending
from ._quantized import QuantizedState, check_flag, make_state, numpy_weights, write_state
from ._select import selected

if TYPE_CHECKING:
    from collections.abc import Mapping

    from typing_extensions import Self  # the class inheriting the steps: MixturePrior

    from .._mixture import Mixture
    from ..compress._storage import CompressionReport
    from ._checks import TensorOrTensors

__all__ = ["RecipeSteps"]


class RecipeSteps:
    """The recipe's steps; :class:`softshare.torch.MixturePrior` inherits them."""

    if TYPE_CHECKING:
        mu: nn.Parameter
        log_var: nn.Parameter
        logit: nn.Parameter
        zero_component: bool
        pi_zero: float | None
        max_sigma: float | None
        _start_log_var: float
        _generation: int

        @classmethod
        def from_mixture(
            cls, mixture: Mixture, *, dtype: torch.dtype | None = None, **kwargs: Any
        ) -> Self: ...

        def mixture(self) -> Mixture: ...

        def named_penalized_parameters(
            self, model_or_params: nn.Module | TensorOrTensors
        ) -> list[tuple[str, Tensor]]: ...

    @classmethod
    def from_weights(
        cls,
        model_or_params: nn.Module | TensorOrTensors,
        n_components: int = 17,
        *,
        init_pi_zero: float = 0.999,
        spread: str = "range",
        sigma: float | None = None,
        sigma_std: float = 2.0,
        max_sigma_fraction: float | None = 0.05,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> Self:
        """A prior laid over trained weights, with a zero component: Ullrich et al.'s start.

        Parameters
        ----------
        model_or_params : nn.Module or Tensor or sequence of Tensor
            The trained network (the parameters ``penalize`` selects) or tensors.
        n_components : int, default 17
            Components, the zero component included.
        init_pi_zero : float, default 0.999
            The zero component's starting proportion when it is learnt
            (``pi_zero=None``).
        spread : {"range", "quantile"}, default "range"
            As :func:`softshare.compress.init_mixture`: the other means evenly
            over the weights' range or at quantiles of them.
        sigma : float, optional
            Every component's starting standard deviation; by default
            ``sigma_std`` times the weights' standard deviation.
        sigma_std : float, default 2.0
            Without ``sigma``: the starting standard deviation in units of the
            weights' own. Wide, as ``softshare demo`` starts: the zero component
            must reach the small weights to pull them in (a quarter of the
            means' spacing, ``init_mixture``'s default, left about 15 % of a
            784-300-100-10 network's weights non-zero whatever ``lam``).
        max_sigma_fraction : float or None, default 0.05
            The bound :meth:`bound_widths_` holds the non-zero components'
            standard deviations to, as a fraction of the largest absolute
            weight (kept as ``prior.max_sigma``; None: no bound). Without it a
            non-zero component can widen over all the weights during
            retraining and swallow them: call ``prior.bound_widths_(step /
            steps)`` after each optimizer step (it also narrows the zero
            component from its wide start).
        dtype : torch.dtype, optional
            Of the prior's parameters (default ``torch.get_default_dtype()``).
        **kwargs
            The constructor's, with other defaults here: ``zero_component=True``,
            ``pi_zero=0.999`` (the zero component's proportion fixed; None:
            learnt, from ``init_pi_zero``) and ``hyperprior=HyperPrior()``
            (Gamma priors on the precisions, which keep the components narrow;
            None: none). Learnt, the zero component's proportion fell to 4 % on
            the digits MLP and its file grew fourfold.

        Raises
        ------
        ValueError
            If there are no weights or some are not finite, or an argument is
            out of its range.
        """
        if max_sigma_fraction is not None and not (
            math.isfinite(max_sigma_fraction) and max_sigma_fraction > 0
        ):
            msg = f"max_sigma_fraction must be finite and above 0 (or None), got {max_sigma_fraction!r}"
            raise ValueError(msg)
        kwargs.setdefault("zero_component", True)
        kwargs.setdefault("pi_zero", 0.999)
        kwargs.setdefault("hyperprior", HyperPrior())
        chosen = selected(model_or_params, kwargs.get("penalize", "all"), set())
        fixed = kwargs.get("pi_zero")
        arrays = list(numpy_weights(dict(chosen)).values())
        mixture = init_mixture(
            arrays,
            n_components,
            zero_component=bool(kwargs["zero_component"]) or fixed is not None,
            pi_zero=init_pi_zero if fixed is None else fixed,
            spread=spread,
            sigma=sigma,
            sigma_std=sigma_std if sigma is None else None,
        )
        prior = cls.from_mixture(mixture, dtype=dtype, **kwargs)
        prior.max_sigma = None
        if max_sigma_fraction is not None:
            largest = max(float(np.max(np.abs(a))) for a in arrays if a.size)
            prior.max_sigma = max_sigma_fraction * largest if largest > 0 else None
        prior._start_log_var = float(mixture.log_var[0])
        return prior

    def bound_widths_(
        self,
        progress: float | None = None,
        *,
        max_sigma: float | None = None,
        zero_sigma: float | None = None,
    ) -> None:
        """Hold the components' standard deviations at or below a bound, in place.

        Call it after each optimizer step of retraining. A non-zero component
        left to widen can come to cover all the weights, take them from the
        zero component and quantize them all to one value; a zero component
        that stays as wide as it starts (:meth:`from_weights`) takes them all.
        So the non-zero components are held to ``max_sigma``, and, given
        ``progress``, the zero component narrows from its starting width to
        ``max_sigma`` over the first half of retraining (geometrically), as
        ``softshare demo`` does.

        Parameters
        ----------
        progress : float, optional
            The fraction of retraining done (``step / steps``, in [0, 1]).
            None: the zero component is bounded by ``zero_sigma`` only.
        max_sigma : float, optional
            The bound; by default ``self.max_sigma`` (what :meth:`from_weights`
            set: 5 % of the largest absolute weight); None there too: no bound.
        zero_sigma : float, optional
            A bound of the zero component's own (it also holds with ``progress``).

        Raises
        ------
        ValueError
            If a bound is not finite and above 0, or ``progress`` is not in [0, 1].
        """
        bound = getattr(self, "max_sigma", None) if max_sigma is None else max_sigma
        for value in (bound, zero_sigma):
            if value is not None and not (math.isfinite(value) and value > 0):
                msg = f"a bound on sigma must be finite and above 0, got {value!r}"
                raise ValueError(msg)
        first = 1 if self.zero_component or self.pi_zero is not None else 0
        caps = [] if zero_sigma is None else [2.0 * math.log(zero_sigma)]
        if progress is not None:
            if not 0.0 <= progress <= 1.0:
                msg = f"progress must be in [0, 1], got {progress!r}"
                raise ValueError(msg)
            start = getattr(self, "_start_log_var", None)
            if first and bound is not None and start is not None:
                f = min(1.0, 2.0 * progress)
                end = 2.0 * math.log(bound)
                caps.append(max(end, (1.0 - f) * start + f * end))
        with torch.no_grad():
            if bound is not None:
                self.log_var[first:].clamp_(max=2.0 * math.log(bound))
            if first and caps:
                self.log_var[:1].clamp_(max=min(caps))

    def _chosen(self, model_or_params: nn.Module | TensorOrTensors) -> dict[str, Tensor]:
        """The penalised tensors by name; a ValueError when there are none."""
        chosen = dict(self.named_penalized_parameters(model_or_params))
        if not chosen:
            msg = "the prior selects no parameters here (see its penalize option)"
            raise ValueError(msg)
        return chosen

    def merge_(
        self,
        model_or_params: nn.Module | TensorOrTensors | None = None,
        *,
        threshold: float = 1.0,
        min_responsibility: float = 0.5,
    ) -> MergeReport:
        """Merge nearly coinciding components and prune dead ones, in place.

        The rules of :func:`softshare.compress.merge_components`: pairs with a
        symmetric KL divergence below ``threshold`` merge (closest first,
        moments matched); with weights given, components whose summed
        responsibility is below ``min_responsibility`` are pruned first. With ``zero_component`` or ``pi_zero``, component 0 is the zero
        component: never pruned, kept first, its mean kept at 0 (a fixed
        ``pi_zero`` stays fixed). ``mu``, ``log_var`` and ``logit`` stay the
        same ``nn.Parameter`` objects with new, shorter data and no gradient:
        an optimizer's state for them no longer fits, so make the optimizer
        after merging.

        Parameters
        ----------
        model_or_params : nn.Module or Tensor or sequence of Tensor, optional
            The weights (those the prior penalises) whose responsibilities
            decide the pruning; None: nothing is pruned.
        threshold : float, default 1.0
            Merge below this symmetric KL divergence (0: merge nothing).
        min_responsibility : float, default 0.5
            Prune components with a smaller summed responsibility.

        Returns
        -------
        softshare.compress.MergeReport
            The merged groups, the pruned and the kept components (input indices).

        Raises
        ------
        ValueError
            If ``threshold`` or ``min_responsibility`` is negative or not a
            number, or the weights are not finite.
        RuntimeError
            If a penalty this prior started (:meth:`start`) is not yet joined.
        TypeError
            If a weight is not a real floating-point tensor.
        """
        refuse_while_pending(self, "merge_")
        weights = None
        if model_or_params is not None:
            weights = list(numpy_weights(self._chosen(model_or_params)).values())
        merged, report = merge_components(
            self.mixture(),
            weights,
            threshold=threshold,
            min_responsibility=min_responsibility,
            zero_component=self.zero_component or self.pi_zero is not None,
        )
        with torch.no_grad():
            news = (merged.mu, merged.log_var, merged.logit)
            for param, values in zip((self.mu, self.log_var, self.logit), news):
                data = torch.tensor(np.array(values), dtype=param.dtype, device=param.device)
                # autograd keeps a parameter's gradient accumulator, with its old
                # shape, while any graph holds it, and hands it to new graphs too;
                # only a change of dtype makes it start a new one
                other = torch.float32 if param.dtype == torch.float64 else torch.float64
                param.data = data.to(other)
                param.data = data
                param.grad = None
        self._generation = self._generation_now() + 1  # states made before no longer fit
        return report

    def _generation_now(self) -> int:
        """How many times ``merge_`` changed the components (a state remembers it)."""
        return int(getattr(self, "_generation", 0))

    def snapshot(
        self, model_or_params: nn.Module | TensorOrTensors, *, use_pi: bool = True
    ) -> QuantizedState:
        """Each penalised weight's component, as a codebook and indices; nothing changes.

        The assignment of :func:`softshare.compress.quantize` (and of
        :func:`softshare.torch.save_compressed`): the most responsible
        component (MAP, ``use_pi=True``) or the most likely one (``use_pi=False``).

        Parameters
        ----------
        model_or_params : nn.Module or Tensor or sequence of Tensor
            The network (the parameters the prior penalises) or tensors.
        use_pi : bool, default True
            Weigh components by their mixing proportions (MAP); False: likelihood alone.

        Returns
        -------
        QuantizedState
            The codebook (the means in use), every parameter's indices into it,
            and the component behind each value.

        Raises
        ------
        TypeError
            If ``use_pi`` is not a bool or a weight not a real floating-point tensor.
        ValueError
            If a weight is not finite, or the prior selects no weights.
        """
        check_flag("use_pi", use_pi)
        chosen = self._chosen(model_or_params)
        generation = self._generation_now()
        return make_state(chosen, self.mixture(), use_pi=use_pi, generation=generation)

    def compression_report(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        *,
        use_pi: bool = True,
        kinds: Mapping[str, str] | None = None,
        index_bits: Mapping[str, int] | None = None,
    ) -> CompressionReport:
        """The storage cost of the penalised weights, quantized, in Han et al.'s format.

        ``snapshot(model_or_params, use_pi=use_pi).compression_report(kinds=...,
        index_bits=...)``: the figures :func:`softshare.compress.compression_report`
        gives for the same weights and mixture (``nonzero_fraction``,
        ``bits_huffman``, ``ratio``, ``to_markdown()``). Raises as
        :meth:`snapshot` and :meth:`QuantizedState.compression_report`.
        """
        state = self.snapshot(model_or_params, use_pi=use_pi)
        return state.compression_report(kinds=kinds, index_bits=index_bits)

    def quantize_(
        self, model_or_params: nn.Module | TensorOrTensors, *, use_pi: bool = True
    ) -> QuantizedState:
        """Set every penalised weight to its component's mean, in place.

        :meth:`snapshot`, then :meth:`requantize_` with ``refit=False``: weights
        of the zero component become exactly 0, each other weight the mean
        (in the weight's dtype) of its MAP (``use_pi=True``) or most likely
        (``use_pi=False``) component; parameters the prior does not penalise
        are left alone. Raises as :meth:`snapshot`.

        Returns
        -------
        QuantizedState
            The assignment; pass it to :meth:`requantize_` after each optimizer
            step to fine-tune the shared values.
        """
        refuse_while_pending(self, "quantize_")
        state = self.snapshot(model_or_params, use_pi=use_pi)
        return self.requantize_(model_or_params, state, refit=False)

    def requantize_(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        state: QuantizedState,
        *,
        refit: bool = True,
    ) -> QuantizedState:
        """Re-apply a quantization, its assignment kept: quantized fine-tuning from a user's loop.

        After ``optimizer.step()`` has moved the weights, each shared value
        becomes the mean of the weights assigned to it (``refit=True``; the
        zero component's value stays exactly 0) and every weight its value
        again: the step projected onto the weights that share values, so that
        only the codebook learns (with plain SGD each value moves by the mean
        of its weights' gradients times the learning rate). ``refit=False``
        writes ``state`` back unchanged (e.g. to restore the best epoch's).
        The prior's means of the components in use are set to the values;
        :func:`softshare.torch.save_compressed` given the returned state
        writes exactly the weights the module holds (the assignment is never
        computed again).

        Parameters
        ----------
        model_or_params : nn.Module or Tensor or sequence of Tensor
            As given to :meth:`quantize_`.
        state : QuantizedState
            What :meth:`quantize_` (or a previous call) returned.
        refit : bool, default True
            Move the shared values to the mean of their weights first.

        Returns
        -------
        QuantizedState
            ``state`` with the new codebook.

        Raises
        ------
        TypeError
            If ``state`` is not a QuantizedState.
        ValueError
            If the penalised parameters' names or shapes differ from the state's,
            or the state was made before :meth:`merge_` changed the components.
        RuntimeError
            If a penalty this prior started (:meth:`start`) is not yet joined.
        """
        refuse_while_pending(self, "requantize_")
        given: object = state
        if isinstance(given, QuantizedState) and given.generation != self._generation_now():
            msg = (
                "the state was made before merge_ changed the prior's components: "
                "quantize_ again to make a state for the merged prior"
            )
            raise ValueError(msg)
        state = write_state(self._chosen(model_or_params), state, refit=refit)
        with torch.no_grad():
            comps = torch.tensor(state.components, device=self.mu.device)
            self.mu[comps] = state.codebook.to(self.mu)
        return state
