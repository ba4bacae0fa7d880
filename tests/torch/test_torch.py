"""softshare.torch: the penalty as a differentiable, compile-friendly torch op."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="softshare.torch needs PyTorch")

import softshare
import softshare.torch as sst
from softshare.testing import dense_penalty

BACKENDS = ["native", "torch"]


def make_inputs(dtype: torch.dtype, *, seed: int = 0, m: int = 4, requires_grad: bool = True):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    weights = [
        (0.3 * torch.randn(30, 20, generator=g, dtype=torch.float64)).to(dtype),
        (0.3 * torch.randn(17, generator=g, dtype=torch.float64)).to(dtype),
    ]
    mu = torch.linspace(-0.5, 0.5, m, dtype=dtype)
    log_var = torch.linspace(-4.0, -2.0, m, dtype=dtype)
    logit = torch.linspace(1.0, 0.0, m, dtype=dtype)
    tensors = [*weights, mu, log_var, logit]
    for t in tensors:
        t.requires_grad_(requires_grad)
    return weights, mu, log_var, logit


def grads_of(value, tensors):  # type: ignore[no-untyped-def]
    return torch.autograd.grad(value, tensors)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_plain_autograd(backend: str, dtype: torch.dtype) -> None:
    weights, mu, log_var, logit = make_inputs(dtype)
    tensors = [*weights, mu, log_var, logit]
    ours = sst.penalty(weights, mu, log_var, logit, 0.3, backend=backend)
    plain = dense_penalty(weights, mu, log_var, logit, 0.3)
    assert ours.dtype == dtype
    assert ours.shape == ()
    rtol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(ours, plain, rtol=rtol, atol=rtol * abs(plain.item()))
    for a, b in zip(grads_of(ours, tensors), grads_of(plain, tensors)):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        scale = b.abs().max().item()
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_single_tensor_and_list(backend: str) -> None:
    weights, mu, log_var, logit = make_inputs(torch.float64, m=3)

    def single(w, m, lv, lg):  # type: ignore[no-untyped-def]
        return sst.penalty(w, m, lv, lg, 0.7, backend=backend)

    def several(w0, w1, m, lv, lg):  # type: ignore[no-untyped-def]
        return sst.penalty([w0, w1], m, lv, lg, 0.7, backend=backend)

    assert torch.autograd.gradcheck(single, (weights[1], mu, log_var, logit))
    assert torch.autograd.gradcheck(several, (*weights, mu, log_var, logit))


# From torch 2.14, opcheck's AOT check itself hands torch.clone() copies of the inputs
# (non-leaf tensors) to aot_function, whose fake-tensor conversion reads their .grad
# (torch/_subclasses/meta_utils.py safe_grad). safe_grad hides that warning only from
# display (it swaps warnings.showwarning), so under filterwarnings=error it raises; a
# five-line custom op fails the same way. softshare reads no non-leaf .grad here.
@pytest.mark.filterwarnings(
    r"ignore:The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed"
    ":UserWarning"
)
@pytest.mark.parametrize("backend", ["auto", *BACKENDS])
def test_opcheck(backend: str) -> None:
    weights, mu, log_var, logit = make_inputs(torch.float64, m=3)
    torch.library.opcheck(
        torch.ops.softshare.penalty.default, (weights, mu, log_var, logit, 0.5, backend)
    )
    weights32, *params32 = make_inputs(torch.float32, m=5)
    torch.library.opcheck(torch.ops.softshare.penalty.default, (weights32, *params32, 1.0, backend))


def test_only_requested_gradients_and_parameters_generator() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    mu = torch.tensor([0.0, 0.3, -0.3])
    log_var = torch.tensor([-6.0, -4.0, -4.0])
    logit = torch.tensor([1.0, 0.0, 0.0], requires_grad=True)
    value = sst.penalty(model.parameters(), mu, log_var, logit, 1e-2)
    value.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert mu.grad is None
    assert logit.grad is not None
    assert abs(float(logit.grad.sum())) < 1e-5  # softmax logits: gradient sums to 0


def test_native_path_shares_memory_and_handles_strides(monkeypatch: pytest.MonkeyPatch) -> None:
    import softshare._penalty

    seen: list[tuple[int, int, int, bool]] = []
    real_core = softshare._penalty._core

    class Recorder:
        @staticmethod
        def penalty_raw(segments, *args):  # type: ignore[no-untyped-def]
            seen.extend(segments)
            return real_core.penalty_raw(segments, *args)

    monkeypatch.setattr(softshare._penalty, "_core", Recorder)
    base = torch.randn(40, 30, dtype=torch.float32)
    strided = base[::2, ::3]
    assert not strided.is_contiguous()
    mu, log_var, logit = (
        torch.tensor([0.0, 0.5]),
        torch.tensor([-1.0, -1.0]),
        torch.tensor([0.0, 0.0]),
    )
    a = sst.penalty(strided, mu, log_var, logit, backend="native")
    contiguous = strided.contiguous()
    b = sst.penalty(contiguous, mu, log_var, logit, backend="native")
    assert a.item() == b.item()
    # the kernel read the contiguous tensor's own memory (no copy), the strided one a copy
    assert len(seen) == 2
    lo, hi = base.data_ptr(), base.data_ptr() + base.numel() * 4
    assert not lo <= seen[0][0] < hi
    assert seen[0][2] == strided.numel()
    assert seen[1][0] == contiguous.data_ptr()


def test_half_precision_and_bfloat16_use_the_torch_path() -> None:
    weights, mu, log_var, logit = make_inputs(torch.float64, requires_grad=False)
    ref = sst.penalty(weights, mu, log_var, logit, 0.5)
    for dtype in (torch.bfloat16, torch.float16):
        low = [w.to(dtype).requires_grad_(True) for w in weights]
        value = sst.penalty(low, mu.float(), log_var.float(), logit.float(), 0.5)
        (g,) = torch.autograd.grad(value, [low[0]])
        assert g.dtype == dtype
        # the weights themselves were rounded to 8/11 bits
        torch.testing.assert_close(value.double(), ref, rtol=2e-2, atol=0.0)
    with pytest.raises(ValueError, match="backend='native' needs CPU tensors and float32/float64"):
        sst.penalty([weights[0].to(torch.bfloat16)], mu, log_var, logit, backend="native")


def test_compiled_training_step_matches_eager() -> None:
    torch.manual_seed(0)

    def make():  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)
        )
        prior = sst.MixturePrior(
            mu=[0.0, -0.2, 0.2], log_var=[-6.0, -5.0, -5.0], logit=[2.0, 0.0, 0.0]
        )
        opt = torch.optim.SGD(
            [{"params": model.parameters()}, *prior.parameter_groups(1e-3, 1e-3, 1e-3)], lr=0.05
        )
        return model, prior, opt

    x = torch.randn(64, 16)
    y = torch.randint(0, 4, (64,))

    def step(model, prior, opt):  # type: ignore[no-untyped-def]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + prior(model, 1e-3)
        loss.backward()
        return loss

    eager = make()
    compiled = make()
    torch._dynamo.reset()
    compiled_loss_fn = torch.compile(
        lambda m, p: torch.nn.functional.cross_entropy(m(x), y) + p(m, 1e-3), fullgraph=True
    )
    for _ in range(3):
        loss_e = step(*eager)
        eager[2].step()
        m, p, opt = compiled
        opt.zero_grad()
        loss_c = compiled_loss_fn(m, p)
        loss_c.backward()
        opt.step()
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled[0].parameters(), eager[0].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled[1].mu, eager[1].mu, rtol=1e-5, atol=1e-7)


def test_mixture_prior_module() -> None:
    mix = softshare.Mixture([0.0, 0.1, -0.1], [-8.0, -6.0, -6.0], [2.0, 0.0, 0.0])
    prior = sst.MixturePrior.from_mixture(mix)
    assert prior.n_components == 3
    assert isinstance(prior.mu, torch.nn.Parameter)
    assert prior.mu.dtype == torch.get_default_dtype()
    snap = prior.mixture()
    np.testing.assert_allclose(snap.mu, mix.mu, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(snap.logit, mix.logit, rtol=1e-6)

    # a prior registered inside the model does not penalise itself
    model = torch.nn.Linear(5, 3)
    model.prior = prior
    params = prior.penalized_parameters(model)
    assert len(params) == 2
    assert all(p is not prior.mu for p in params)
    value = prior(model, lam=0.1)
    direct = sst.penalty([model.weight, model.bias], prior.mu, prior.log_var, prior.logit, 0.1)
    assert value.item() == direct.item()

    groups = prior.parameter_groups(lr_mu=1e-3, lr_logit=5e-3)
    assert [g["params"][0] for g in groups] == [prior.mu, prior.log_var, prior.logit]
    assert groups[0]["lr"] == 1e-3
    assert "lr" not in groups[1]
    assert groups[2]["lr"] == 5e-3

    state = prior.state_dict()
    other = sst.MixturePrior([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    other.load_state_dict(state)
    for a, b in zip(other.parameters(), prior.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_weights(backend: str) -> None:
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    with pytest.raises(ValueError, match=r"weights\[0\] must be finite"):
        sst.penalty(torch.tensor([float("nan")]), mu, log_var, logit, backend=backend)
    with pytest.raises(
        ValueError, match=r"weights\[1\] must be finite: found inf at index \(1, 0\)"
    ):
        sst.penalty(
            [torch.zeros(2), torch.tensor([[0.0], [float("inf")]])],
            mu,
            log_var,
            logit,
            backend=backend,
        )


def test_bad_arguments() -> None:
    w = torch.zeros(4)
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    with pytest.raises(ValueError, match=r"lam must be finite and >= 0"):
        sst.penalty(w, mu, log_var, logit, -1.0)
    with pytest.raises(ValueError, match=r"backend must be one of"):
        sst.penalty(w, mu, log_var, logit, backend="cuda")
    with pytest.raises(ValueError, match=r"1-D tensors of one length M >= 1"):
        sst.penalty(w, mu, torch.zeros(3), logit)
    with pytest.raises(ValueError, match=r"log_var must be finite"):
        sst.penalty(w, mu, torch.tensor([0.0, float("inf")]), logit)
    with pytest.raises(TypeError, match=r"weights\[1\] must be a torch.Tensor"):
        sst.penalty([w, np.zeros(3)], mu, log_var, logit)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"mu must be finite"):
        sst.MixturePrior([float("nan")], [0.0], [0.0])


def test_empty_weights() -> None:
    mu, log_var, logit = torch.zeros(2), torch.zeros(2), torch.zeros(2, requires_grad=True)
    for backend in BACKENDS:
        value = sst.penalty([torch.zeros(0)], mu, log_var, logit, backend=backend)
        assert value.item() == 0.0


def test_import_softshare_does_not_import_torch() -> None:
    code = "import sys, softshare; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("mu_dtype", "rest_dtype", "logit_shift", "lam"),
    [
        (torch.float32, torch.float32, 0.0, 1e-3),
        (torch.float64, torch.float64, 0.0, 0.7),
        (torch.float32, torch.float64, 0.0, 2.0),  # mixed: one float64 copy of the rows
        (torch.float64, torch.float64, 1e3, 1e-2),  # |logit| > 64: ln pi from the top first
        (torch.float64, torch.float64, 0.0, 0.0),  # lam = 0: every output exactly 0
    ],
)
def test_native_step_matches_numpy_totals(
    mu_dtype: torch.dtype, rest_dtype: torch.dtype, logit_shift: float, lam: float
) -> None:
    """The value and mixture gradients the kernel finishes natively equal NumPy's totals."""
    gen = torch.Generator().manual_seed(3)
    weights = [
        torch.randn(40, 7, generator=gen) * 0.3,
        torch.randn(9, generator=gen, dtype=torch.float64),
    ]
    mu = torch.tensor([0.0, -0.4, 0.35, 0.8], dtype=mu_dtype, requires_grad=True)
    log_var = torch.tensor([-6.0, -3.0, -2.5, -4.0], dtype=rest_dtype, requires_grad=True)
    logit = torch.tensor([2.0, 0.1, -0.3, -1.0], dtype=rest_dtype) + logit_shift
    logit.requires_grad_(True)
    for w in weights:
        w.requires_grad_(True)
    value = sst.penalty(weights, mu, log_var, logit, lam, backend="native")
    value.backward()
    mixture = softshare.Mixture(
        mu.detach().double().numpy(),
        log_var.detach().double().numpy(),
        logit.detach().double().numpy(),
    )
    ref = softshare.penalty([w.detach().numpy() for w in weights], mixture, lam)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(ref.value, rel=1e-12, abs=0.0)
    for p, want in ((mu, ref.grad_mu), (log_var, ref.grad_log_var), (logit, ref.grad_logit)):
        assert p.grad is not None
        assert p.grad.dtype == p.dtype
        rtol = 1e-12 if p.dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(p.grad.double().numpy(), want, rtol=rtol, atol=rtol * 1e-3)
    for w, want in zip(weights, ref.grad_w):
        assert w.grad is not None
        np.testing.assert_array_equal(w.grad.numpy(), want)
    if lam == 0.0:
        assert value.item() == 0.0
        assert all(not p.grad.any() for p in (mu, log_var, logit, *weights))  # type: ignore[union-attr]


def test_native_step_refuses_a_bad_mixture_with_mixtures_error() -> None:
    w = torch.randn(50, requires_grad=True)
    good = torch.tensor([0.0, 0.5])
    with pytest.raises(ValueError, match="mu"):
        sst.penalty(w, torch.tensor([0.0, float("nan")]), good, good, backend="native")
    with pytest.raises(ValueError, match="log_var"):
        sst.penalty(w, good, torch.tensor([0.0, 800.0]), good, backend="native")
    assert w.grad is None


def test_fallback_keeps_a_weight_closer_to_its_mean_than_float32_resolves() -> None:
    # w and mu round to the same float32: w - mu_float32 is 0, the true distance 3e-8
    w = torch.tensor([0.7598443], dtype=torch.float32, requires_grad=False)
    mu = torch.tensor([0.75984427], dtype=torch.float64, requires_grad=True)
    log_var, logit = torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    sst.penalty(w, mu, log_var, logit, 1.0, backend="torch").backward()
    mix = softshare.Mixture(mu.detach().numpy(), log_var.numpy(), logit.numpy())
    want = softshare.reference.penalty(w.double().numpy(), mix, 1.0).grad_mu
    assert mu.grad is not None
    np.testing.assert_allclose(mu.grad.numpy(), want, rtol=1e-6)
