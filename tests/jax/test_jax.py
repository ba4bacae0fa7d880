"""softshare.jax.penalty equals softshare.penalty bit for bit: eager, jit, grad, vjp, x64 on and off."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import softshare

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ssj = pytest.importorskip("softshare.jax")

ARGNUMS = (0, 1, 2, 3, 4)  # params, mu, log_var, logit, lam


def make_inputs(
    seed: int, dtype: Any, mix_dtype: Any, m: int = 5, sizes: tuple[int, ...] = (300, 7, 9000)
) -> tuple[Any, ...]:
    """A pytree of three leaves (one over two blocks), a mixture and lam, as JAX arrays."""
    rng = np.random.default_rng(seed)
    params = {
        "dense": {"kernel": jnp.asarray(rng.normal(0, 0.1, (sizes[0] // 10, 10)), dtype)},
        "bias": [jnp.asarray(rng.normal(0, 0.05, sizes[1]), dtype)],
        "conv": jnp.asarray(rng.normal(0, 0.2, sizes[2]), dtype),
    }
    mu = jnp.asarray(np.concatenate([[0.0], rng.uniform(-0.3, 0.3, m - 1)]), mix_dtype)
    log_var = jnp.asarray(rng.uniform(-9.0, -3.0, m), mix_dtype)
    logit = jnp.asarray(rng.normal(0.0, 1.0, m), mix_dtype)
    lam = jnp.asarray(rng.uniform(1e-4, 1e-2), mix_dtype)
    return params, mu, log_var, logit, lam


def reference(params: Any, mu: Any, log_var: Any, logit: Any, lam: Any) -> softshare.PenaltyResult:
    """softshare.penalty on the same values (the leaves in jax's flattening order)."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    mix = softshare.Mixture(np.asarray(mu), np.asarray(log_var), np.asarray(logit))
    return softshare.penalty(leaves, mix, float(np.asarray(lam)))


def real() -> np.dtype[Any]:
    return np.dtype(jnp.zeros(()).astype(float).dtype)  # float64 with x64, else float32


def expected(inputs: tuple[Any, ...], ct: float = 1.0) -> tuple[Any, list[Any]]:
    """The value and the gradients of every argument for cotangent ``ct``, as softshare.penalty's."""
    params, mu, log_var, logit, lam = inputs
    ref = reference(*inputs)
    value = np.asarray(ref.value, real())

    def scaled(g: Any, dtype: Any) -> Any:
        g = np.asarray(g).astype(dtype)
        return np.asarray(ct, dtype) * g if ct != 1.0 else g

    leaves, treedef = jax.tree_util.tree_flatten(params)
    grad_w = treedef.unflatten(
        [scaled(g.reshape(x.shape), x.dtype) for g, x in zip(ref.grad_w, leaves)]
    )
    omega = np.asarray(ct, real()) * np.asarray(-ref.sum_log_density, real())
    grads = [
        grad_w,
        scaled(ref.grad_mu, mu.dtype),
        scaled(ref.grad_log_var, log_var.dtype),
        scaled(ref.grad_logit, logit.dtype),
        omega.astype(lam.dtype),
    ]
    return value, grads


def assert_same(actual: Any, desired: Any) -> None:
    """Equal pytrees: same structure, dtypes, shapes and bits."""
    a_leaves, a_tree = jax.tree_util.tree_flatten(actual)
    d_leaves, d_tree = jax.tree_util.tree_flatten(desired)
    assert a_tree == d_tree
    for a_leaf, d_leaf in zip(a_leaves, d_leaves):
        a, d = np.asarray(a_leaf), np.asarray(d_leaf)
        assert a.dtype == d.dtype
        assert a.shape == d.shape
        np.testing.assert_array_equal(a, d, strict=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mix_dtype", ["float32", "float64"])
def test_eager_jit_and_grad_equal_softshare_penalty(
    jax_x64: bool, dtype: str, mix_dtype: str
) -> None:
    if not jax_x64 and "float64" in (dtype, mix_dtype):
        pytest.skip("float64 needs jax_enable_x64")
    inputs = make_inputs(1, dtype, mix_dtype)
    value, grads = expected(inputs)
    assert_same(ssj.penalty(*inputs), value)
    assert_same(jax.jit(ssj.penalty)(*inputs), value)
    v, g = jax.value_and_grad(ssj.penalty, argnums=ARGNUMS)(*inputs)
    assert_same((v, list(g)), (value, grads))
    v, g = jax.jit(jax.value_and_grad(ssj.penalty, argnums=ARGNUMS))(*inputs)
    assert_same((v, list(g)), (value, grads))
    assert_same(list(jax.grad(ssj.penalty, argnums=ARGNUMS)(*inputs)), grads)


@pytest.mark.parametrize("ct", [0.37, -2.5, 0.0])
def test_a_cotangent_other_than_one_scales_every_gradient(jax_x64: bool, ct: float) -> None:
    dtype = "float64" if jax_x64 else "float32"
    inputs = make_inputs(2, "float32", dtype)
    value, grads = expected(inputs, ct)

    def pull(*args: Any) -> Any:
        v, vjp = jax.vjp(ssj.penalty, *args)
        return v, list(vjp(jnp.asarray(ct, v.dtype)))

    assert_same(pull(*inputs), (value, grads))
    assert_same(jax.jit(pull)(*inputs), (value, grads))


def test_lam_is_traced_not_compiled_in() -> None:
    inputs = make_inputs(3, "float32", "float32")
    traced = []

    def f(*args: Any) -> Any:
        traced.append(1)
        return ssj.penalty(*args)

    jitted = jax.jit(f)
    for lam in (1e-3, 0.25, 0.0, 7.0):
        args = (*inputs[:4], jnp.asarray(lam, jnp.float32))
        assert_same(jitted(*args), expected(args)[0])
    assert len(traced) == 1


def test_lam_zero_gives_zeros_and_omega_for_lam() -> None:
    inputs = (*make_inputs(4, "float32", "float32")[:4], jnp.float32(0.0))
    value, grads = expected(inputs)
    assert float(value) == 0.0
    v, g = jax.value_and_grad(ssj.penalty, argnums=ARGNUMS)(*inputs)
    assert_same((v, list(g)), (value, grads))
    assert float(g[4]) != 0.0  # Omega, whatever lam


def test_python_float_lam_and_threads_give_the_same_bits() -> None:
    params, mu, log_var, logit, _ = make_inputs(5, "float32", "float32", sizes=(40000, 3, 50000))
    one = ssj.penalty(params, mu, log_var, logit, 0.01, n_threads=1)
    every = ssj.penalty(params, mu, log_var, logit, 0.01, n_threads=-1)
    assert_same(one, every)
    assert_same(one, expected((params, mu, log_var, logit, jnp.float32(0.01)))[0])


def test_other_leaf_dtypes_and_a_bare_array() -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.1, 64)
    mu, log_var, logit = jnp.array([0.0, 0.1]), jnp.array([-6.0, -5.0]), jnp.array([0.5, 0.0])
    half = jnp.asarray(w, jnp.bfloat16)
    g = jax.grad(ssj.penalty)(half, mu, log_var, logit, 0.1)
    assert g.dtype == jnp.bfloat16
    assert g.shape == (64,)
    as32 = jax.grad(ssj.penalty)(half.astype(jnp.float32), mu, log_var, logit, 0.1)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(as32.astype(jnp.bfloat16)))
    ints = jnp.arange(-2, 3)
    assert ssj.penalty(ints, mu, log_var, logit, 1e-6) == ssj.penalty(
        ints.astype(jnp.float32), mu, log_var, logit, 1e-6
    )
    # a NumPy array leaf: converted as jnp.asarray converts it
    assert_same(
        ssj.penalty(w.astype(np.float32), mu, log_var, logit, 0.1),
        ssj.penalty(jnp.asarray(w, jnp.float32), mu, log_var, logit, 0.1),
    )


def test_an_empty_pytree_costs_nothing() -> None:
    mu, log_var, logit = jnp.array([0.0]), jnp.array([-4.0]), jnp.array([0.0])
    value, grads = jax.value_and_grad(ssj.penalty, argnums=(1, 2, 3))({}, mu, log_var, logit, 1.0)
    assert float(value) == 0.0
    assert all(float(g[0]) == 0.0 for g in grads)


def test_the_handler_is_one_custom_call_and_grad_adds_no_pass() -> None:
    inputs = make_inputs(7, "float32", "float32")
    hlo = jax.jit(jax.value_and_grad(ssj.penalty, argnums=ARGNUMS)).lower(*inputs).as_text()
    assert hlo.count("softshare_penalty") == 1
