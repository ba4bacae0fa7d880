"""Quantized fine-tuning (``FineTuner``), choices on validation data (``Chooser``) and ``from_weights``' defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import softshare.torch as sst
import softshare.torch._finetune as finetune_module
from softshare import compress

from tests.torch._teacher import trained_teacher_mlp

nn = torch.nn
F = torch.nn.functional


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _task(seed: int = 0) -> tuple[Any, ...]:
    """A trained MLP on a teacher task, its prior retrained a little, and a validation error."""
    model, x, y, xv, yv = trained_teacher_mlp(seed)
    prior = sst.MixturePrior.from_weights(model, 9)
    opt = torch.optim.Adam([{"params": model.parameters()}, *prior.parameter_groups(1e-3)], lr=3e-3)
    for epoch in range(20):
        for xb, yb in zip(x.split(64), y.split(64)):
            opt.zero_grad()
            (F.cross_entropy(model(xb), yb) + prior(model, 0.3 / len(x))).backward()
            opt.step()
            prior.bound_widths_(epoch / 19)

    def error() -> float:
        with torch.no_grad():
            return float((model(xv).argmax(1) != yv).float().mean())

    return model, prior, x, y, error


def _epoch(model: Any, tuner: Any, x: Any, y: Any) -> None:
    for xb, yb in zip(x.split(64), y.split(64)):
        tuner.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        tuner.step()


def test_fine_tuning_keeps_the_module_on_its_state_and_the_file_exact(tmp_path: Path) -> None:
    model, prior, x, y, error = _task()
    prior.merge_(model)
    floats = {n: p.detach().clone() for n, p in model.named_parameters()}
    tuner = sst.FineTuner(model, prior, reassign_every=3, lr_weights=1e-2)
    start = tuner.state
    first = {n: i.clone() for n, i in start.indices.items()}
    for _ in range(3):
        _epoch(model, tuner, x, y)
        state = tuner.state
        for name, p in model.named_parameters():  # the module holds exactly the state's weights
            np.testing.assert_array_equal(p.detach().numpy(), state.weights()[name].numpy())
    assert float(tuner.values.detach()[0]) == 0.0  # the zero component's value stays exactly 0
    assert state.zero_index == 0
    mu = prior.mixture().mu
    np.testing.assert_array_equal(mu[list(state.components)], state.codebook.numpy())
    moved = sum(int((state.indices[n] != first[n]).sum()) for n in first)
    assert moved > 0  # straight through, weights changed component
    assert any(not torch.equal(tuner._shadows[n], floats[n]) for n in floats)
    written = sst.save_compressed(tmp_path / "ft.sws", model, prior, state=state)
    fresh = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))
    sst.load_compressed(tmp_path / "ft.sws", fresh)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), fresh.parameters()))
    assert written.file_bytes == (tmp_path / "ft.sws").stat().st_size
    # a kept state goes back in, and fine-tuning goes on from it
    assert tuner.restore_(start) is start
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), start.weights()[name].numpy())
    _epoch(model, tuner, x, y)
    assert error() < 0.5


def test_without_straight_through_the_assignment_is_kept() -> None:
    model, prior, x, y, _ = _task(1)
    prior.merge_(model)
    tuner = sst.FineTuner(model, prior, straight_through=False, reassign_every=1)
    before = tuner.state
    _epoch(model, tuner, x, y)
    after = tuner.state
    assert all(torch.equal(before.indices[n], after.indices[n]) for n in before.indices)
    assert not torch.equal(before.codebook, after.codebook)


def test_keep_pruned_keeps_pruned_weights_pruned() -> None:
    left = {}
    for keep in (False, True):
        model, prior, x, y, _ = _task(2)
        prior.merge_(model)
        tuner = sst.FineTuner(model, prior, reassign_every=1, lr_weights=3e-2, keep_pruned=keep)
        pruned = {n: p.detach() == 0 for n, p in model.named_parameters()}
        assert sum(int(m.sum()) for m in pruned.values()) > 100
        for _ in range(3):
            _epoch(model, tuner, x, y)
        weights = tuner.state.weights()
        left[keep] = sum(int((pruned[n] & (weights[n] != 0)).sum()) for n in pruned)
    assert left[True] == 0 < left[False]  # without it, straight-through moves them back out


def test_reassignment_runs_every_k_steps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    model, prior, x, y, _ = _task(2)
    prior.merge_(model)
    calls = []
    real = finetune_module.make_state
    monkeypatch.setattr(
        finetune_module, "make_state", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    tuner = sst.FineTuner(model, prior, reassign_every=4)
    _epoch(model, tuner, x, y)  # 8 steps
    assert tuner.steps == 8
    assert len(calls) == 2


def test_fine_tuner_refuses_bad_arguments() -> None:
    model, prior, *_ = _task(3)
    state = prior.snapshot(model)
    with pytest.raises(TypeError, match="prior must be a MixturePrior"):
        sst.FineTuner(model, "prior")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lr must be finite and above 0"):
        sst.FineTuner(model, prior, lr=0.0)
    with pytest.raises(TypeError, match="reassign_every must be a positive integer"):
        sst.FineTuner(model, prior, reassign_every=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reassign_every must be finite and above 0"):
        sst.FineTuner(model, prior, reassign_every=0)
    prior.merge_(model)
    with pytest.raises(ValueError, match="before merge_"):
        sst.FineTuner(model, prior, state)
    with pytest.raises(TypeError, match="QuantizedState"):
        sst.FineTuner(model, prior, "state")  # type: ignore[arg-type]


def test_chooser_picks_the_quantization_on_validation(tmp_path: Path) -> None:
    model, prior, _, _, error = _task(4)
    floats = {n: p.detach().clone() for n, p in model.named_parameters()}
    chooser = sst.Chooser(error)
    choice = chooser.choose_quantization_(model, prior, thresholds=(0.0, 1.0), mixture=False)
    assert len(choice.candidates) == 4
    assert choice.error == min(c[3] for c in choice.candidates)
    assert prior.n_components == len(choice.merge.kept)
    for name, p in model.named_parameters():  # the module keeps its float weights
        assert torch.equal(p, floats[name])
    assert choice.error == chooser._with_state(model, choice.state, prior)
    size = sst.save_compressed(tmp_path / "c.sws", model, state=choice.state, mixture=False)
    assert size.file_bytes == choice.file_bytes
    assert sst.load_compressed(tmp_path / "c.sws", model) is None  # no mixture stored
    assert "assignment: validation error" in str(choice)
    with pytest.raises(ValueError, match="must each hold a candidate"):
        chooser.choose_quantization_(model, prior, thresholds=())
    with pytest.raises(ValueError, match="tolerance must be finite"):
        chooser.choose_quantization_(model, prior, tolerance=-1.0)


def test_chooser_keeps_and_restores_the_best_checkpoint() -> None:
    model, prior, _, _, error = _task(5)
    scores = iter([0.3, 0.2, 0.25])
    chooser = sst.Chooser(lambda: next(scores))
    assert chooser.restore_best(model) is None
    chooser.keep_if_best(model, prior)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    state = prior.snapshot(model)
    chooser.keep_if_best(model, prior, state=state)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert chooser.keep_if_best(model, prior) == 0.25
    assert chooser.restore_best(model, prior) is state
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert chooser.best_error == 0.2
    # quantized: scored with the prior's quantization, the float weights left as they were
    q = sst.Chooser(error)
    q.keep_if_best(model, prior, quantized=True)
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert q.best_error == q.quantized_error(model, prior)
    with pytest.raises(ValueError, match="quantized=True needs the prior"):
        q.keep_if_best(model, quantized=True)
    with pytest.raises(ValueError, match="returned nan"):
        sst.Chooser(lambda: float("nan")).keep_if_best(model)
    with pytest.raises(TypeError, match="error must be a callable"):
        sst.Chooser(0.1)  # type: ignore[arg-type]


def test_from_weights_starts_wide_and_init_mixture_takes_sigma_std() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, 10_000).astype(np.float32)
    mix = compress.init_mixture(w, 9, sigma_std=2.0)
    np.testing.assert_allclose(mix.sigma, 2.0 * np.std(w.astype(np.float64)), rtol=1e-9)
    prior = sst.MixturePrior.from_weights([torch.from_numpy(w)], 9, dtype=torch.float64)
    assert prior.mixture() == mix
    narrow = sst.MixturePrior.from_weights([torch.from_numpy(w)], 9, sigma=0.01)
    np.testing.assert_allclose(narrow.mixture().sigma, 0.01, rtol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        compress.init_mixture(w, 9, sigma=0.1, sigma_std=2.0)
    with pytest.raises(ValueError, match="sigma_std must be finite and positive"):
        compress.init_mixture(w, 9, sigma_std=-1.0)
    with pytest.raises(ValueError, match="not all equal"):
        compress.init_mixture(np.ones(5), 9, sigma_std=2.0)


def test_bound_widths_holds_the_components_narrow() -> None:
    torch.manual_seed(0)
    w = torch.randn(1000) * 0.1
    prior = sst.MixturePrior.from_weights([w], 5)
    assert prior.max_sigma == pytest.approx(0.05 * float(w.abs().max()))
    with torch.no_grad():
        prior.log_var.fill_(0.0)  # sigma 1: far too wide
    prior.bound_widths_()
    sigma = prior.mixture().sigma
    assert sigma[0] == pytest.approx(1.0)  # the zero component is bounded only when asked
    np.testing.assert_allclose(sigma[1:], prior.max_sigma, rtol=1e-6)
    start = sst.MixturePrior.from_weights([w], 5).mixture().sigma[0]
    prior.bound_widths_(0.0)  # at the start the zero component may be as wide as it started
    assert prior.mixture().sigma[0] == pytest.approx(start, rel=1e-6)
    prior.bound_widths_(0.5)  # half-way it is narrowed to the bound
    assert prior.mixture().sigma[0] == pytest.approx(prior.max_sigma)
    prior.bound_widths_(max_sigma=0.01, zero_sigma=0.02)
    np.testing.assert_allclose(prior.mixture().sigma, [0.02, 0.01, 0.01, 0.01, 0.01], rtol=1e-6)
    free = sst.MixturePrior.from_weights([w], 5, max_sigma_fraction=None)
    assert free.max_sigma is None
    plain = sst.MixturePrior(mu=[0.0, 0.1], log_var=[0.0, 0.0], logit=[0.0, 0.0])
    plain.bound_widths_()  # no bound set: nothing changes
    assert torch.equal(plain.log_var.detach(), torch.zeros(2))
    with pytest.raises(ValueError, match="finite and above 0"):
        prior.bound_widths_(max_sigma=-1.0)
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\]"):
        prior.bound_widths_(1.5)
    with pytest.raises(ValueError, match="max_sigma_fraction must be finite"):
        sst.MixturePrior.from_weights([w], 5, max_sigma_fraction=0.0)
