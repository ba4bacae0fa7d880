"""The recipe's choices made on validation data: :class:`Chooser` (best checkpoint, merge threshold, MAP or likelihood).

Every choice calls the user's own validation function on the module as it is
at that moment (weights quantized where the choice is about quantization), so
the test set is never consulted.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ._file import save_compressed
from ._quantized import QuantizedState, check_flag, write_state

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..compress._merge import MergeReport
    from .prior import MixturePrior

__all__ = ["Chooser", "QuantizationChoice"]


@dataclass(frozen=True)
class QuantizationChoice:
    """What :meth:`Chooser.choose_quantization_` chose, and every candidate it tried.

    Attributes
    ----------
    state : QuantizedState
        The chosen assignment of the module's weights (under the merged prior).
    threshold, min_responsibility : float
        The merge settings chosen (:meth:`MixturePrior.merge_`).
    use_pi : bool
        MAP assignment (True) or likelihood alone (False).
    error : float
        The validation error with the chosen quantized weights.
    file_bytes : int
        Bytes of the compressed file :func:`save_compressed` writes for it.
    merge : softshare.compress.MergeReport
        What merging did.
    candidates : tuple of (threshold, min_responsibility, use_pi, error, file_bytes)
        Every candidate, in the order tried.
    """

    state: QuantizedState
    threshold: float
    min_responsibility: float
    use_pi: bool
    error: float
    file_bytes: int
    merge: MergeReport
    candidates: tuple[tuple[float, float, bool, float, int], ...]

    def __str__(self) -> str:
        how = "MAP" if self.use_pi else "likelihood"
        return (
            f"{self.merge}; threshold {self.threshold:g}, min_responsibility "
            f"{self.min_responsibility:g}, {how} assignment: validation error "
            f"{self.error:.4f}, {self.file_bytes} bytes ({len(self.candidates)} candidates)"
        )


def _copies(module: nn.Module | None) -> dict[str, Tensor] | None:
    """A detached copy of a module's state_dict (None for None)."""
    if module is None:
        return None
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Chooser:
    """The recipe's choices on validation data, made with the user's own validation function.

    ``error()`` is called with no arguments and returns the validation error
    (any float to minimise: an error rate, a loss) of the module as it is at
    that moment. Three choices use it:

    * :meth:`keep_if_best` / :meth:`restore_best`: the best checkpoint of a
      stage of training (scored as the module is, or with its weights
      quantized by the prior: :meth:`quantized_error`);
    * :meth:`choose_quantization_`: the merge threshold, the pruning bound and
      MAP or likelihood assignment, among the candidates within ``tolerance``
      of the lowest error the one whose compressed file is smallest.

    Make one Chooser per stage: a checkpoint is restored into the module (and
    prior) it was kept from, so do not merge between keeping and restoring.

    Parameters
    ----------
    error : callable () -> float
        The validation error of the module as it is now.

    Raises
    ------
    TypeError
        If ``error`` is not callable.

    Examples
    --------
    >>> chooser = sst.Chooser(lambda: validation_error(model))  # doctest: +SKIP
    >>> choice = chooser.choose_quantization_(model, prior)  # doctest: +SKIP
    """

    def __init__(self, error: Callable[[], float]) -> None:
        given: object = error  # callers without type checking pass anything
        if not callable(given):
            msg = f"error must be a callable returning the validation error, got {given!r}"
            raise TypeError(msg)
        self.error = error
        self.best_error = math.inf
        self._best: tuple[Any, Any, QuantizedState | None] | None = None

    def _score(self) -> float:
        value = float(self.error())
        if math.isnan(value):
            msg = "the validation function returned nan"
            raise ValueError(msg)
        return value

    def quantized_error(
        self, model: nn.Module, prior: MixturePrior, *, use_pi: bool = True
    ) -> float:
        """The validation error with the penalised weights quantized by ``prior``; nothing changes.

        The weights are quantized (:meth:`MixturePrior.snapshot`), ``error()``
        is called, and the float weights are put back.
        """
        return self._with_state(model, prior.snapshot(model, use_pi=use_pi), prior)

    def _with_state(self, model: nn.Module, state: QuantizedState, prior: MixturePrior) -> float:
        """``error()`` with ``state`` written into the module, its weights restored after."""
        chosen = dict(prior.named_penalized_parameters(model))
        kept = {n: p.detach().clone() for n, p in chosen.items()}
        try:
            write_state(chosen, state, refit=False)
            return self._score()
        finally:
            with torch.no_grad():
                for name, p in chosen.items():
                    p.copy_(kept[name])

    def keep_if_best(
        self,
        model: nn.Module,
        prior: MixturePrior | None = None,
        *,
        state: QuantizedState | None = None,
        quantized: bool = False,
    ) -> float:
        """Score the module now; keep a copy of it (and of ``prior``, ``state``) if no worse than the best.

        Parameters
        ----------
        model : nn.Module
            The network; its state_dict is copied when kept.
        prior : MixturePrior, optional
            Kept (and restored) with the module; needed with ``quantized``.
        state : QuantizedState, optional
            The quantization the module holds (e.g. ``FineTuner.state``),
            returned by :meth:`restore_best`.
        quantized : bool, default False
            Score with the weights quantized by ``prior`` (:meth:`quantized_error`):
            during retraining, the checkpoint that quantizes best.

        Returns
        -------
        float
            The validation error now (ties keep the later checkpoint).
        """
        check_flag("quantized", quantized)
        if quantized and prior is None:
            msg = "quantized=True needs the prior that quantizes the module"
            raise ValueError(msg)
        err = self.quantized_error(model, prior) if quantized and prior else self._score()
        if err <= self.best_error:
            self.best_error = err
            self._best = (_copies(model), _copies(prior), state)
        return err

    def restore_best(
        self, model: nn.Module, prior: MixturePrior | None = None
    ) -> QuantizedState | None:
        """Load the best checkpoint kept back into ``model`` (and ``prior``); return its state.

        Nothing is kept (no check yet): nothing changes and None is returned.
        """
        if self._best is None:
            return None
        weights, prior_weights, state = self._best
        model.load_state_dict(weights)
        if prior is not None and prior_weights is not None:
            prior.load_state_dict(prior_weights)
        return state

    def choose_quantization_(
        self,
        model: nn.Module,
        prior: MixturePrior,
        *,
        thresholds: Iterable[float] = (0.0, 0.25, 1.0, 4.0),
        min_responsibilities: Iterable[float] = (0.5,),
        use_pi: Iterable[bool] = (True, False),
        tolerance: float = 0.0,
        max_error: float | None = None,
        mixture: bool = True,
    ) -> QuantizationChoice:
        """Choose how to merge and assign on validation data; merge ``prior`` in place accordingly.

        Every candidate (each threshold, each pruning bound, each assignment
        rule) is a merged copy of the prior and the module's weights quantized
        by it; each is scored with ``error()`` and sized by the file
        :func:`save_compressed` writes. Of the candidates within ``tolerance``
        of the lowest error (or, given ``max_error``, of those whose error is
        at most ``max_error`` where any is), the one whose file is smallest
        wins (then the lower error, then the first tried). ``prior`` is then merged with its
        settings (:meth:`MixturePrior.merge_`); the module keeps its float
        weights: write the chosen state with :class:`FineTuner` or
        ``prior.requantize_(model, choice.state, refit=False)``.

        Parameters
        ----------
        model : nn.Module
            The retrained network, holding its float weights.
        prior : MixturePrior
            The retrained prior, merged in place.
        thresholds : iterable of float, default (0.0, 0.25, 1.0, 4.0)
            Merge thresholds to try (symmetric KL divergence; 0 merges nothing).
        min_responsibilities : iterable of float, default (0.5,)
            Pruning bounds to try.
        use_pi : iterable of bool, default (True, False)
            Assignment rules to try: MAP, likelihood alone.
        tolerance : float, default 0.0
            Validation error given up for a smaller file.
        max_error : float, optional
            An absolute bound instead (e.g. :attr:`ErrorBudget.limit`): every
            candidate within it competes on file size; where none is, the
            ``tolerance`` rule decides.
        mixture : bool, default True
            Size the files with the prior's mixture stored (as
            :func:`save_compressed`'s option).

        Returns
        -------
        QuantizationChoice

        Raises
        ------
        ValueError
            If a list of candidates is empty, ``tolerance`` is negative or not
            finite, ``max_error`` is nan, or a setting is refused by :meth:`MixturePrior.merge_`.
        TypeError
            If ``model`` is not an nn.Module or a rule is not a bool.
        """
        given: object = model
        if not isinstance(given, nn.Module):
            msg = f"model must be an nn.Module, got {type(given).__name__}"
            raise TypeError(msg)
        grid = [(float(t), float(b)) for t in thresholds for b in min_responsibilities]
        rules = list(use_pi)
        for rule in rules:
            check_flag("use_pi", rule)
        if not grid or not rules:
            msg = "thresholds, min_responsibilities and use_pi must each hold a candidate"
            raise ValueError(msg)
        if not (math.isfinite(tolerance) and tolerance >= 0):
            msg = f"tolerance must be finite and >= 0, got {tolerance!r}"
            raise ValueError(msg)
        if max_error is not None and math.isnan(max_error):
            msg = "max_error must be a number or None, got nan"
            raise ValueError(msg)
        check_flag("mixture", mixture)
        tried: list[tuple[float, float, bool, float, int]] = []
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "candidate.sws"
            for threshold, bound in grid:
                trial = copy.deepcopy(prior)
                trial.merge_(model, threshold=threshold, min_responsibility=bound)
                for rule in rules:
                    state = trial.snapshot(model, use_pi=rule)
                    err = self._with_state(model, state, trial)
                    size = _file_bytes(path, model, trial, state, mixture=mixture)
                    tried.append((threshold, bound, rule, err, size))
        low = min(c[3] for c in tried) + tolerance
        if max_error is not None and any(c[3] <= max_error for c in tried):
            low = max_error
        best = min((c for c in tried if c[3] <= low), key=lambda c: (c[4], c[3]))
        threshold, bound, rule, err, size = best
        report = prior.merge_(model, threshold=threshold, min_responsibility=bound)
        state = prior.snapshot(model, use_pi=rule)
        return QuantizationChoice(state, threshold, bound, rule, err, size, report, tuple(tried))


def _file_bytes(
    path: str | os.PathLike[str],
    model: nn.Module,
    prior: MixturePrior,
    state: QuantizedState,
    *,
    mixture: bool,
) -> int:
    """Bytes of the file :func:`save_compressed` writes for this state."""
    return save_compressed(path, model, prior, state=state, mixture=mixture).file_bytes
