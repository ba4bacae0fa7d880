"""One quantized network: made once, reported, written with exact tensors beside it, read back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import softshare
from softshare import compress
from softshare._native_recipe import sparse_counts


def _mixture() -> softshare.Mixture:
    return softshare.Mixture.from_pi_sigma(
        [0.8, 0.05, 0.05, 0.05, 0.05], [0.0, -0.4, -0.2, 0.2, 0.4], [0.02, 0.05, 0.05, 0.05, 0.05]
    )


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 4), max_size=300),
    zero_index=st.integers(0, 5),
    index_bits=st.integers(1, 5),
)
def test_sparse_counts_match_the_entries_stream(
    values: list[int], zero_index: int, index_bits: int
) -> None:
    flat = np.array(values, dtype=np.uint8)
    got_values, nonzero, got_gaps, got_symbols = sparse_counts(flat, 5, zero_index, index_bits)
    gaps, symbols = compress.sparse_entries(flat, zero_index, index_bits)
    assert got_values.tolist() == np.bincount(flat, minlength=5).tolist()
    assert nonzero == int(np.count_nonzero(flat != zero_index))
    want_gaps = Counter(gaps)
    assert {g + 1: int(c) for g, c in enumerate(got_gaps) if c} == dict(want_gaps)
    assert {s: int(c) for s, c in enumerate(got_symbols) if c} == dict(Counter(symbols))


def test_network_is_made_once_and_every_face_agrees(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layers = {
        "a": rng.normal(0, 0.2, (40, 30)).astype(np.float32),
        "b": rng.normal(0, 0.2, (7,)).astype(np.float64),
    }
    net = compress.quantize_network(layers, _mixture())
    assert net.codebook.dtype == np.float64  # one layer is float64
    assert not net.codebook.flags.writeable
    assert all(i.dtype == np.uint8 for i in net.indices.values())
    assert sum(net.counts) == net.n_weights == 1207
    quantized, _ = compress.quantize(list(layers.values()), _mixture())
    for (name, want), got in zip(layers.items(), quantized):
        np.testing.assert_array_equal(net.layer(name), got)
        assert net.layer(name).dtype == want.dtype
    export = compress.export_quantized(layers, _mixture())
    for name, arr in net.export().items():
        np.testing.assert_array_equal(arr, export[name])
    written = compress.write_file(tmp_path / "n.sws", net)
    assert written.network.mixture == _mixture()
    back = compress.inspect_file(tmp_path / "n.sws")
    for name in layers:
        np.testing.assert_array_equal(back.network.layer(name), net.layer(name))
    assert back.network.counts == net.counts
    report = net.compression_report()
    assert report.nonzero_fraction == pytest.approx(net.nonzero_fraction)
    assert report.with_file(back).file_bytes == back.file_bytes


def test_exact_tensors_are_stored_as_they_are(tmp_path: Path) -> None:
    exact = {
        "bn.running_mean": np.array([0.1, -2.5e-8, 3.0], np.float32),
        "bn.num_batches_tracked": np.array(123456789012, np.int64),
        "mask": np.array([[True, False]]),
        "half": np.array([1.5, -0.25], np.float16),
    }
    net = compress.quantize_network({"w": np.linspace(-0.5, 0.5, 11)}, _mixture(), exact=exact)
    written = compress.write_file(tmp_path / "e.sws", net)
    assert (tmp_path / "e.sws").read_bytes()[3] == 4  # format version 4 (exact tensors as in 2)
    back = compress.read_file(tmp_path / "e.sws")
    for name, arr in exact.items():
        assert back[name].dtype == arr.dtype
        assert back[name].shape == arr.shape
        np.testing.assert_array_equal(back[name], arr)
    assert written.exact_bytes["bn.running_mean"] == 12
    assert "bn.running_mean (exact)" in compress.inspect_file(tmp_path / "e.sws").to_markdown()
    plain = compress.write_file(tmp_path / "p.sws", {"w": np.zeros(3)}, _mixture())
    assert (tmp_path / "p.sws").read_bytes()[3] == 4  # nothing exact: version 4 too
    assert plain.exact_bytes == {}
    with pytest.raises(ValueError, match="both quantized layers and exact tensors"):
        compress.quantize_network({"w": np.zeros(2)}, _mixture(), exact={"w": np.zeros(2)})
    bad = compress.quantize_network(
        {"w": np.zeros(2)}, _mixture(), exact={"c": np.zeros(2, complex)}
    )
    with pytest.raises(TypeError, match="'c' has dtype complex128"):
        compress.write_file(tmp_path / "c.sws", bad)


def test_one_codebook_rule_never_makes_inf() -> None:
    # a mean beyond float32's range, wide enough to win far weights
    mix = softshare.Mixture([0.0, 1e39], [0.0, 700.0], [0.0, 0.0])
    compress.quantize_network({"f64": np.array([1e39])}, mix)  # float64 alone holds it
    mixed = {"f32": np.array([3e38], np.float32), "f64": np.array([1e39])}
    with pytest.raises(ValueError, match="not finite in float32, the dtype of a layer"):
        compress.quantize_network(mixed, mix)
    with pytest.raises(ValueError, match="not finite in float32"):
        compress.quantize_network({"f32": np.array([3e38], np.float32)}, mix)
    with pytest.raises(ValueError, match="not finite in float32"):
        compress.quantize([np.array([3e38], np.float32)], mix)


def test_refit_moves_values_to_their_weights_mean_and_keeps_zero() -> None:
    w = np.array([0.001, -0.41, -0.39, 0.18, 0.0], np.float32)
    net = compress.quantize_network({"w": w}, _mixture())
    moved = net.refitted({"w": w})
    book = dict(zip(net.components or (), moved.codebook.tolist()))
    assert book[0] == 0.0
    assert book[1] == pytest.approx(-0.4, abs=1e-7)
    assert book[3] == pytest.approx(0.18, abs=1e-7)
    with pytest.raises(ValueError, match="diverged"):
        net.refitted({"w": np.full(5, np.nan, np.float32)})


def test_index_bits_and_zero_index_are_checked() -> None:
    idx = {"w": np.zeros(4, np.uint8)}
    for bits in (0, -1, 17, 2.5, True):
        with pytest.raises(ValueError, match="must be an int from 1 to 16"):
            compress.compression_report(idx, [0.0], index_bits={"dense": bits})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="zero_index must be an int from 0"):
        compress.compression_report(idx, [0.0], zero_index=-1)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        compress.compression_report({"w": np.array([1])}, [0.0])


def test_a_file_that_is_not_one_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(1 << 33)  # 8 GiB sparse: reading it whole would take the memory
    with pytest.raises(ValueError, match="not a softshare model file"):
        compress.inspect_file(big)


def test_em_step_names_a_bad_min_var() -> None:
    w = np.linspace(-0.5, 0.5, 11)
    for bad in (0.0, -1.0, np.nan, np.inf, "1e-3", True):
        with pytest.raises(ValueError, match="min_var must be a finite number above 0"):
            compress.em_step(w, _mixture(), min_var=bad)  # type: ignore[arg-type]
