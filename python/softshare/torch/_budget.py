"""The prior's strength chosen for an error budget during retraining: :class:`ErrorBudget` (continuation on λ).

Instead of a fixed λ, retraining starts at a weak one and raises it at every
validation check whose network stays within the budget (lowers it at one that
does not, never below the start), keeping the checkpoint whose compressed file is smallest
among those within the budget: one retraining, not a sweep of them.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._choose import Chooser, _copies, _file_bytes
from ._quantized import check_flag

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from .prior import MixturePrior

__all__ = ["BudgetCheck", "ErrorBudget"]


@dataclass(frozen=True)
class BudgetCheck:
    """One validation check of :class:`ErrorBudget`.

    Attributes
    ----------
    lam : float
        The strength the network was trained with up to this check.
    error : float
        Validation error of the network as it is (its float weights).
    quantized_error : float
        Validation error with the weights quantized by the prior, the lower
        of MAP assignment and likelihood alone.
    trend : float
        The moving average over the checks so far (:attr:`ErrorBudget.smooth`)
        of ``error``, or of ``quantized_error`` where the budget bounds the
        quantized network: what the budget bounds, so that one image more or
        less does not move λ.
    file_bytes : int
        Bytes of the compressed file of that quantized network.
    use_pi : bool
        Whether that assignment was MAP (True) or likelihood alone.
    within : bool
        Whether ``trend`` is within the budget (``<= ErrorBudget.limit``).
    """

    lam: float
    error: float
    quantized_error: float
    trend: float
    file_bytes: int
    use_pi: bool
    within: bool


def _number(name: str, value: object, *, above: float = -math.inf, low: float = -math.inf) -> float:
    """``value`` as a finite float above ``above`` and at least ``low``, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"{name} must be a number, got {type(value).__name__}"
        raise TypeError(msg)
    number = float(value)
    if not (math.isfinite(number) and number > above and number >= low):
        bound = f"above {above:g}" if above > -math.inf else f">= {low:g}"
        msg = f"{name} must be finite and {bound}, got {value!r}"
        raise ValueError(msg)
    return number


def _share(name: str, value: object) -> float:
    """``value`` as a float in [0, 1], else an error naming ``name``."""
    share = _number(name, value, low=0.0)
    if share > 1:
        msg = f"{name} must be in [0, 1], got {value!r}"
        raise ValueError(msg)
    return share


class ErrorBudget:
    """Raise the prior's strength λ while the network stays within a validation error budget.

    Call :meth:`check` at each validation check of retraining and train with
    :attr:`lam`. Each check scores the network, quantizes its weights by the
    prior (MAP and likelihood assignment: the lower validation error counts),
    sizes the compressed file and puts the float weights back. A check whose
    error (of the float network, or of the quantized one with
    ``quantized=True``), averaged over recent checks, is at most
    :attr:`limit` (``baseline + budget``) multiplies λ by ``grow``; one above
    it divides λ by ``grow``, down to ``min_lam``. Of the checkpoints within the budget, the one whose
    file is smallest is kept (ties: the later one) and :meth:`restore_best`
    loads it back. So the strongest prior the budget allows is found in one
    retraining, at the cost of three validation passes and two small files
    per check.

    While the weights first gather around the components the file sizes mean
    little and the errors move whatever λ: let those checks adapt λ but not
    compete (``check(..., keep=False)``); λ never falls below its start.
    ``check(..., progress=step / steps)`` does so by the schedule
    ``softshare demo`` uses: λ stays at its start over the first ``warmup``
    of retraining and checks compete from ``settle`` on (after the zero
    component has narrowed, :meth:`MixturePrior.bound_widths_`). Merge and
    quantize afterwards with ``Chooser.choose_quantization_(...,
    max_error=budget.limit)``.

    Parameters
    ----------
    error : callable () -> float
        The validation error of the module as it is now (as :class:`Chooser`'s).
    lam : float
        The starting strength (above 0).
    budget : float, default 0.001
        Validation error allowed above ``baseline`` (0.001 = 0.1 percentage
        points of an error rate, the paper's budget).
    baseline : float, optional
        The error the budget is counted from; by default ``error()`` of the
        module when the ErrorBudget is made (the network before retraining).
    grow : float, default 1.25
        Factor λ changes by at each adapting check (above 1).
    min_lam : float, optional
        λ never falls below it; by default the starting ``lam``, so the search
        only looks for stronger priors than the one it starts from (start
        from one known to train well).
    smooth : float, default 0.3
        Weight of the newest check in the moving average of the validation
        error that the budget bounds (1: no averaging).
    quantized : bool, default False
        Bound the quantized network's validation error instead of the float
        network's. The float error moves steadily with λ and quantized
        fine-tuning (:class:`FineTuner`) usually wins back what quantizing
        loses; the quantized error is the stricter bound, but it is high
        whatever λ while the weights gather around the components.
    mixture : bool, default False
        Size the files with the prior's mixture stored (as
        :func:`save_compressed`'s option).
    warmup : float, default 0.1
        With ``check(..., progress=)``: the share of retraining before λ
        first changes (the weights first move towards the components).
    settle : float, default 0.5
        With ``check(..., progress=)``: the share of retraining before
        checks compete for :attr:`best` (the widths have narrowed, so the
        files' sizes and the errors mean something).

    Attributes
    ----------
    lam : float
        The strength to train with now.
    limit : float
        ``baseline + budget``.
    history : list of BudgetCheck
        Every check, in order.
    best : BudgetCheck or None
        The checkpoint kept (None while no kept check is within the budget).

    Raises
    ------
    TypeError
        If ``error`` is not callable or a number is not a number.
    ValueError
        If ``lam`` or ``min_lam`` is not finite and above 0, ``grow`` not finite and above 1,
        ``smooth`` not in (0, 1], ``warmup`` or ``settle`` not in [0, 1],
        ``budget`` negative, or the baseline (given or measured) not finite.

    Examples
    --------
    >>> budget = sst.ErrorBudget(validation_error, lam=1e-6)  # doctest: +SKIP
    >>> for step, (x, y) in enumerate(batches):  # doctest: +SKIP
    ...     loss = F.cross_entropy(model(x), y) + prior(model, budget.lam)
    ...     ...
    ...     if (step + 1) % steps_per_epoch == 0:
    ...         budget.check(model, prior, progress=(step + 1) / steps)
    >>> budget.restore_best(model, prior)  # doctest: +SKIP
    """

    def __init__(
        self,
        error: Callable[[], float],
        lam: float,
        *,
        budget: float = 1e-3,
        baseline: float | None = None,
        grow: float = 1.25,
        smooth: float = 0.3,
        min_lam: float | None = None,
        quantized: bool = False,
        mixture: bool = False,
        warmup: float = 0.1,
        settle: float = 0.5,
    ) -> None:
        self._chooser = Chooser(error)
        self.lam = _number("lam", lam, above=0.0)
        self.grow = _number("grow", grow, above=1.0)
        self.min_lam = self.lam if min_lam is None else _number("min_lam", min_lam, above=0.0)
        self.smooth = _number("smooth", smooth, above=0.0)
        if self.smooth > 1:
            msg = f"smooth must be in (0, 1], got {smooth!r}"
            raise ValueError(msg)
        self.budget = _number("budget", budget, low=0.0)
        self.warmup = _share("warmup", warmup)
        self.settle = _share("settle", settle)
        check_flag("quantized", quantized)
        check_flag("mixture", mixture)
        self.quantized = quantized
        self.mixture = mixture
        base = self._chooser._score() if baseline is None else baseline
        self.baseline = _number("baseline", base, low=-math.inf)
        self.limit = self.baseline + self.budget
        self.history: list[BudgetCheck] = []
        self.best: BudgetCheck | None = None
        self._kept: tuple[Any, Any] | None = None
        self._closest: tuple[float, Any, Any] | None = None  # while none is within the budget

    def check(
        self,
        model: nn.Module,
        prior: MixturePrior,
        *,
        progress: float | None = None,
        adapt: bool | None = None,
        keep: bool | None = None,
    ) -> BudgetCheck:
        """Score the module, size its quantized file, keep it if the smallest within the budget, adapt λ.

        Parameters
        ----------
        model : nn.Module
            The network as retraining left it (float weights; they are put back).
        prior : MixturePrior
            The prior that quantizes it (by MAP assignment and by likelihood
            alone, as :meth:`Chooser.choose_quantization_` will choose).
        progress : float, optional
            The share of retraining done at this check (``step / steps``, in
            [0, 1]): by default the check adapts λ once ``progress`` exceeds
            :attr:`warmup` and competes once it exceeds :attr:`settle`.
        adapt : bool, optional
            Change :attr:`lam` by the check; by default True, or by
            ``progress`` where given.
        keep : bool, optional
            Let the check compete for :attr:`best` (False: e.g. while the
            weights first gather around the components and the file sizes
            mean little yet); by default True, or by ``progress`` where given.

        Returns
        -------
        BudgetCheck
            The check, also appended to :attr:`history`.

        Raises
        ------
        ValueError
            If ``progress`` is not in [0, 1].
        TypeError
            If ``progress`` is not a number or ``adapt`` or ``keep`` not a bool.
        """
        if progress is not None:
            done_share = _share("progress", progress)
            adapt = done_share > self.warmup if adapt is None else adapt
            keep = done_share > self.settle if keep is None else keep
        adapt = True if adapt is None else adapt
        keep = True if keep is None else keep
        check_flag("adapt", adapt)
        check_flag("keep", keep)
        err = self._chooser._score()  # the float network, for the record
        scored = []
        with tempfile.TemporaryDirectory() as tmp:
            for use_pi in (True, False):
                state = prior.snapshot(model, use_pi=use_pi)
                q_err = self._chooser._with_state(model, state, prior)
                path = Path(tmp) / "check.sws"
                size = _file_bytes(path, model, prior, state, mixture=self.mixture)
                scored.append((q_err, size, use_pi))
        q_err, size, use_pi = min(scored)
        bounded = q_err if self.quantized else err
        last = self.history[-1].trend if self.history else bounded
        trend = self.smooth * bounded + (1.0 - self.smooth) * last
        done = BudgetCheck(self.lam, err, q_err, trend, size, use_pi, trend <= self.limit)
        self.history.append(done)
        if keep and done.within and (self.best is None or size <= self.best.file_bytes):
            self.best, self._kept = done, (_copies(model), _copies(prior))
        if keep and self.best is None and (self._closest is None or bounded <= self._closest[0]):
            self._closest = (bounded, _copies(model), _copies(prior))
        if adapt:
            self.lam = self.lam * self.grow if done.within else self.lam / self.grow
            self.lam = max(self.lam, self.min_lam)
        return done

    def __str__(self) -> str:
        checks = f"{len(self.history)} checks"
        if self.best is None:
            return (
                f"no kept check within the limit {self.limit:.4f} (baseline {self.baseline:.4f} + "
                f"budget {self.budget:.4f}; {checks}): the lowest error is kept"
            )
        b = self.best
        return (
            f"lam {b.lam:.4g}: validation error {b.error:.4f}, quantized {b.quantized_error:.4f} "
            f"(bounded average {b.trend:.4f}) within the limit {self.limit:.4f}, "
            f"{b.file_bytes} bytes ({checks})"
        )

    def restore_best(self, model: nn.Module, prior: MixturePrior) -> BudgetCheck | None:
        """Load the smallest checkpoint within the budget into ``model`` and ``prior``.

        Where no check was within the budget, the one of lowest bounded error
        (``trend``'s quantity) is loaded instead and None is returned; with no check at all nothing
        changes.
        """
        kept = self._kept or (self._closest[1:] if self._closest else None)
        if kept is not None:
            model.load_state_dict(kept[0])
            prior.load_state_dict(kept[1])
        return self.best
