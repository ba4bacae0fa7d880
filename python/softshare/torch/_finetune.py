"""Quantized fine-tuning with straight-through shadow weights: :class:`FineTuner`.

The module holds its quantized weights throughout (each the shared value of its
component); the gradient they receive trains both the shared values (summed
per component, as in Han et al.) and, straight through, float shadow weights
that the library reassigns to components every few steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ._quantized import QuantizedState, make_state, write_state

if TYPE_CHECKING:
    from ._checks import TensorOrTensors
    from .prior import MixturePrior

__all__ = ["FineTuner"]


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    """A TypeError/ValueError unless ``value`` is a positive (integer) number."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        msg = f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}"
        raise TypeError(msg)
    if not (math.isfinite(value) and value > 0):
        msg = f"{name} must be finite and above 0, got {value!r}"
        raise ValueError(msg)


class FineTuner:
    """Fine-tune a quantized module: the shared values and, straight through, the assignment.

    Made after merging, it writes ``state`` into the module (or quantizes it
    with ``prior``) and keeps the weights the module held before as float
    *shadow* weights. Then, in the user's loop, the module's forward and
    backward see the quantized weights; :meth:`step` takes the gradient they
    received and moves

    * every shared value by the sum of its weights' gradients (the zero
      component's value stays exactly 0), and
    * every shadow weight by its own gradient (straight-through: the gradient
      of the quantized weight),

    each with its own Adam, and every ``reassign_every`` steps assigns each
    shadow weight anew to its most responsible component of ``prior``
    (means: the shared values; MAP or likelihood as ``state``), through
    :func:`softshare.compress.quantize_network`, so that weights may change
    component. After each step the module holds the quantized weights again,
    exactly :attr:`state`'s, so validating the module validates the
    compressed network and ``save_compressed(path, model, state=tuner.state)``
    writes it. Per step the cost is two gathers and one scatter-add over the
    weights in torch besides the optimizers; the assignment pass is the only
    per-weight work outside torch. Parameters the prior does not penalise
    (e.g. biases with ``penalize="weights"``) are not touched: train them with
    an optimizer of your own.

    Parameters
    ----------
    model : nn.Module or Tensor or sequence of Tensor
        The network (the parameters ``prior`` penalises), holding the float
        weights the shadows start from (after :meth:`MixturePrior.quantize_`
        they are the quantized ones: fine too, the weights then take longer to
        change component).
    prior : MixturePrior
        The merged prior; its means follow the shared values.
    state : QuantizedState, optional
        The assignment to start from (e.g. :func:`choose_quantization`'s
        choice); by default ``prior.quantize_(model, use_pi=use_pi)``.
    lr : float, default 5e-4
        Adam's learning rate for the shared values.
    lr_weights : float, default 3e-4
        Adam's learning rate for the shadow weights.
    reassign_every : int, default 32
        Optimizer steps between reassignments of the shadow weights.
    straight_through : bool, default True
        False: the shadows never move, so the assignment is kept and only the
        shared values learn.
    keep_pruned : bool, default False
        True: a weight assigned to the zero component (value exactly 0) gets
        no gradient, so its shadow stays where it is and the next
        reassignment leaves it pruned (unless a shared value moves across
        it): pruned weights stay pruned, as pruning's mask keeps them in Han
        et al.'s fine-tuning. Without it, straight-through gradients move
        pruned weights back out and the file grows (LeNet-300-100 on MNIST,
        ``softshare demo``'s recipe, seed 0: 46.0x at 1.56 % test error
        without, 56.4x at 1.77 % with; the demo does not use it yet).
    use_pi : bool, default True
        Without ``state``: MAP assignment (True) or likelihood alone.
    **adam
        Further keyword arguments of :class:`torch.optim.Adam` (e.g.
        ``fused=True``), for both optimizers.

    Raises
    ------
    TypeError
        If ``prior`` is not a MixturePrior, ``state`` not a QuantizedState,
        or a rate or ``reassign_every`` not a number.
    ValueError
        If a rate or ``reassign_every`` is not above 0, the state does not
        fit the module, or was made before ``merge_``.

    Examples
    --------
    >>> tuner = sst.FineTuner(model, prior)  # doctest: +SKIP
    >>> for xb, yb in batches:  # doctest: +SKIP
    ...     tuner.zero_grad()
    ...     F.cross_entropy(model(xb), yb).backward()
    ...     tuner.step()
    >>> sst.save_compressed("net.sws", model, prior, state=tuner.state)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module | TensorOrTensors,
        prior: MixturePrior,
        state: QuantizedState | None = None,
        *,
        lr: float = 5e-4,
        lr_weights: float = 3e-4,
        reassign_every: int = 32,
        straight_through: bool = True,
        use_pi: bool = True,
        keep_pruned: bool = False,
        **adam: Any,
    ) -> None:
        from .prior import MixturePrior

        given: object = prior  # callers without type checking pass anything
        if not isinstance(given, MixturePrior):
            msg = f"prior must be a MixturePrior, got {type(given).__name__}"
            raise TypeError(msg)
        _positive("lr", lr)
        _positive("lr_weights", lr_weights)
        _positive("reassign_every", reassign_every, integer=True)
        self.prior, self.reassign_every = prior, reassign_every
        self.straight_through = bool(straight_through)
        self.keep_pruned = bool(keep_pruned)
        self._params = prior._chosen(model)
        self._shadows = {n: p.detach().clone() for n, p in self._params.items()}
        if state is None:
            state = prior.quantize_(model, use_pi=use_pi)
        else:
            state = prior.requantize_(model, state, refit=False)
        self._state = state
        mu = prior.mixture().mu
        like = next(iter(self._params.values()))
        self.values = nn.Parameter(torch.tensor(mu, dtype=prior.mu.dtype, device=like.device))
        self._keep = torch.tensor(mu != 0, dtype=self.values.dtype, device=like.device)
        self._comps: dict[str, Tensor] = {}
        self._pruned: dict[str, Tensor] = {}  # with keep_pruned: the zero component's weights
        self._set_components(state)
        self._optimizers = [torch.optim.Adam([self.values], lr=lr, **adam)]
        if self.straight_through:
            shadows = list(self._shadows.values())
            self._optimizers.append(torch.optim.Adam(shadows, lr=lr_weights, **adam))
        self.steps = 0

    def _set_components(self, state: QuantizedState) -> None:
        """Each weight's component (flat, int64, on its device) from a state's indices.

        With ``keep_pruned``, also which weights the zero-valued component
        holds: they change only with the assignment, not every step.
        """
        table = np.asarray(state.components, dtype=np.int64)
        for name, idx in state.network.indices.items():
            p = self._params[name]
            comps = torch.from_numpy(table[idx.reshape(-1)]).to(p.device)
            self._comps[name] = comps
            if self.keep_pruned:
                self._pruned[name] = (self._keep[comps] == 0).view(p.shape)

    @property
    def state(self) -> QuantizedState:
        """What the module holds now: the last assignment with the current shared values."""
        comps = list(self._state.components)
        book = self.values.detach()[comps].double().cpu().numpy()
        network = self._state.network.with_codebook(book)
        return dataclasses.replace(self._state, network=network)

    def zero_grad(self) -> None:
        """Drop the gradients of the quantized weights (as ``optimizer.zero_grad()``)."""
        for p in self._params.values():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One step from the gradients of the quantized weights; then they hold their values again.

        Weights without a gradient (unused in the forward) count as gradient 0
        for their value and leave their shadow where it is.
        """
        grad = torch.zeros_like(self.values)
        for name, p in self._params.items():
            g = p.grad
            if g is None:
                self._shadows[name].grad = None
                continue
            comps = self._comps[name]
            grad.index_add_(0, comps, g.reshape(-1).to(grad.dtype))
            if self.keep_pruned:  # no gradient for a weight of a zero-valued component
                g = g.masked_fill(self._pruned[name], 0.0)
            self._shadows[name].grad = g
        self.values.grad = grad * self._keep
        for opt in self._optimizers:
            opt.step()
        self.steps += 1
        self.prior.mu.copy_(self.values.to(self.prior.mu))  # the prior follows the values
        if self.straight_through and self.steps % self.reassign_every == 0:
            self.reassign_()
        self._write()

    def _write(self) -> None:
        """Every quantized weight := its component's shared value."""
        values = self.values.detach()
        for name, p in self._params.items():
            book, flat = values.to(p.dtype), p.detach()
            if flat.is_contiguous():
                torch.index_select(book, 0, self._comps[name], out=flat.view(-1))
            else:
                flat.copy_(torch.index_select(book, 0, self._comps[name]).view_as(flat))

    @torch.no_grad()
    def reassign_(self) -> QuantizedState:
        """Assign every shadow weight to its most responsible component now; return :attr:`state`.

        The prior's mixture with its means at the shared values, MAP or
        likelihood as the starting state; components no weight holds leave the
        codebook (their values keep learning nothing until a weight returns).
        """
        self.prior.mu.copy_(self.values.to(self.prior.mu))
        state = make_state(
            self._shadows,
            self.prior.mixture(),
            use_pi=self._state.use_pi,
            generation=self.prior._generation_now(),
        )
        self._state = state
        self._set_components(state)
        self._write()
        return self.state

    def restore_(self, state: QuantizedState) -> QuantizedState:
        """Write a kept state back into the module (e.g. the best check's) and go on from it.

        The shared values become the state's (the prior's means follow); the
        shadows stay where they are. Returns ``state``.

        Raises
        ------
        TypeError
            If ``state`` is not a QuantizedState.
        ValueError
            If it does not fit the module, or was made before ``merge_``.
        """
        if isinstance(state, QuantizedState) and state.generation != self._state.generation:
            msg = "the state was made before merge_ changed the prior's components"
            raise ValueError(msg)
        state = write_state(self._params, state, refit=False)
        with torch.no_grad():
            comps = torch.tensor(state.components, dtype=torch.long, device=self.values.device)
            book = torch.from_numpy(state.network.codebook.astype(np.float64))
            self.values[comps] = book.to(self.values)
            self.prior.mu.copy_(self.values.to(self.prior.mu))
        self._state = state
        self._set_components(state)
        return state
