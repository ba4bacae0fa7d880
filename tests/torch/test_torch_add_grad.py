"""``MixturePrior.add_grad_``: the penalty's gradients added into ``.grad`` without autograd.

``loss.backward(); prior.add_grad_(model, lam)`` must leave every ``.grad``
exactly as ``(loss + prior(model, lam)).backward()`` does, and a training run
with either form must follow the same trajectory, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="softshare.torch needs PyTorch")

import softshare.torch as sst
from softshare.compress import HyperPrior

LAM = 1e-3
CONFIGS = {
    "plain": {},
    "zero-component": {"zero_component": True},
    "pi-zero": {"zero_component": True, "pi_zero": 0.8},
    "hyperprior": {
        "zero_component": True,
        "hyperprior": HyperPrior(gamma=(5.0, 0.5), beta=(10.0, 2.0)),
    },
}


def make_setup(dtype: torch.dtype, seed: int = 0, **prior_kwargs: Any) -> tuple[Any, ...]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    ).to(dtype)
    m = 5
    prior = sst.MixturePrior(
        mu=torch.linspace(-0.3, 0.3, m, dtype=dtype),
        log_var=torch.full((m,), 2 * math.log(0.1), dtype=dtype),
        logit=torch.zeros(m, dtype=dtype),
        **prior_kwargs,
    )
    opt = torch.optim.Adam(
        [{"params": model.parameters()}, *prior.parameter_groups(1e-3, 1e-2, 1e-2)], lr=1e-2
    )
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(32, 20, generator=g, dtype=dtype)
    y = torch.randint(0, 4, (32,), generator=g)
    return model, prior, opt, x, y


def loss_of(model: Any, x: Any, y: Any) -> Any:
    return torch.nn.functional.cross_entropy(model(x), y)


def tensors(model: Any, prior: Any) -> list[Any]:
    return [*model.parameters(), *prior.parameters()]


def assert_same_grads(a: list[Any], b: list[Any]) -> None:
    for s, t in zip(a, b):
        assert (s.grad is None) == (t.grad is None)
        if s.grad is not None:
            assert s.grad.dtype == t.grad.dtype
            assert torch.equal(s.grad, t.grad), (s.shape, (s.grad - t.grad).abs().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_adam_trajectory_is_bit_identical(config: str, dtype: torch.dtype) -> None:
    plain = make_setup(dtype, **CONFIGS[config])
    direct = make_setup(dtype, **CONFIGS[config])
    for _ in range(20):
        model, prior, opt, x, y = plain
        opt.zero_grad(set_to_none=True)
        value = prior(model, LAM)
        (loss_of(model, x, y) + value).backward()
        model_d, prior_d, opt_d, _, _ = direct
        opt_d.zero_grad(set_to_none=True)
        loss_of(model_d, x, y).backward()
        got = prior_d.add_grad_(model_d, LAM)
        assert isinstance(got, float)
        assert got == value.item()
        assert_same_grads(tensors(model, prior), tensors(model_d, prior_d))
        assert all(p.grad.grad_fn is None for p in tensors(model_d, prior_d))
        opt.step()
        opt_d.step()
    for s, t in zip(tensors(*plain[:2]), tensors(*direct[:2])):
        assert torch.equal(s, t)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_grads_none_unused_frozen_and_threads(n_threads: int) -> None:
    # a layer the loss never reaches (.grad None after backward), a frozen one,
    # layers big enough for several blocks, float64 and float32 mixed
    def build() -> tuple[Any, ...]:
        torch.manual_seed(3)
        model = torch.nn.ModuleDict(
            {
                "a": torch.nn.Linear(100, 90),
                "unused": torch.nn.Linear(30, 7),
                "frozen": torch.nn.Linear(5, 5),
                "b": torch.nn.Linear(90, 3).double(),
            }
        )
        model["frozen"].weight.requires_grad_(False)
        prior = sst.MixturePrior(
            mu=[0.0, -0.1, 0.1], log_var=[-7.0, -5.0, -5.0], logit=[2.0, 0.0, 0.0]
        )
        x = torch.randn(8, 100)
        return model, prior, x

    def loss(model: Any, x: Any) -> Any:
        return model["b"](torch.relu(model["a"](x)).double()).square().mean()

    model, prior, x = build()
    (loss(model, x) + prior(model, LAM)).backward()
    model_d, prior_d, x_d = build()
    loss(model_d, x_d).backward()
    assert model_d["unused"].weight.grad is None
    prior_d.add_grad_(model_d, LAM, n_threads=n_threads)
    assert_same_grads(tensors(model, prior), tensors(model_d, prior_d))
    assert model_d["frozen"].weight.grad is None


def test_layouts_and_existing_grads() -> None:
    # channels_last conv kernels (non-contiguous weights), a non-contiguous
    # .grad, a .grad that is None: each path gives autograd's gradient and layout
    def build() -> tuple[Any, ...]:
        torch.manual_seed(5)
        conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
        lin = torch.nn.Linear(8, 4)
        prior = sst.MixturePrior(mu=[0.0, 0.2], log_var=[-6.0, -4.0], logit=[1.0, 0.0])
        return conv, lin, prior

    def loss(conv: Any, lin: Any) -> Any:
        x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
        return lin(conv(x).mean((2, 3))).sum()

    conv, lin, prior = build()
    (loss(conv, lin) + prior([conv.weight, conv.bias, lin.weight], LAM)).backward()
    conv_d, lin_d, prior_d = build()
    loss(conv_d, lin_d).backward()
    lin_d.weight.grad = lin_d.weight.grad.t().contiguous().t()  # same values, transposed layout
    conv_d.bias.grad = None
    prior_d.add_grad_([conv_d.weight, conv_d.bias, lin_d.weight], LAM)
    assert not conv_d.weight.is_contiguous()
    assert conv_d.weight.grad.stride() == conv.weight.grad.stride()
    assert_same_grads(
        [conv.weight, lin.weight, lin.bias], [conv_d.weight, lin_d.weight, lin_d.bias]
    )
    assert_same_grads(list(prior.parameters()), list(prior_d.parameters()))
    assert torch.equal(conv_d.bias.grad, _penalty_grad(conv.bias))  # the penalty's alone


def _penalty_grad(w: Any) -> Any:
    w = w.detach().clone().requires_grad_(True)
    prior = sst.MixturePrior(mu=[0.0, 0.2], log_var=[-6.0, -4.0], logit=[1.0, 0.0])
    prior([w], LAM).backward()
    return w.grad


def test_kept_grads_get_the_penalty_added_last() -> None:
    # A .grad kept from an earlier backward (gradient accumulation): G + g_loss
    # first, then + g_penalty; autograd adds G + (g_loss + g_penalty). Equal to
    # rounding; bit for bit the documented order.
    model, prior, _, x, y = make_setup(torch.float32)
    loss_of(model, x, y).backward()
    kept = [p.grad.clone() for p in model.parameters()]
    loss_of(model, x, y).backward()
    after_loss = [p.grad.clone() for p in model.parameters()]
    version = model[0].weight.grad._version
    prior.add_grad_(model, LAM)
    assert model[0].weight.grad._version > version  # written through its address: bumped
    for p, g in zip(model.parameters(), after_loss):
        assert torch.equal(p.grad, g + _penalty_grad_of(prior, model, p))
    model2, prior2, _, _, _ = make_setup(torch.float32)
    for p, g in zip(model2.parameters(), kept):
        p.grad = g.clone()
    (loss_of(model2, x, y) + prior2(model2, LAM)).backward()
    for p, q in zip(model.parameters(), model2.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9)


def _penalty_grad_of(prior: Any, model: Any, p: Any) -> Any:
    ws = [q.detach().clone().requires_grad_(True) for q in model.parameters()]
    mu, log_var, logit = (t.detach() for t in prior.effective())
    sst.penalty(ws, mu, log_var, logit, LAM).backward()
    return ws[[q is p for q in model.parameters()].index(True)].grad


@pytest.mark.parametrize("case", ["bfloat16", "twice", "non-leaf"])
def test_fallbacks_match_the_autograd_form(case: str) -> None:
    def build() -> tuple[Any, Any, Any]:
        torch.manual_seed(7)
        lin = torch.nn.Linear(12, 6)
        if case == "bfloat16":
            lin = lin.bfloat16()
        prior = sst.MixturePrior(
            mu=[0.0, -0.2, 0.2], log_var=[-6.0, -4.0, -4.0], logit=[1.0, 0.0, 0.0]
        )
        if case == "twice":
            weights = [lin.weight, lin.bias, lin.weight]
        elif case == "non-leaf":
            weights = [lin.weight * 2.0, lin.bias]
        else:
            weights = list(lin.parameters())
        return lin, prior, weights

    x = torch.randn(4, 12)
    lin, prior, weights = build()
    (lin(x.to(lin.weight.dtype)).sum() + prior(weights, LAM)).backward()
    lin_d, prior_d, weights_d = build()
    lin_d(x.to(lin_d.weight.dtype)).sum().backward()
    value = prior_d.add_grad_(weights_d, LAM)
    assert_same_grads(tensors(lin, prior), tensors(lin_d, prior_d))
    assert value == prior(build()[2] if case != "non-leaf" else weights, LAM).item()


def test_errors() -> None:
    model, prior, *_ = make_setup(torch.float32)
    split = sst.MixturePrior(mu=[0.0, 0.1], log_var=[-5.0, -5.0], logit=[0.0, 0.0], split_work=True)
    with pytest.raises(ValueError, match="add_grad_ does not support split_work"):
        split.add_grad_(model, LAM)
    with pytest.raises(ValueError, match="lam must be finite"):
        prior.add_grad_(model, -1.0)
    with pytest.raises(TypeError, match=r"weights\[1\] must be a torch.Tensor"):
        prior.add_grad_([model[0].weight, 0.5], LAM)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="real floating-point tensor"):
        prior.add_grad_([torch.zeros(3, dtype=torch.int64)], LAM)
    with torch.no_grad():
        model[0].weight[1, 2] = float("nan")
    with pytest.raises(
        ValueError, match=r"weights\[0\] must be finite: found nan at index \(1, 2\)"
    ):
        prior.add_grad_(model, LAM)


def test_overlapped_join_adds_directly_and_keeps_kept_grads() -> None:
    # join() now adds into .grad without autograd for the weights: with a kept
    # .grad it adds the penalty last, as add_grad_ does
    model, prior, _, x, y = make_setup(torch.float64)
    loss_of(model, x, y).backward()
    pending = prior.start(model, LAM, n_threads=1)
    loss_of(model, x, y).backward()
    pending.join()
    model_d, prior_d, _, _, _ = make_setup(torch.float64)
    loss_of(model_d, x, y).backward()
    loss_of(model_d, x, y).backward()
    prior_d.add_grad_(model_d, LAM)
    assert_same_grads(tensors(model, prior), tensors(model_d, prior_d))


@pytest.mark.parametrize("lam", [0.0, 1e-45, 3e38])
def test_extreme_lam_and_a_generator_of_parameters(lam: float) -> None:
    # lam = 0: +0 added (a -0.0 gradient becomes +0.0, as autograd's sum makes
    # it); lam a float32 subnormal or huge: the kernel's float64 paths
    model, prior, _, x, y = make_setup(torch.float32)
    (loss_of(model, x, y) + prior(model, lam)).backward()
    model_d, prior_d, _, _, _ = make_setup(torch.float32)
    loss_of(model_d, x, y).backward()
    prior_d.add_grad_(model_d.parameters(), lam)
    assert_same_grads(tensors(model, prior), tensors(model_d, prior_d))
