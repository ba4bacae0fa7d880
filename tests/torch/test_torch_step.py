"""softshare.torch inside a training step: the eager path's autograd and the overlapped penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="softshare.torch needs PyTorch")

import softshare
import softshare.torch as sst
from softshare.compress import HyperPrior

LAM = 1e-3


def make_setup(seed: int = 0, **prior_kwargs):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    m = 5
    prior = sst.MixturePrior(
        mu=torch.linspace(-0.3, 0.3, m),
        log_var=torch.full((m,), 2 * math.log(0.1)),
        logit=torch.zeros(m),
        **prior_kwargs,
    )
    opt = torch.optim.Adam(
        [{"params": model.parameters()}, *prior.parameter_groups(1e-3, 1e-2, 1e-2)], lr=1e-2
    )
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(32, 20, generator=g)
    y = torch.randint(0, 4, (32,), generator=g)
    return model, prior, opt, x, y


def plain_step(model, prior, opt, x, y) -> float:  # type: ignore[no-untyped-def]
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y) + prior(model, LAM)
    loss.backward()
    opt.step()
    return loss.item()


def overlapped_step(model, prior, opt, x, y, n_threads=None) -> float:  # type: ignore[no-untyped-def]
    opt.zero_grad(set_to_none=True)
    pending = prior.start(model, LAM, n_threads=n_threads)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    value = pending.join()
    opt.step()
    return (loss + value).item()


def all_params(model, prior):  # type: ignore[no-untyped-def]
    return [*model.parameters(), *prior.parameters()]


@pytest.mark.parametrize(
    "prior_kwargs",
    [
        {},
        {"zero_component": True, "pi_zero": 0.8},
        {"zero_component": True, "hyperprior": HyperPrior(gamma=(5.0, 0.5), beta=(10.0, 2.0))},
    ],
    ids=["plain", "zero-component", "hyperprior"],
)
@pytest.mark.parametrize("n_threads", [1, None], ids=["background", "default"])
def test_overlapped_trajectory_is_bit_identical(prior_kwargs: dict, n_threads: int | None) -> None:  # type: ignore[type-arg]
    plain = make_setup(**dict(prior_kwargs))
    over = make_setup(**dict(prior_kwargs))
    for step in range(20):
        loss_p = plain_step(*plain)
        loss_o = overlapped_step(*over, n_threads=n_threads)
        if step == 0:
            for a, b in zip(all_params(*plain[:2]), all_params(*over[:2])):
                assert a.grad is not None
                assert b.grad is not None
                assert torch.equal(a.grad, b.grad)
        assert math.isclose(loss_p, loss_o, rel_tol=1e-6)
    for a, b in zip(all_params(*plain[:2]), all_params(*over[:2])):
        assert torch.equal(a, b)
        assert torch.equal(a.grad, b.grad)
    # the trajectory moved: a test of equality between two runs that stood still proves nothing
    fresh = make_setup(**dict(prior_kwargs))
    assert not torch.equal(next(plain[0].parameters()), next(fresh[0].parameters()))


def test_start_penalty_matches_penalty_and_reports_the_value() -> None:
    model, prior, *_ = make_setup()
    params = list(model.parameters())
    value = sst.penalty(params, *prior.effective(), LAM)
    value.backward()
    expected = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    pending = sst.start_penalty(params, *prior.effective(), LAM, n_threads=1)
    got = pending.join()
    assert pending.done()
    assert not got.requires_grad
    assert got.item() == value.item()
    for p, e in zip(params, expected):
        assert torch.equal(p.grad, e)


def test_join_refuses_changed_weights_and_a_second_join() -> None:
    model, prior, _opt, _x, _y = make_setup()
    pending = prior.start(model, LAM)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="changed in place"):
        pending.join()
    with pytest.raises(RuntimeError, match="joined already"):
        pending.join()


def test_join_raises_what_the_pass_raised() -> None:
    w = torch.tensor([0.0, float("nan")], requires_grad=True)
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    pending = sst.start_penalty(w, mu, log_var, logit)
    with pytest.raises(ValueError, match="must be finite"):
        pending.join()


def test_start_refuses_what_it_cannot_overlap() -> None:
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    with pytest.raises(ValueError, match="CPU tensors and float32/float64"):
        sst.start_penalty(torch.zeros(3, dtype=torch.float16), mu, log_var, logit)
    with pytest.raises(ValueError, match=r"1-D"):
        sst.start_penalty(torch.zeros(3), torch.zeros(2, 2), log_var, logit)
    with pytest.raises(ValueError, match="n_threads"):
        sst.start_penalty(torch.zeros(3), mu, log_var, logit, n_threads=0)
    prior = sst.MixturePrior([0.0, 0.1], [-4.0, -4.0], [0.0, 0.0], split_work=True)
    with pytest.raises(ValueError, match="split_work"):
        prior.start(torch.nn.Linear(2, 2))


def test_backward_hands_over_its_gradients_once_unless_the_graph_is_retained() -> None:
    model, prior, *_ = make_setup()
    params = list(model.parameters())
    value = prior(model, LAM)
    value.backward(retain_graph=True)
    first = [p.grad.clone() for p in params]
    value.backward()  # the graph was retained: the same gradients again, accumulated
    for p, f in zip(params, first):
        torch.testing.assert_close(p.grad, 2 * f)
    with pytest.raises(RuntimeError, match="second time"):
        value.backward()
    # scaled by a non-unit incoming gradient
    for p in params:
        p.grad = None
    (3.0 * prior(model, LAM)).backward()
    for p, f in zip(params, first):
        torch.testing.assert_close(p.grad, 3 * f)


def test_gradient_matches_numpy_and_is_not_aliased_across_steps() -> None:
    model, prior, *_ = make_setup()
    params = list(model.parameters())
    prior(model, LAM).backward()
    grads = [p.grad for p in params]
    ref = softshare.penalty([p.detach().numpy() for p in params], prior.mixture(), LAM)
    for g, r in zip(grads, ref.grad_w):
        np.testing.assert_array_equal(g.numpy(), r)
    snapshot = [g.clone() for g in grads]
    for p in params:
        p.grad = None
    prior(model, 2 * LAM).backward()  # a later step must not write into the first .grad tensors
    for g, s in zip(grads, snapshot):
        assert torch.equal(g, s)


def test_penalize_selects_what_the_prior_applies_to() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    mix = ([0.0, 0.1], [-4.0, -4.0], [0.0, 0.0])
    weights = [p for p in model.parameters() if p.dim() >= 2]
    for penalize, expected in [
        ("all", list(model.parameters())),
        ("weights", weights),
        (lambda name, _p: name.endswith("bias"), [model[0].bias, model[1].bias, model[2].bias]),
    ]:
        prior = sst.MixturePrior(*mix, penalize=penalize)
        chosen = prior.penalized_parameters(model)
        assert [id(p) for p in chosen] == [id(p) for p in expected]
        direct = sst.penalty(expected, *prior.effective(), LAM)
        assert prior(model, LAM).item() == direct.item()
    for p in model.parameters():
        p.grad = None
    sst.MixturePrior(*mix, penalize="weights")(model, LAM).backward()
    assert model[0].bias.grad is None
    assert model[0].weight.grad is not None
    with pytest.raises(ValueError, match="penalize must be"):
        sst.MixturePrior(*mix, penalize="biases")


def test_start_runs_at_once_when_torch_takes_every_core() -> None:
    from softshare._inputs import cpu_count

    model, prior, *_ = make_setup()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(cpu_count())
        pending = prior.start(model, LAM)  # no free core: no background thread
        assert pending._thread is None
        assert pending.done()
        torch.set_num_threads(1)
        if cpu_count() > 1:
            assert prior.start(model, LAM)._thread is not None
    finally:
        torch.set_num_threads(before)
    pending.join()
