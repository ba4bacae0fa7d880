"""``softshare.torch.save_compressed`` / ``load_compressed``: a module's quantized weights and prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import softshare.torch as sst
from softshare import compress


def _net(hidden: int = 30) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 36, hidden),
    )


def _prior() -> sst.MixturePrior:
    return sst.MixturePrior(
        mu=[0.0, -0.2, 0.1, 0.25], log_var=[-9.0, -6.0, -6.0, -6.0], logit=[2.0, 0.0, 0.0, 0.0],
        zero_component=True,
    )  # fmt: skip


def test_save_then_load_gives_the_quantized_module(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, prior = _net(), _prior()
    path = tmp_path / "net.sws"
    written = sst.save_compressed(path, model, prior)
    names = [n for n, _ in model.named_parameters()]
    assert list(written.layer_bytes) == names
    weights = [p.detach().numpy() for p in model.parameters()]
    expected, _ = compress.quantize(weights, prior.mixture())
    fresh = _net()
    mixture = sst.load_compressed(path, fresh)
    for p, q in zip(fresh.parameters(), expected):
        assert p.dtype == torch.float32
        np.testing.assert_array_equal(p.detach().numpy(), q)
    assert mixture is not None
    np.testing.assert_array_equal(mixture.mu, prior.mixture().mu)
    # the same file through NumPy, and the prior set from it
    loaded = compress.read_file(path)
    for name, q in zip(names, expected):
        np.testing.assert_array_equal(loaded[name], q)
    other = sst.MixturePrior(mu=[1.0] * 4, log_var=[0.0] * 4, logit=[0.0] * 4)
    sst.load_compressed(path, _net(), other)
    np.testing.assert_array_equal(other.mixture().log_var, prior.mixture().log_var)
    np.testing.assert_allclose(other.mixture().logit, prior.mixture().logit, atol=1e-12)


def test_a_prior_inside_the_module_is_left_out(tmp_path: Path) -> None:
    model, prior = _net(), _prior()
    model.prior = prior  # registered as a submodule: its parameters are not weights
    written = sst.save_compressed(tmp_path / "n.sws", model, prior)
    assert not any(n.startswith("prior.") for n in written.layer_bytes)
    target = _net()
    target.prior = _prior()
    sst.load_compressed(tmp_path / "n.sws", target)


def test_float64_and_half_parameters(tmp_path: Path) -> None:
    model = torch.nn.Linear(5, 3).double()
    prior = sst.MixturePrior.from_mixture(_prior().mixture(), dtype=torch.float64)
    written = sst.save_compressed(tmp_path / "d.sws", model, prior)
    assert set(map(str, written.dtypes.values())) == {"float64"}
    half = torch.nn.Linear(5, 3).half()
    sst.load_compressed(tmp_path / "d.sws", half)
    expected, _ = compress.quantize(
        [p.detach().numpy() for p in model.parameters()], prior.mixture()
    )
    for p, q in zip(half.parameters(), expected):
        assert p.dtype == torch.float16
        np.testing.assert_array_equal(p.detach().numpy(), q.astype(np.float16))


def test_a_different_architecture_is_refused_with_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "n.sws"
    sst.save_compressed(path, _net(), _prior())
    before = [p.detach().clone() for p in _net(31).parameters()]
    wider = _net(31)
    for p, b in zip(wider.parameters(), before):
        p.data.copy_(b)
    with pytest.raises(
        ValueError, match=r"shapes differ: \['3.weight: file \(30, 144\), module \(31, 144\)'"
    ):
        sst.load_compressed(path, wider)
    for p, b in zip(wider.parameters(), before):  # nothing was copied
        assert torch.equal(p, b)
    deeper = torch.nn.Sequential(*_net(), torch.nn.Linear(30, 2))
    with pytest.raises(ValueError, match=r"missing from the file: \['4.bias', '4.weight'\]"):
        sst.load_compressed(path, deeper)
    with pytest.raises(ValueError, match=r"not in the module: \['3.bias', '3.weight'\]"):
        sst.load_compressed(path, torch.nn.Sequential(*list(_net())[:3]))
    with pytest.raises(ValueError, match="the prior has 2 components, the file 4 components"):
        sst.load_compressed(path, _net(), sst.MixturePrior([0.0, 1.0], [0.0, 0.0], [0.0, 0.0]))
    compress.write_file(tmp_path / "plain.sws", {"w": np.zeros(3)}, _prior().mixture())
    with pytest.raises(ValueError, match="the file no mixture"):
        sst.load_compressed(tmp_path / "plain.sws", torch.nn.Module(), _prior())
    with pytest.raises(TypeError, match=r"prior must be a MixturePrior, got Mixture"):
        sst.save_compressed(path, _net(), prior=_prior().mixture())  # type: ignore[arg-type]


def test_the_file_holds_what_the_module_holds(tmp_path: Path) -> None:
    # biases the prior leaves out and BatchNorm's statistics are stored exactly
    torch.manual_seed(0)

    def make() -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Linear(8, 16),
            torch.nn.BatchNorm1d(16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 3),
        )

    model = make()
    model.train()
    model(torch.randn(64, 8))  # running statistics move away from their start
    model.eval()
    prior = sst.MixturePrior.from_weights(model, 5, penalize="weights")
    state = prior.quantize_(model)
    assert set(state.network.indices) == {"0.weight", "3.weight"}
    written = sst.save_compressed(tmp_path / "m.sws", model, prior, state=state)
    assert {"0.bias", "1.weight", "1.running_mean", "1.num_batches_tracked"} <= set(
        written.network.exact
    )
    fresh = make().eval()
    sst.load_compressed(tmp_path / "m.sws", fresh)
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n
    x = torch.randn(5, 8)
    assert torch.equal(model(x), fresh(x))
    without = sst.save_compressed(tmp_path / "n.sws", model, prior, state=state, buffers=False)
    assert "1.running_mean" not in without.network.exact
    with pytest.raises(ValueError, match="meta device"):
        sst.load_compressed(tmp_path / "m.sws", make().to("meta"))
    with pytest.raises(ValueError, match="needs the prior that quantizes the module, or the state"):
        sst.save_compressed(tmp_path / "x.sws", model)


def test_a_state_from_before_merge_is_refused_before_anything_is_written() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 3))
    prior = sst.MixturePrior.from_weights(model, 9)
    state = prior.quantize_(model)
    before = [p.detach().clone() for p in model.parameters()]
    prior.merge_(model, threshold=1e9)  # everything merges: the components change
    with pytest.raises(ValueError, match="made before merge_ changed the prior's components"):
        prior.requantize_(model, state)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    prior.requantize_(model, prior.quantize_(model))  # a fresh state fits
