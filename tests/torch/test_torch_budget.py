"""The error-budget search for the prior's strength (``ErrorBudget``) and ``choose_quantization_(max_error=)``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import softshare.torch as sst

from tests.torch._teacher import trained_teacher_mlp

F = torch.nn.functional

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _net(seed: int = 0) -> tuple[Any, Any, Any, Any, Any]:
    """A small trained MLP on a teacher task, its prior, training and validation data."""
    model, x, y, xv, yv = trained_teacher_mlp(seed)
    return model, sst.MixturePrior.from_weights(model, 5), x, y, (xv, yv)


def _scripted(bounded: list[float], *, quantized: bool = False) -> Any:
    """An error function: for each check the next of ``bounded`` for the float weights, then
    ``+ 0.1`` and ``+ 0.05`` for MAP and likelihood assignment (likelihood wins: its file sizes
    follow the weights); with ``quantized``, 0.5 for the float weights and the next of
    ``bounded`` for the likelihood assignment."""
    if quantized:
        calls: Iterator[float] = iter(v for q in bounded for v in (0.5, q + 0.1, q))
    else:
        calls = iter(v for f in bounded for v in (f, f + 0.1, f + 0.05))
    return lambda: next(calls)


def test_the_strength_rises_within_the_budget_and_falls_outside_down_to_its_floor() -> None:
    model, prior, *_ = _net()
    budget = sst.ErrorBudget(
        _scripted([0.10, 0.10, 0.12, 0.12, 0.12]), 1e-3, budget=0.01, baseline=0.1, smooth=1.0
    )
    assert budget.limit == pytest.approx(0.11)
    for _ in range(5):
        budget.check(model, prior)
    lams = [c.lam for c in budget.history]
    assert lams == pytest.approx([1e-3, 1.25e-3, 1.5625e-3, 1.25e-3, 1e-3])
    assert budget.lam == pytest.approx(1e-3)  # the floor: the start
    assert [c.within for c in budget.history] == [True, True, False, False, False]
    low = sst.ErrorBudget(_scripted([0.2, 0.2]), 1e-3, baseline=0.1, min_lam=1e-4, grow=2.0)
    low.check(model, prior)
    low.check(model, prior, adapt=False)
    assert low.lam == pytest.approx(5e-4)


def test_progress_adapts_after_the_warmup_and_keeps_after_the_settling() -> None:
    """``check(progress=)``: λ holds over the first ``warmup``, checks compete after ``settle``."""
    model, prior, *_ = _net(2)
    budget = sst.ErrorBudget(
        _scripted([0.1] * 5), 1e-3, budget=0.01, baseline=0.1, smooth=1.0, warmup=0.2, settle=0.6
    )
    for progress in (0.2, 0.4, 0.6, 0.8, 1.0):  # at a bound: not yet past it
        budget.check(model, prior, progress=progress)
    lams = [c.lam for c in budget.history]
    assert lams == pytest.approx([1e-3, 1e-3, 1.25e-3, 1.5625e-3, 1.953125e-3])
    assert budget.best is budget.history[-1]  # the two checks past 0.6 competed: the later kept
    assert budget.best.lam == pytest.approx(1.953125e-3)
    by_hand = sst.ErrorBudget(_scripted([0.1, 0.1]), 1e-3, budget=0.01, baseline=0.1)
    by_hand.check(model, prior, progress=0.0, adapt=True)  # adapt= decides over progress
    by_hand.check(model, prior, progress=1.0, keep=False)
    assert by_hand.lam == pytest.approx(1.25e-3 * 1.25)
    assert by_hand.best is None


def test_the_defaults_follow_the_demo_s_schedule() -> None:
    model, prior, *_ = _net(3)
    budget = sst.ErrorBudget(_scripted([0.1] * 3), 1e-3, budget=0.01, baseline=0.1)
    assert (budget.warmup, budget.settle) == (0.1, 0.5)
    for progress in (0.1, 0.5, 0.55):
        budget.check(model, prior, progress=progress)
    assert [c.lam for c in budget.history] == pytest.approx([1e-3, 1e-3, 1.25e-3])
    assert budget.best is budget.history[2]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"progress": 1.5}, ValueError, r"progress must be in \[0, 1\]"),
        ({"progress": -0.1}, ValueError, "progress must be finite and >= 0"),
        ({"progress": "half"}, TypeError, "progress must be a number, got str"),
        ({"adapt": 1}, TypeError, "adapt must be True or False"),
        ({"keep": None, "adapt": "no"}, TypeError, "adapt must be True or False"),
    ],
)
def test_bad_check_arguments_are_refused_by_name(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    model, prior, *_ = _net(4)
    budget = sst.ErrorBudget(lambda: 0.1, 1e-3, baseline=0.1)
    with pytest.raises(error, match=words):
        budget.check(model, prior, **kwargs)
    assert not budget.history


def test_the_smallest_file_within_the_budget_is_kept_and_restored() -> None:
    model, prior, *_ = _net(1)
    budget = sst.ErrorBudget(
        _scripted([0.10, 0.10, 0.10, 0.30]), 1e-3, budget=0.0, baseline=0.1, smooth=1.0
    )
    first = budget.check(model, prior, keep=False)  # scored, never kept
    big = budget.check(model, prior)
    with torch.no_grad():
        model[0].weight[:, :8] = 0.0  # a third of the weights on the zero component
    kept_weights = {k: v.clone() for k, v in model.state_dict().items()}
    small = budget.check(model, prior)
    assert small.file_bytes < big.file_bytes
    with torch.no_grad():
        model[0].weight.zero_()  # smaller still, but outside the budget
    outside = budget.check(model, prior)
    assert not outside.within
    assert outside.file_bytes < small.file_bytes
    assert budget.best is small
    assert first is not budget.best
    assert budget.restore_best(model, prior) is small
    assert all(torch.equal(v, kept_weights[k]) for k, v in model.state_dict().items())


def test_without_a_check_within_the_budget_the_lowest_error_is_restored() -> None:
    model, prior, *_ = _net(2)
    budget = sst.ErrorBudget(_scripted([0.3, 0.2, 0.4]), 1e-3, budget=0.0, baseline=0.1, smooth=1)
    assert budget.restore_best(model, prior) is None  # nothing checked: nothing changes
    budget.check(model, prior)
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    lowest = {k: v.clone() for k, v in model.state_dict().items()}
    budget.check(model, prior)
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    budget.check(model, prior)
    assert budget.restore_best(model, prior) is None
    assert all(torch.equal(v, lowest[k]) for k, v in model.state_dict().items())


def test_the_budget_bounds_the_moving_average_of_the_error() -> None:
    model, prior, *_ = _net(3)
    budget = sst.ErrorBudget(_scripted([0.10, 0.20, 0.10]), 1e-3, budget=0.05, baseline=0.1)
    trends = [budget.check(model, prior).trend for _ in range(3)]
    assert trends == pytest.approx([0.10, 0.13, 0.121])  # 0.3 * new + 0.7 * last
    assert all(c.within for c in budget.history)  # 0.20 alone would be outside


@pytest.mark.parametrize("quantized", [False, True])
def test_the_budget_bounds_the_float_or_the_quantized_error(quantized: bool) -> None:
    model, prior, *_ = _net(8)
    script = _scripted([0.10, 0.30], quantized=quantized)
    budget = sst.ErrorBudget(script, 1e-3, baseline=0.1, budget=0.0, smooth=1, quantized=quantized)
    first, second = budget.check(model, prior), budget.check(model, prior)
    assert (first.within, second.within) == (True, False)
    assert first.trend == (first.quantized_error if quantized else first.error) == 0.10
    assert second.quantized_error == pytest.approx(0.30 if quantized else 0.35)


def test_the_baseline_is_measured_when_not_given() -> None:
    model, prior, *_ = _net(4)
    budget = sst.ErrorBudget(lambda: 0.25, 1e-3, budget=0.01)
    assert (budget.baseline, budget.limit) == (0.25, pytest.approx(0.26))
    check = budget.check(model, prior)
    assert check.error == check.quantized_error == check.trend == 0.25
    assert check.within


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"lam": 0.0}, ValueError, "lam must be finite and above 0"),
        ({"lam": float("inf")}, ValueError, "lam must be finite"),
        ({"lam": "1e-3"}, TypeError, "lam must be a number, got str"),
        ({"grow": 1.0}, ValueError, "grow must be finite and above 1"),
        ({"budget": -0.01}, ValueError, "budget must be finite and >= 0"),
        ({"budget": True}, TypeError, "budget must be a number, got bool"),
        ({"smooth": 0.0}, ValueError, "smooth must be finite and above 0"),
        ({"smooth": 1.5}, ValueError, r"smooth must be in \(0, 1\]"),
        ({"min_lam": -1.0}, ValueError, "min_lam must be finite and above 0"),
        ({"baseline": float("nan")}, ValueError, "baseline must be finite"),
        ({"mixture": 1}, TypeError, "mixture"),
        ({"quantized": "yes"}, TypeError, "quantized"),
        ({"warmup": 1.5}, ValueError, r"warmup must be in \[0, 1\]"),
        ({"settle": -0.5}, ValueError, "settle must be finite and >= 0"),
        ({"settle": "half"}, TypeError, "settle must be a number, got str"),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs: dict[str, Any], error: type, words: str) -> None:
    settings: dict[str, Any] = {"lam": 1e-3, "baseline": 0.1, **kwargs}
    with pytest.raises(error, match=words):
        sst.ErrorBudget(lambda: 0.1, **settings)


def test_an_error_function_that_is_not_callable_or_returns_nan_is_refused() -> None:
    with pytest.raises(TypeError, match="error must be a callable"):
        sst.ErrorBudget(0.1, 1e-3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="returned nan"):
        sst.ErrorBudget(lambda: float("nan"), 1e-3)


def test_choose_quantization_takes_the_smallest_file_within_max_error() -> None:
    model, prior, *_ = _net(5)
    errors = iter([0.30, 0.10, 0.20, 0.40] * 4)
    chooser = sst.Chooser(lambda: next(errors))
    choice = chooser.choose_quantization_(
        model, prior, thresholds=(0.0, 4.0), max_error=0.35, mixture=False
    )
    within = [c for c in choice.candidates if c[3] <= 0.35]
    assert choice.file_bytes == min(c[4] for c in within)
    assert choice.error <= 0.35
    with pytest.raises(ValueError, match="max_error must be a number or None, got nan"):
        chooser.choose_quantization_(model, prior, max_error=float("nan"))


@pytest.mark.parametrize("quantized", [False, True])
def test_a_training_loop_finds_a_stronger_prior_within_the_budget(quantized: bool) -> None:
    """The documented own-loop use: retrain with ``budget.lam``, check each epoch, restore."""
    model, prior, x, y, (xv, yv) = _net(6)

    def error() -> float:
        with torch.no_grad():
            return float((model(xv).argmax(1) != yv).float().mean())

    budget = sst.ErrorBudget(error, lam=1e-4, budget=0.08, smooth=0.5, quantized=quantized)
    opt = torch.optim.Adam([{"params": model.parameters()}, *prior.parameter_groups(1e-3)], lr=3e-3)
    epochs = 16
    for epoch in range(epochs):
        for xb, yb in zip(x.split(64), y.split(64)):
            opt.zero_grad()
            (F.cross_entropy(model(xb), yb) + prior(model, budget.lam)).backward()
            opt.step()
            prior.bound_widths_(epoch / epochs)
        budget.check(model, prior, keep=epoch >= epochs // 2)
    best = budget.best
    assert best is not None
    assert best.within
    assert best.trend <= budget.limit
    assert max(c.lam for c in budget.history) > 1e-4  # it raised the strength
    assert budget.restore_best(model, prior) is best
    assert error() == best.error
    choice = sst.Chooser(error).choose_quantization_(model, prior, max_error=budget.limit)
    assert choice.file_bytes > 0


def test_the_search_says_what_it_kept() -> None:
    model, prior, *_ = _net(7)
    budget = sst.ErrorBudget(_scripted([0.3, 0.1]), 1e-3, budget=0.0, baseline=0.1, smooth=1)
    budget.check(model, prior)
    assert str(budget).startswith("no kept check within the limit 0.1000 (baseline 0.1000")
    budget.check(model, prior)
    assert str(budget).startswith("lam 0.001: validation error 0.1000, quantized 0.1500")
    assert str(budget).endswith("bytes (2 checks)")
