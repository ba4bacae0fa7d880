"""The compression recipe from a user's own PyTorch loop: ``MixturePrior``'s merge, quantize,
fine-tune and report steps, agreeing with ``softshare.compress`` on the same weights."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import softshare
import softshare.torch as sst
from softshare import compress

nn = torch.nn
F = torch.nn.functional


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyNet(nn.Module):
    """A user's own network: a convolution and two dense layers on 6x6 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x: Any) -> Any:
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


def _user_recipe(path: Path) -> dict[str, Any]:
    """The whole recipe as a user writes it: tensors only, no NumPy."""
    torch.manual_seed(0)
    teacher = torch.randn(36, 3)
    x, xv = torch.randn(512, 1, 6, 6), torch.randn(256, 1, 6, 6)
    y, yv = (x.flatten(1) @ teacher).argmax(1), (xv.flatten(1) @ teacher).argmax(1)
    model = TinyNet()

    def error() -> float:
        with torch.no_grad():
            return float((model(xv).argmax(1) != yv).float().mean())

    def epoch(opt: Any, prior: Any = None, state: Any = None, progress: float = 1.0) -> Any:
        for xb, yb in zip(x.split(64), y.split(64)):
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            if prior is not None and state is None:
                loss = loss + prior(model, lam=5.0 / len(x))
            loss.backward()
            opt.step()
            if prior is not None and state is None:
                prior.bound_widths_(progress)
            if state is not None:  # fine-tuning: the step projected onto the shared values
                state = prior.requantize_(model, state)
        return state

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        epoch(opt)
    err_pretrained = error()
    prior = sst.MixturePrior.from_weights(model, 9)
    groups = prior.parameter_groups(lr_mu=1e-3, lr_log_var=1e-2, lr_logit=1e-2)
    opt = torch.optim.Adam([{"params": model.parameters()}, *groups], lr=3e-3)
    for k in range(30):
        epoch(opt, prior, progress=k / 29)
    n_before = prior.n_components
    merged = prior.merge_(model)
    state = prior.quantize_(model)
    err_quantized = error()
    weights_quantized = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        state = epoch(opt, prior, state)
    report = state.compression_report()
    written = sst.save_compressed(path, model, prior)
    fresh = TinyNet()
    mixture = sst.load_compressed(path, fresh)
    return {
        "model": model,
        "fresh": fresh,
        "prior": prior,
        "state": state,
        "n_before": n_before,
        "merged": merged,
        "report": report,
        "written": written,
        "mixture": mixture,
        "weights_quantized": weights_quantized,
        "errors": (err_pretrained, err_quantized, error()),
    }


def test_whole_recipe_from_a_user_loop(tmp_path: Path) -> None:
    source = inspect.getsource(_user_recipe) + inspect.getsource(TinyNet)
    assert "np." not in source
    assert "numpy" not in source.replace("no NumPy", "")
    out = _user_recipe(tmp_path / "tiny.sws")
    model, fresh, prior, state = out["model"], out["fresh"], out["prior"], out["state"]
    err_pretrained, err_quantized, err_finetuned = out["errors"]
    assert err_pretrained < 0.3  # the network learnt the task
    assert err_finetuned <= err_quantized + 0.05
    assert prior.n_components == len(out["merged"].kept) <= out["n_before"]
    # every penalised weight holds its value; the zero component's are exactly 0
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.detach().numpy(), state.weights()[name].numpy())
    assert state.zero_index == 0
    assert float(state.codebook[0]) == 0.0
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    assert zeros == sum(int((i == 0).sum()) for i in state.indices.values()) > 0
    # fine-tuning kept the assignment, moved the non-zero values, and the prior followed them
    for name, idx in state.indices.items():
        q = out["weights_quantized"][name]
        assert torch.equal(q == 0, idx == 0)
    assert set(state.components) <= set(range(prior.n_components))
    mu = prior.mixture().mu
    np.testing.assert_array_equal(mu[list(state.components)], state.codebook.numpy())
    # the report, the same figures from the prior, and the file's real bytes
    report = out["report"]
    assert [c.name for c in report.layers] == [n for n, _ in model.named_parameters()]
    assert report.layers[0].kind == "conv"
    assert report.layers[2].kind == "dense"
    assert report.nonzero_fraction == pytest.approx(state.nonzero_fraction)
    assert 0 < report.nonzero_fraction < 1
    assert report.ratio > 1
    again = prior.compression_report(model)
    assert (again.bits_huffman, again.nonzero_fraction) == (
        report.bits_huffman,
        report.nonzero_fraction,
    )
    assert report.with_file(out["written"]).ratio_file > 1
    # the file round trip gives back exactly the fine-tuned weights and the prior's mixture
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
    assert out["mixture"] == prior.mixture()


def _layers(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "conv.weight": rng.normal(0.0, 0.2, (4, 2, 3, 3)).astype(np.float32),
        "fc.weight": rng.normal(0.0, 0.15, (20, 30)).astype(np.float32),
        "fc.bias": rng.normal(0.0, 0.05, 20).astype(np.float32),
    }


def _mixture() -> softshare.Mixture:
    mu = [0.0, -0.3, -0.15, -0.14, 0.1, 0.11, 0.3, 0.9]
    sigma = [0.05, 0.06, 0.05, 0.05, 0.05, 0.05, 0.06, 0.05]
    pi = [0.6, 0.06, 0.07, 0.07, 0.07, 0.07, 0.06, 1e-7]
    return softshare.Mixture.from_pi_sigma(pi, mu, sigma)


def _tensors(layers: dict[str, np.ndarray]) -> list[Any]:
    return [nn.Parameter(torch.from_numpy(a.copy())) for a in layers.values()]


@pytest.mark.parametrize("use_pi", [True, False])
def test_snapshot_quantize_and_report_agree_with_compress(use_pi: bool) -> None:
    layers, mix = _layers(), _mixture()
    prior = sst.MixturePrior.from_mixture(mix, dtype=torch.float64, zero_component=True)
    params = _tensors(layers)
    state = prior.snapshot(params, use_pi=use_pi)
    quantized, indices = compress.quantize(list(layers.values()), mix, use_pi=use_pi)
    components = torch.tensor(state.components)
    for idx, ref_idx in zip(state.indices.values(), indices):
        np.testing.assert_array_equal(components[idx].numpy(), ref_idx)  # the same components
    # the export, index for index and value for value
    named = dict(zip(("0", "1", "2"), layers.values()))
    ref_export = compress.export_quantized(named, mix, use_pi=use_pi)
    export = state.export()
    assert set(export) == set(ref_export)
    for name, arr in ref_export.items():
        assert export[name].numpy().dtype == arr.dtype
        np.testing.assert_array_equal(export[name].numpy(), arr)
    # the report's figures, from compress's export of the same weights
    kinds = {"0": "conv", "1": "dense", "2": "dense"}
    ref_indices = {n: ref_export[n] for n in named}
    ref = compress.compression_report(ref_indices, ref_export["codebook"], kinds=kinds)
    got = prior.compression_report(params, use_pi=use_pi)
    assert got == ref
    assert (got.nonzero_fraction, got.bits_huffman, got.ratio) == (
        ref.nonzero_fraction, ref.bits_huffman, ref.ratio,
    )  # fmt: skip
    # quantize_ writes compress's quantized weights, exactly, in place
    before = [id(p) for p in params]
    prior.quantize_(params, use_pi=use_pi)
    assert [id(p) for p in params] == before
    for p, q in zip(params, quantized):
        np.testing.assert_array_equal(p.detach().numpy(), q)


def test_merge_agrees_with_compress_and_keeps_the_parameters() -> None:
    layers, mix = _layers(), _mixture()
    prior = sst.MixturePrior.from_mixture(mix, dtype=torch.float64, zero_component=True)
    mu_param = prior.mu
    prior.mu.grad = torch.ones_like(prior.mu)
    params = _tensors(layers)
    merged, ref_report = compress.merge_components(mix, list(layers.values()), threshold=1.0)
    report = prior.merge_(params, threshold=1.0)
    assert report == ref_report
    assert report.merged
    assert report.pruned == [7]
    assert prior.n_components == merged.n_components == len(report.kept)
    assert prior.mu is mu_param
    assert prior.mu.grad is None
    got = prior.mixture()
    np.testing.assert_array_equal(got.mu, merged.mu)
    np.testing.assert_array_equal(got.log_var, merged.log_var)
    np.testing.assert_allclose(got.logit, merged.logit, atol=1e-12)
    # without weights nothing is pruned; threshold 0 merges nothing
    prior2 = sst.MixturePrior.from_mixture(mix, zero_component=True)
    assert prior2.merge_(threshold=0.0).kept == list(range(8))


def test_merge_keeps_a_fixed_pi_zero() -> None:
    prior = sst.MixturePrior.from_mixture(_mixture(), dtype=torch.float64, pi_zero=0.9)
    report = prior.merge_(_tensors(_layers()))
    assert report.kept[0] == 0
    assert prior.mixture().pi[0] == pytest.approx(0.9, abs=1e-12)
    assert prior.mixture().pi.sum() == pytest.approx(1.0)


def test_map_and_likelihood_differ_where_they_should() -> None:
    # a heavy zero component and a light one at 0.3, both sigma 0.1: at 0.2 the
    # likelihood picks the nearer mean 0.3, MAP the far more probable zero
    prior = sst.MixturePrior.from_mixture(
        softshare.Mixture.from_pi_sigma([0.99, 0.01], [0.0, 0.3], [0.1, 0.1]),
        zero_component=True,
    )
    w = torch.tensor([0.0, 0.2, 0.5, -0.01])
    by_map = prior.snapshot(w, use_pi=True).weights()["0"]
    assert by_map.tolist() == pytest.approx([0, 0, 0.3, 0])
    assert prior.snapshot(w, use_pi=False).weights()["0"].tolist() == pytest.approx(
        [0, 0.3, 0.3, 0]
    )
    prior.quantize_(w)
    assert w[1].item() == 0.0  # exactly zero
    assert torch.equal(w, by_map)


def test_requantize_refits_the_values_and_restores_a_kept_state() -> None:
    prior = sst.MixturePrior.from_mixture(
        softshare.Mixture.from_pi_sigma([0.5, 0.25, 0.25], [0.0, -0.5, 0.5], [0.1, 0.1, 0.1]),
        zero_component=True,
    )
    w = nn.Parameter(torch.tensor([0.05, -0.45, -0.6, 0.5, 0.52, 0.01]))
    kept = prior.quantize_(w)
    assert kept.counts == (2, 2, 2)
    assert kept.n_weights == 6
    assert w.tolist() == pytest.approx([0.0, -0.5, -0.5, 0.5, 0.5, 0.0])
    with torch.no_grad():
        w += torch.tensor([0.1, 0.2, 0.0, 0.1, 0.3, -0.2])  # as an optimizer step would
    state = prior.requantize_(w, kept)
    assert state.codebook.tolist() == pytest.approx([0.0, -0.4, 0.7])
    assert w.tolist() == pytest.approx([0.0, -0.4, -0.4, 0.7, 0.7, 0.0])
    assert prior.mixture().mu.tolist() == pytest.approx([0.0, -0.4, 0.7])
    assert kept.codebook.tolist() == pytest.approx([0.0, -0.5, 0.5])  # a state never changes
    prior.requantize_(w, kept, refit=False)
    assert w.tolist() == pytest.approx([0.0, -0.5, -0.5, 0.5, 0.5, 0.0])
    assert prior.mixture().mu.tolist() == pytest.approx([0.0, -0.5, 0.5])


def test_penalize_weights_leaves_the_biases_alone() -> None:
    torch.manual_seed(3)
    model = TinyNet()
    prior = sst.MixturePrior.from_weights(model, 5, penalize="weights")
    biases = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 1}
    state = prior.quantize_(model)
    assert sorted(state.indices) == ["conv.weight", "fc1.weight", "fc2.weight"]
    for name, b in biases.items():
        assert torch.equal(model.get_parameter(name), b)
    assert [c.name for c in state.compression_report().layers] == list(state.indices)


@pytest.mark.parametrize("use_pi", [True, False])
def test_the_file_holds_the_module_after_quantize_and_requantize(
    tmp_path: Path, use_pi: bool
) -> None:
    # the light component's weights lie beyond 0.5, but at its own mean the zero
    # component (by MAP: far heavier; by likelihood: far narrower) is the likelier
    # one: assigning the quantized module afresh would move them. save_compressed
    # given the state writes it as it is: the file holds exactly the module, and
    # the prior's variances are left alone
    mean, sigma = (0.25, [0.1, 0.1]) if use_pi else (0.05, [0.05, 0.5])
    mixture = softshare.Mixture.from_pi_sigma([0.999, 0.001], [0.0, mean], sigma)
    prior = sst.MixturePrior.from_mixture(mixture, dtype=torch.float64, zero_component=True)
    w = nn.Parameter(torch.tensor([0.0, 0.6, 0.7, 0.01], dtype=torch.float64))
    assert prior.snapshot(torch.tensor([mean]), use_pi=use_pi).weights()["0"].item() == 0.0
    module = nn.ParameterList([w])
    state = prior.quantize_(module, use_pi=use_pi)
    assert w.tolist() == [0.0, mean, mean, 0.0]
    np.testing.assert_array_equal(prior.log_var.detach().numpy(), mixture.log_var)
    written = sst.save_compressed(tmp_path / "w.sws", module, prior, state=state)
    assert written.indices["0"].tolist() == state.indices["0"].tolist()
    np.testing.assert_array_equal(compress.read_file(tmp_path / "w.sws")["0"], w.detach().numpy())
    with torch.no_grad():
        w += torch.tensor([0.0, 0.01, 0.03, 0.0], dtype=torch.float64)
    state = prior.requantize_(module, state)
    assert w.tolist() == [0.0, mean + 0.02, mean + 0.02, 0.0]
    sst.save_compressed(tmp_path / "w.sws", module, prior, state=state)
    np.testing.assert_array_equal(compress.read_file(tmp_path / "w.sws")["0"], w.detach().numpy())
    fresh = nn.ParameterList([nn.Parameter(torch.zeros(4, dtype=torch.float64))])
    sst.load_compressed(tmp_path / "w.sws", fresh)
    assert torch.equal(fresh[0], w)


def test_bad_input_raises_clear_errors() -> None:
    prior = sst.MixturePrior.from_mixture(_mixture(), zero_component=True)
    model = TinyNet()
    with pytest.raises(TypeError, match="use_pi must be True or False"):
        prior.quantize_(model, use_pi="map")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state must be a QuantizedState"):
        prior.requantize_(model, {"codebook": torch.zeros(3)})  # type: ignore[arg-type]
    state = prior.snapshot(model)
    with pytest.raises(ValueError, match="are not the state's"):
        prior.requantize_(nn.Linear(3, 2), state)
    with pytest.raises(TypeError, match="refit must be True or False"):
        prior.requantize_(model, state, refit=1)  # type: ignore[arg-type]
    for threshold in (-1.0, math.nan):
        with pytest.raises(ValueError, match="threshold must be a number >= 0"):
            prior.merge_(model, threshold=threshold)
    with pytest.raises(ValueError, match="min_responsibility must be a number >= 0"):
        prior.merge_(model, min_responsibility=-0.5)
    with torch.no_grad():
        model.fc1.weight[3, 4] = math.inf
    with pytest.raises(
        ValueError, match=r"layer 'fc1.weight': weight inf at \(3, 4\) is not finite"
    ):
        prior.quantize_(model)
    with torch.no_grad():
        model.fc1.weight[3, 4] = math.nan
    with pytest.raises(ValueError, match="not finite"):
        prior.requantize_(model, state)
    with pytest.raises(TypeError, match=r"parameter '0' is dtype torch\.int64"):
        prior.snapshot([torch.arange(4)])
    with pytest.raises(TypeError, match="parameter '1' is a list"):
        prior.snapshot([torch.zeros(2), [0.1, 0.2]])  # type: ignore[list-item]
    picky = sst.MixturePrior.from_mixture(_mixture(), penalize=lambda _name, _p: False)
    with pytest.raises(ValueError, match="selects no parameters"):
        picky.quantize_(model)
    with pytest.raises(ValueError, match="hold no weights"):
        prior.snapshot(torch.zeros(0))
    with pytest.raises(ValueError, match="n_components must be >= 2"):
        sst.MixturePrior.from_weights(TinyNet(), 1)
    network = compress.QuantizedNetwork(
        codebook=np.zeros(1, np.float32),
        indices={"codebook": np.zeros(2, np.uint8)},
        dtypes={"codebook": np.dtype(np.float32)},
        counts=(2,),
    )
    named = sst.QuantizedState(network, use_pi=True)
    with pytest.raises(ValueError, match="called 'codebook'"):
        named.export()


def test_from_weights_lays_the_mixture_over_the_weights() -> None:
    torch.manual_seed(2)
    model = TinyNet()
    prior = sst.MixturePrior.from_weights(
        model, 9, init_pi_zero=0.99, pi_zero=None, dtype=torch.float64
    )
    flat = np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])
    assert prior.mixture() == compress.init_mixture(flat, 9, pi_zero=0.99, sigma_std=2.0)
    assert prior.zero_component
    assert prior.mu.dtype == torch.float64
    fixed = sst.MixturePrior.from_weights(model, 5, pi_zero=0.95, spread="quantile")
    assert fixed.pi_zero == 0.95
    assert fixed.mixture().pi[0] == pytest.approx(0.95)
