"""softshare.jax.penalty under vmap: over weights, mixtures, lam, several at once; mismatches raise."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import softshare

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ssj = pytest.importorskip("softshare.jax")

B = 3


def batch(seed: int, dtype: Any = "float32") -> dict[str, Any]:
    """B sets of weights (a pytree of two leaves), mixtures and lams."""
    rng = np.random.default_rng(seed)
    return {
        "params": {
            "a": jnp.asarray(rng.normal(0, 0.1, (B, 20, 30)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.1, (B, 5000)), dtype),
        },
        "mu": jnp.asarray(rng.uniform(-0.3, 0.3, (B, 4)), dtype),
        "log_var": jnp.asarray(rng.uniform(-8.0, -3.0, (B, 4)), dtype),
        "logit": jnp.asarray(rng.normal(0.0, 1.0, (B, 4)), dtype),
        "lam": jnp.asarray(rng.uniform(1e-3, 1e-1, B), dtype),
    }


def element(data: dict[str, Any], k: int | None, batched: set[str]) -> tuple[Any, ...]:
    """The k-th problem: batched arguments' k-th entry, the others' 0-th."""

    def pick(name: str, x: Any) -> Any:
        return x[k] if name in batched else x[0]

    params = {key: pick("params", v) for key, v in data["params"].items()}
    return (params, *(pick(n, data[n]) for n in ("mu", "log_var", "logit", "lam")))


def unbatched(data: dict[str, Any], batched: set[str]) -> tuple[Any, ...]:
    """vmap's arguments: the batched ones whole, the others their 0-th entry."""
    params = data["params"] if "params" in batched else {k: v[0] for k, v in data["params"].items()}
    rest = (data[n] if n in batched else data[n][0] for n in ("mu", "log_var", "logit", "lam"))
    return (params, *rest)


def axes(batched: set[str]) -> tuple[Any, ...]:
    return tuple(0 if n in batched else None for n in ("params", "mu", "log_var", "logit", "lam"))


def reference(args: tuple[Any, ...]) -> tuple[Any, list[Any]]:
    """softshare.penalty's value and gradients (params, mu, log_var, logit) in the inputs' dtypes."""
    params, mu, log_var, logit, lam = args
    leaves = [np.asarray(params["a"]), np.asarray(params["b"])]
    mix = softshare.Mixture(np.asarray(mu), np.asarray(log_var), np.asarray(logit))
    r = softshare.penalty(leaves, mix, float(np.asarray(lam)))
    dt = np.asarray(mu).dtype
    grads = [
        {"a": r.grad_w[0], "b": r.grad_w[1]},
        r.grad_mu.astype(dt),
        r.grad_log_var.astype(dt),
        r.grad_logit.astype(dt),
    ]
    return np.asarray(r.value, dt), grads


CASES = [
    {"params"},
    {"mu", "log_var", "logit"},
    {"mu"},
    {"lam"},
    {"params", "mu", "log_var", "logit", "lam"},
    {"params", "logit"},
]


@pytest.mark.parametrize("batched", CASES, ids=lambda s: "+".join(sorted(s)))
def test_vmap_value_and_grad_equal_each_element(batched: set[str]) -> None:
    data = batch(1)
    f = jax.value_and_grad(ssj.penalty, argnums=(0, 1, 2, 3))
    for fn in (jax.vmap(f, axes(batched)), jax.jit(jax.vmap(f, axes(batched)))):
        values, grads = fn(*unbatched(data, batched))
        for k in range(B):
            value, expect = reference(element(data, k, batched))
            assert np.asarray(values)[k] == value
            got = jax.tree_util.tree_map(lambda g, k=k: np.asarray(g)[k], list(grads))
            for a, d in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expect)):
                np.testing.assert_array_equal(a, d, strict=True)


def test_nested_vmap_over_weights_and_mixtures() -> None:
    data = batch(2)
    inner = jax.vmap(ssj.penalty, (0, None, None, None, None))  # over weights
    outer = jax.jit(jax.vmap(inner, (None, 0, 0, 0, None)))  # over mixtures
    params = data["params"]
    out = np.asarray(outer(params, data["mu"], data["log_var"], data["logit"], data["lam"][0]))
    assert out.shape == (B, B)
    for i in range(B):  # mixture i, weights j
        for j in range(B):
            args = (
                {key: v[j] for key, v in params.items()},
                data["mu"][i],
                data["log_var"][i],
                data["logit"][i],
                data["lam"][0],
            )
            assert out[i, j] == reference(args)[0]


def test_vmap_over_a_non_leading_axis() -> None:
    data = batch(3)
    moved = {k: jnp.moveaxis(v, 0, -1) for k, v in data["params"].items()}
    f = jax.vmap(ssj.penalty, ({"a": 2, "b": 1}, None, None, None, None))
    out = f(moved, data["mu"][0], data["log_var"][0], data["logit"][0], 0.5)
    batched = {"params"}
    lam = jnp.float32(0.5)
    for k in range(B):
        args = (*element(data, k, batched)[:4], lam)
        assert np.asarray(out)[k] == reference(args)[0]


def test_grad_through_a_vmapped_sum_adds_the_elements() -> None:
    data = batch(4)
    mu, log_var, logit = data["mu"][0], data["log_var"][0], data["logit"][0]

    def total(mu_: Any) -> Any:
        per = jax.vmap(ssj.penalty, (0, None, None, None, None))
        return per(data["params"], mu_, log_var, logit, 0.01).sum()

    got = np.asarray(jax.jit(jax.grad(total))(mu))
    want = sum(
        reference((*element(data, k, {"params"})[:4], jnp.float32(0.01)))[1][1] for k in range(B)
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_vmap_over_mismatched_batch_sizes_raises() -> None:
    data = batch(5)
    f = jax.vmap(ssj.penalty, (0, 0, None, None, None))
    with pytest.raises(ValueError, match="inconsistent sizes"):
        f(data["params"], data["mu"][:2], data["log_var"][0], data["logit"][0], 0.1)


def test_the_handler_refuses_batch_dimensions_that_disagree() -> None:
    """What expand_dims hands it when arguments' batch sizes disagree: an error, not wrong numbers."""
    from softshare.jax._ffi import TARGET

    rng = np.random.default_rng(6)
    w = jnp.asarray(rng.normal(0, 0.1, (4, 50)), jnp.float32)
    result = jax.ShapeDtypeStruct
    shapes = [result((4,), jnp.float32)] * 2 + [result((4, 3), jnp.float32)] * 3
    call = jax.ffi.ffi_call(TARGET, [*shapes, result((4, 50), jnp.float32)])
    mixture = [jnp.zeros((1, 3), jnp.float32) - 4.0 for _ in range(3)]

    def run(mu: Any, weights: Any) -> Any:
        out = call(jnp.ones((1,), jnp.float32), mu, *mixture[1:], weights, n_threads=0, names="w")
        return jax.block_until_ready(out)

    with pytest.raises(jax.errors.JaxRuntimeError, match="batch dimensions do not match: mu"):
        run(jnp.zeros((3, 3), jnp.float32), w)
    with pytest.raises(jax.errors.JaxRuntimeError, match="batch dimensions do not match: w"):
        run(mixture[0], w[:2])
    ok = run(mixture[0], w)  # size-1 batch dimensions broadcast
    assert np.asarray(ok[0]).shape == (4,)
