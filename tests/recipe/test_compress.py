"""softshare.compress: init, hyper-priors, EM, merging, quantization, storage cost, export."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil

import numpy as np
import pytest

import softshare
from softshare import compress, reference


def test_huffman_hand_computed_and_kraft() -> None:
    # a:45 b:13 c:12 d:16 e:9 f:5 (CLRS): lengths a1 b3 c3 d3 e4 f4, 224 bits
    counts = {"a": 45, "b": 13, "c": 12, "d": 16, "e": 9, "f": 5}
    lengths = compress.huffman_code_lengths(counts)
    assert lengths == {"a": 1, "b": 3, "c": 3, "d": 3, "e": 4, "f": 4}
    assert sum(counts[s] * n for s, n in lengths.items()) == 224
    assert sum(2.0**-n for n in lengths.values()) == 1.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = int(rng.integers(2, 40))
        random_counts = {i: int(c) for i, c in enumerate(rng.integers(1, 1000, k))}
        lens = compress.huffman_code_lengths(random_counts)
        assert math.isclose(sum(2.0**-n for n in lens.values()), 1.0)
        # never worse than the entropy bound + 1 bit per symbol
        total = sum(random_counts.values())
        entropy = -sum(c * math.log2(c / total) for c in random_counts.values())
        bits = sum(random_counts[s] * n for s, n in lens.items())
        assert entropy <= bits < entropy + total
    assert compress.huffman_code_lengths({"x": 7}) == {"x": 1}
    assert compress.huffman_code_lengths({}) == {}


def test_sparse_entries_hand_counted_with_filler() -> None:
    # 3-bit relative index: gaps 1..8. Non-zeros at 1, 4 and 15 (Han et al. fig. 2):
    # gaps 2 (from -1), 3, then 11 > 8 -> a filler zero at gap 8, then 3.
    layer = np.zeros(16, dtype=int)
    layer[[1, 4, 15]] = [2, 5, 1]
    gaps, symbols = compress.sparse_entries(layer, zero_index=0, index_bits=3)
    assert gaps == [2, 3, 8, 3]
    assert symbols == [2, 5, 0, 1]


def test_compression_report_hand_counted() -> None:
    layer = np.zeros((4, 4), dtype=int)
    layer.flat[[1, 4, 15]] = [2, 5, 1]
    book = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    rep = compress.compression_report({"fc": layer}, book, index_bits={"dense": 3})
    (c,) = rep.layers
    assert c.n_weights == 16
    assert c.n_nonzero == 3
    assert c.n_entries == 4  # three non-zeros and one filler
    assert c.n_distinct == 4  # 0, 1, 2, 5
    # gaps {2:1, 3:2, 8:1} -> Huffman lengths 2, 1, 2 = 6 bits; symbols {2,5,0,1}
    # one each -> 2 bits each = 8 bits
    assert c.bits_huffman == 6 + 8
    assert c.bits_fixed == 4 * (3 + 3)  # 3-bit index + ceil(log2 6) = 3 bits
    assert rep.codebook_bits == 6 * 32
    assert rep.bits_huffman == 14 + 192
    assert rep.ratio == pytest.approx(32 * 16 / (14 + 192))
    assert "| fc | dense | 16 |" in rep.to_markdown()
    conv = compress.compression_report({"c": layer}, book, kinds={"c": "conv"})
    assert conv.layers[0].n_entries == 3  # 8-bit index: no filler
    with pytest.raises(ValueError, match="kind must be one of"):
        compress.compression_report({"c": layer}, book, kinds={"c": "lstm"})


def test_quantization_is_argmax_of_reference_gamma() -> None:
    rng = np.random.default_rng(1)
    mix = softshare.Mixture(
        [0.0, -0.3, 0.25, 0.6], np.log([1e-4, 4e-3, 1e-2, 2e-3]), [3.0, 0.0, 0.5, -1.0]
    )
    layers = [rng.normal(0, 0.3, (40, 30)).astype(np.float32), rng.normal(0, 0.3, 77)]
    quant, idx = compress.quantize(layers, mix)
    ref = reference.penalty(layers, mix, responsibilities=True)
    assert isinstance(ref.gamma, list)
    for q, i, g, w in zip(quant, idx, ref.gamma, layers):
        assert q.shape == w.shape
        assert q.dtype == w.dtype
        np.testing.assert_array_equal(i.reshape(-1), np.argmax(g, axis=1))
        np.testing.assert_array_equal(q, mix.mu[i].astype(w.dtype))
    assert np.all(quant[0][idx[0] == 0] == 0.0)  # the zero component gives exact zeros
    # ignoring pi: nearest component in likelihood
    _, idx_nopi = compress.quantize(layers, mix, use_pi=False)
    lt = reference.log_terms(layers[1], mix) - mix.log_pi
    np.testing.assert_array_equal(idx_nopi[1], np.argmax(lt, axis=1))


def test_em_step_never_decreases_log_likelihood() -> None:
    rng = np.random.default_rng(2)
    w = np.concatenate(
        [rng.normal(0, 0.01, 3000), rng.normal(0.3, 0.05, 500), rng.normal(-0.2, 0.03, 500)]
    )
    mix = softshare.Mixture.from_pi_sigma([0.4, 0.3, 0.3], [0.05, 0.2, -0.1], [0.1, 0.1, 0.1])
    ll = compress.log_likelihood(w, mix)
    for _ in range(15):
        mix = compress.em_step(w, mix)
        ll_new = compress.log_likelihood(w, mix)
        assert ll_new >= ll - 1e-9 * abs(ll)
        ll = ll_new
    np.testing.assert_allclose(sorted(mix.mu), [-0.2, 0.0, 0.3], atol=0.01)


def test_merging_merges_near_identical_and_keeps_separated() -> None:
    mix = softshare.Mixture.from_pi_sigma(
        [0.9, 0.03, 0.03, 0.04], [0.0, 0.2, 0.2005, -0.3], [0.01, 0.02, 0.0201, 0.02]
    )
    merged, report = compress.merge_components(mix)
    assert merged.n_components == 3
    assert report.merged == [(1, 2)]
    assert merged.mu[0] == 0.0
    np.testing.assert_allclose(sorted(merged.mu[1:]), [-0.3, 0.20025], atol=1e-6)
    np.testing.assert_allclose(merged.pi.sum(), 1.0)
    np.testing.assert_allclose(merged.pi[merged.mu == -0.3], 0.04, rtol=1e-12)
    assert "merged 1+2" in str(report)
    separated = softshare.Mixture.from_pi_sigma([0.5, 0.5], [0.0, 0.5], [0.01, 0.01])
    same, rep2 = compress.merge_components(separated)
    assert same.n_components == 2
    assert rep2.merged == []


def test_pruning_dead_components() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.01, 1000)
    mix = softshare.Mixture.from_pi_sigma([0.98, 0.01, 0.01], [0.0, 5.0, -5.0], [0.01, 0.01, 0.01])
    pruned, report = compress.merge_components(mix, w)
    assert report.pruned == [1, 2]
    assert pruned.n_components == 1


def test_export_load_round_trip_is_exact(tmp_path: object) -> None:
    rng = np.random.default_rng(4)
    mix = compress.init_mixture([rng.normal(0, 0.2, 500)], 9)
    layers = {"fc1_weight": rng.normal(0, 0.2, (20, 25)), "fc1_bias": rng.normal(0, 0.2, 20)}
    exported = compress.export_quantized(layers, mix)
    assert exported["fc1_weight"].dtype == np.uint8
    loaded = compress.load_quantized(exported)
    quant, _ = compress.quantize(list(layers.values()), mix)
    for name, q in zip(layers, quant):
        np.testing.assert_array_equal(loaded[name], q.astype(np.float32))
        assert loaded[name].shape == layers[name].shape
    path = tmp_path / "model.npz"  # type: ignore[operator]
    compress.save_quantized(path, exported)
    with np.load(path) as z:
        again = compress.load_quantized(dict(z))
    from_path = compress.load_quantized(path)
    for name in layers:
        np.testing.assert_array_equal(again[name], loaded[name])
        np.testing.assert_array_equal(from_path[name], loaded[name])


def test_export_indices_remaps_and_widens() -> None:
    book = np.linspace(-1.0, 1.0, 300)
    book32 = book.astype(np.float32)  # what an export stores
    # components 1 and 3 unused: dropped from the codebook, the rest renumbered
    small = compress.export_indices({"fc": np.array([[0, 2], [4, 2]]), "b": np.array([4])}, book)
    np.testing.assert_array_equal(small["codebook"], book32[[0, 2, 4]])
    np.testing.assert_array_equal(small["fc"], [[0, 1], [2, 1]])
    np.testing.assert_array_equal(small["b"], [2])
    assert small["fc"].dtype == np.uint8
    np.testing.assert_array_equal(compress.load_quantized(small)["fc"], book32[[[0, 2], [4, 2]]])
    # 256 used values still fit uint8, 257 need uint16
    assert compress.export_indices({"w": np.arange(256)}, book)["w"].dtype == np.uint8
    wide = compress.export_indices({"w": np.arange(257)[::-1].reshape(1, 257)}, book)
    assert wide["w"].dtype == np.uint16
    assert wide["w"].shape == (1, 257)
    np.testing.assert_array_equal(compress.load_quantized(wide)["w"][0], book32[256::-1])
    with pytest.raises(ValueError, match="may not be called 'codebook'"):
        compress.export_indices({"codebook": np.zeros(3, int)}, book)
    with pytest.raises(ValueError, match=r"layer 'w': index 300 at \(1,\) is outside \[0, 300\)"):
        compress.export_indices({"w": np.array([0, 300])}, book)


def test_all_lists_every_public_name() -> None:
    defined = set()
    for info in pkgutil.iter_modules(compress.__path__, compress.__name__ + "."):
        if info.name.endswith(("._passes", "._format")):  # machinery, shared with softshare.torch
            continue
        module = importlib.import_module(info.name)
        defined.update(
            name
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        )
    assert defined >= {"assign", "em_step", "export_indices", "write_file"}
    assert defined <= set(compress.__all__)
    assert all(hasattr(compress, name) for name in compress.__all__)
    # the steps softshare.torch shares live in compress's private modules, re-exported here
    shared = {"CompressionReport", "LayerCost", "MergeReport", "compression_report"}
    shared |= {"huffman_code_lengths", "init_mixture", "merge_components"}
    assert shared | {"symmetric_kl", "HyperPrior", "sparse_entries"} <= set(compress.__all__)
    assert compress.sparse_entries is softshare.reference.sparse_entries  # the reference stream
    for name in shared | {"symmetric_kl"}:
        assert getattr(compress, name).__module__.startswith("softshare.compress._"), name
    assert compress.HyperPrior is softshare.compress._hyperprior.HyperPrior


def test_init_mixture() -> None:
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.1, 10_000)
    mix = compress.init_mixture(w, 17, pi_zero=0.999)
    assert mix.n_components == 17
    assert mix.mu[0] == 0.0
    np.testing.assert_allclose(mix.pi[0], 0.999)
    np.testing.assert_allclose(mix.mu[1], w.min())
    np.testing.assert_allclose(mix.mu[-1], w.max())
    assert np.all(np.diff(mix.mu[1:]) > 0)
    q = compress.init_mixture(w, 5, zero_component=False, spread="quantile")
    assert q.n_components == 5
    with pytest.raises(ValueError, match="pi_zero must be in"):
        compress.init_mixture(w, 5, pi_zero=1.0)
    with pytest.raises(ValueError, match="spread must be"):
        compress.init_mixture(w, 5, spread="kmeans")


def test_hyperprior_gradients_by_finite_differences() -> None:
    hp = compress.HyperPrior(gamma=(250.0, 0.1), zero_gamma=(5000.0, 2.0), beta=(50.0, 2.0))
    mu = np.array([0.0, -0.2, 0.3])
    log_var = np.log([1e-3, 4e-3, 2e-3])
    logit = np.array([2.0, 0.1, -0.4])
    value, _, g_lv, g_logit = hp.value_and_grad(softshare.Mixture(mu, log_var, logit))
    h = 1e-6
    for j in range(3):
        for arr, grad in ((log_var, g_lv), (logit, g_logit)):
            plus, minus = arr.copy(), arr.copy()
            plus[j] += h
            minus[j] -= h
            args_p = (mu, plus, logit) if arr is log_var else (mu, log_var, plus)
            args_m = (mu, minus, logit) if arr is log_var else (mu, log_var, minus)
            fd = (
                hp.value_and_grad(softshare.Mixture(*args_p))[0]
                - hp.value_and_grad(softshare.Mixture(*args_m))[0]
            ) / (2 * h)
            np.testing.assert_allclose(grad[j], fd, rtol=1e-6, atol=1e-6)
    assert math.isfinite(value)


def test_hyperprior_in_torch_prior_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    import softshare.torch as sst

    hp = compress.HyperPrior(beta=(50.0, 2.0))
    mix = softshare.Mixture([0.0, -0.2, 0.3], np.log([1e-3, 4e-3, 2e-3]), [2.0, 0.1, -0.4])
    prior = sst.MixturePrior.from_mixture(mix, dtype=torch.float64, hyperprior=hp)
    value = prior.hyperprior_penalty()
    value.backward()
    ref_value, _, g_lv, g_logit = hp.value_and_grad(mix)
    np.testing.assert_allclose(value.item(), ref_value, rtol=1e-12)
    np.testing.assert_allclose(prior.log_var.grad.numpy(), g_lv, rtol=1e-10)
    np.testing.assert_allclose(prior.logit.grad.numpy(), g_logit, rtol=1e-10, atol=1e-12)


def test_torch_prior_zero_component_and_fixed_pi_zero() -> None:
    torch = pytest.importorskip("torch")
    import softshare.torch as sst

    prior = sst.MixturePrior(
        [0.5, -0.2, 0.3], [-6.0, -5.0, -5.0], [0.0, 0.0, 0.0], zero_component=True, pi_zero=0.9
    )
    snap = prior.mixture()
    assert snap.mu[0] == 0.0
    np.testing.assert_allclose(snap.pi[0], 0.9)
    w = torch.randn(100, dtype=torch.float32) * 0.1
    prior(w, 1.0).backward()
    assert prior.mu.grad[0].item() == 0.0
    assert prior.logit.grad[0].item() == 0.0
    assert prior.mu.grad[1].item() != 0.0
