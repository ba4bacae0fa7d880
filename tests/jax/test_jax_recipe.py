"""softshare.jax's recipe for a pytree: starting mixture, quantization and the .sws file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import softshare
from softshare import compress
from softshare.__main__ import main as cli

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ssj = pytest.importorskip("softshare.jax")


README = Path(__file__).resolve().parents[2] / "README.md"


def network(seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "Dense_0": {
            "kernel": jnp.asarray(rng.normal(0, 0.1, (20, 30)), jnp.float32),
            "bias": jnp.asarray(rng.normal(0, 0.01, 30), jnp.float32),
        },
        "Dense_1": {"kernel": jnp.asarray(rng.normal(0, 0.1, (30, 10)), jnp.float32)},
        "scales": [jnp.asarray(rng.normal(0, 0.1, 4), jnp.bfloat16)],
    }


def hosts(params: object) -> list[np.ndarray]:
    return [np.asarray(x, np.float32) for x in jax.tree_util.tree_leaves(params)]


def test_init_mixture_is_compress_s_over_the_leaves() -> None:
    params = network()
    got = ssj.init_mixture(params, 9, sigma_std=2.0)
    want = compress.init_mixture(hosts(params), 9, sigma_std=2.0)
    for name in ("mu", "log_var", "logit"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_quantize_keeps_the_structure_and_uses_the_native_assignment() -> None:
    params = network()
    mix = ssj.init_mixture(params, 5)
    quantized = ssj.quantize(params, mix)
    assert jax.tree_util.tree_structure(quantized) == jax.tree_util.tree_structure(params)
    want, _ = compress.quantize(hosts(params), mix)
    for q, w, leaf in zip(
        jax.tree_util.tree_leaves(quantized), want, jax.tree_util.tree_leaves(params)
    ):
        assert q.dtype == leaf.dtype
        assert q.shape == leaf.shape
        np.testing.assert_array_equal(
            np.asarray(q, np.float32), w.astype(leaf.dtype).astype(np.float32)
        )
        assert set(np.unique(np.asarray(q, np.float64))) <= set(
            mix.mu.astype(leaf.dtype).astype(np.float64)
        )


@pytest.mark.parametrize("mixture_form", ["Mixture", "triple", "mapping"])
def test_write_file_then_inspect_and_read_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mixture_form: str
) -> None:
    params = network(1)
    mix = ssj.init_mixture(params, 7)
    trained = (jnp.asarray(mix.mu, jnp.float32), jnp.asarray(mix.log_var), jnp.asarray(mix.logit))
    form = {
        "Mixture": softshare.Mixture(*(np.asarray(a) for a in trained)),
        "triple": trained,
        "mapping": dict(zip(("mu", "log_var", "logit"), trained)),
    }[mixture_form]
    path = tmp_path / "model.sws"
    info = ssj.write_file(path, params, form, keep_mixture=True)
    assert info.file_bytes == path.stat().st_size
    layers = compress.read_file(path)
    assert sorted(layers) == ["Dense_0.bias", "Dense_0.kernel", "Dense_1.kernel", "scales.0"]
    assert cli(["inspect", str(path)]) == 0
    assert "Dense_0.kernel" in capsys.readouterr().out
    back = ssj.read_file(path, params)
    quantized = ssj.quantize(params, form)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(quantized)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b, np.float32))


def test_names_that_collide_and_files_that_lack_a_leaf_raise(tmp_path: Path) -> None:
    mix = softshare.Mixture([0.0, 0.1], [-6.0, -6.0], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"both named 'a\.b'"):
        ssj.write_file(tmp_path / "x.sws", {"a.b": jnp.zeros(2), "a": {"b": jnp.zeros(2)}}, mix)
    path = tmp_path / "y.sws"
    ssj.write_file(path, {"a": jnp.zeros(3)}, mix)
    with pytest.raises(ValueError, match="holds no layer 'b'"):
        ssj.read_file(path, {"b": jnp.zeros(3)})
    with pytest.raises(ValueError, match="has shape"):
        ssj.read_file(path, {"a": jnp.zeros(4)})
    with pytest.raises(TypeError, match=r"mixture must be a softshare\.Mixture"):
        ssj.quantize({"a": jnp.zeros(3)}, [1.0, 2.0])


def test_the_readme_example_trains_quantizes_and_writes_a_file_inspect_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's JAX example, under whichever jax is installed (CI: the oldest and the newest)."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    jax_blocks = [code for code in blocks if "import softshare.jax" in code]
    assert jax_blocks
    monkeypatch.chdir(tmp_path)
    for code in jax_blocks:
        exec(compile(code, "README.md's JAX example", "exec"), {"__name__": "__readme__"})  # noqa: S102
    assert cli(["inspect", "mlp.sws"]) == 0
    out = capsys.readouterr().out
    assert "hidden.kernel" in out
    assert "out.kernel" in out
