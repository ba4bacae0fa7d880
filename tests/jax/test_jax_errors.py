"""softshare.jax.penalty's errors: softshare.penalty's eagerly, a JaxRuntimeError under jit, never a crash."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import softshare
from softshare._inputs import not_finite_error

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")
ssj = pytest.importorskip("softshare.jax")

MU, LOG_VAR, LOGIT = jnp.array([0.0, 0.2]), jnp.array([-6.0, -4.0]), jnp.array([1.0, 0.0])


def message_of(fn: Any, *args: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as info:  # noqa: PT011 (compared below)
        fn(*args)
    return info.type, str(info.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_weight_that_is_not_finite_is_named_with_its_index(bad: float) -> None:
    w = np.zeros((3, 4), np.float32)
    w[1, 2] = bad
    params = {"layer": {"kernel": jnp.asarray(w)}, "bias": jnp.zeros(4)}
    kind, text = message_of(ssj.penalty, params, MU, LOG_VAR, LOGIT, 0.1)
    want = not_finite_error("params['layer']['kernel']", np.float32(bad), (1, 2))
    assert (kind, text) == (ValueError, str(want))
    with pytest.raises(jax.errors.JaxRuntimeError, match=r"params\['layer'\]\['kernel'\] must be"):
        jax.block_until_ready(jax.jit(ssj.penalty)(params, MU, LOG_VAR, LOGIT, 0.1))
    with pytest.raises(jax.errors.JaxRuntimeError, match="flat index 6"):
        jax.block_until_ready(jax.jit(jax.grad(ssj.penalty))(params, MU, LOG_VAR, LOGIT, 0.1))


@pytest.mark.parametrize("lam", [-1.0, math.inf, math.nan, True, "0.1", 1j])
def test_lam_is_checked_as_softshare_penalty_checks_it(lam: Any) -> None:
    w = np.linspace(-0.1, 0.1, 5)
    mix = softshare.Mixture(np.asarray(MU), np.asarray(LOG_VAR), np.asarray(LOGIT))
    want = message_of(softshare.penalty, w, mix, lam)
    assert message_of(ssj.penalty, jnp.asarray(w), MU, LOG_VAR, LOGIT, lam) == want


@pytest.mark.parametrize("lam", [-1.0, math.inf, math.nan])
def test_a_traced_lam_out_of_range_fails_when_computed(lam: float) -> None:
    eager = message_of(ssj.penalty, jnp.zeros(3), MU, LOG_VAR, LOGIT, jnp.float32(lam))
    assert eager[0] is ValueError
    assert eager[1].startswith("lam must be finite and >= 0, got")
    with pytest.raises(jax.errors.JaxRuntimeError, match="lam must be finite and >= 0"):
        jax.block_until_ready(jax.jit(ssj.penalty)(jnp.zeros(3), MU, LOG_VAR, LOGIT, lam))


@pytest.mark.parametrize(
    ("mixture", "kind"),
    [
        ((MU, LOG_VAR.at[1].set(900.0), LOGIT), ValueError),
        ((MU.at[0].set(jnp.nan), LOG_VAR, LOGIT), ValueError),
        ((MU, LOG_VAR, LOGIT.at[1].set(-jnp.inf)), ValueError),
    ],
)
def test_a_bad_mixture_is_refused_as_softshare_mixture_refuses_it(
    mixture: tuple[Any, ...], kind: type[Exception]
) -> None:
    want = message_of(softshare.Mixture, *(np.asarray(a) for a in mixture))
    assert want[0] is kind
    assert message_of(ssj.penalty, jnp.zeros(3), *mixture, 0.1) == want
    with pytest.raises(
        jax.errors.JaxRuntimeError, match=r"softshare\.jax\.penalty: (mu|log_var|logit)"
    ):
        jax.block_until_ready(jax.jit(ssj.penalty)(jnp.zeros(3), *mixture, 0.1))


def test_mixture_shapes_and_dtypes_are_checked_at_trace_time() -> None:
    with pytest.raises(ValueError, match="must be 1-D arrays of one length M >= 1"):
        jax.jit(ssj.penalty)(jnp.zeros(3), MU, LOG_VAR[:1], LOGIT, 0.1)
    with pytest.raises(ValueError, match="M >= 1"):
        ssj.penalty(jnp.zeros(3), jnp.zeros(0), jnp.zeros(0), jnp.zeros(0), 0.1)
    with pytest.raises(ValueError, match="must be 1-D"):
        ssj.penalty(jnp.zeros(3), MU[None], LOG_VAR[None], LOGIT[None], 0.1)
    with pytest.raises(TypeError, match="mu must be real numbers"):
        ssj.penalty(jnp.zeros(3), MU.astype(jnp.complex64), LOG_VAR, LOGIT, 0.1)
    with pytest.raises(ValueError, match="lam must be a scalar"):
        ssj.penalty(jnp.zeros(3), MU, LOG_VAR, LOGIT, jnp.ones(2))


def test_a_leaf_that_is_not_real_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"params\['w'\] must hold real numbers"):
        ssj.penalty({"w": jnp.zeros(3, jnp.complex64)}, MU, LOG_VAR, LOGIT, 0.1)
    with pytest.raises(TypeError, match=r"params\[0\] could not be read as a numeric array"):
        ssj.penalty(["text"], MU, LOG_VAR, LOGIT, 0.1)


def test_overflow_is_softshare_penalty_s_error(jax_x64: bool) -> None:
    if not jax_x64:
        pytest.skip("a float64 weight far beyond every component needs x64")
    w = np.array([0.0, 1e300])
    mu, log_var, logit = np.zeros(1), np.array([-700.0]), np.zeros(1)
    want = message_of(softshare.penalty, w, softshare.Mixture(mu, log_var, logit), 1.0)
    assert want[0] is ValueError
    assert want[1].startswith("the penalty overflowed")
    args = (jnp.asarray(w), jnp.asarray(mu), jnp.asarray(log_var), jnp.asarray(logit), 1.0)
    assert message_of(ssj.penalty, *args) == want
    with pytest.raises(jax.errors.JaxRuntimeError, match="the penalty overflowed"):
        jax.block_until_ready(jax.jit(ssj.penalty)(*args))


def test_the_process_survives_many_failing_calls() -> None:
    f = jax.jit(ssj.penalty)
    for _ in range(20):
        with pytest.raises(jax.errors.JaxRuntimeError):
            jax.block_until_ready(f(jnp.array([jnp.nan]), MU, LOG_VAR, LOGIT, 0.1))
    assert np.isfinite(float(f(jnp.array([0.1]), MU, LOG_VAR, LOGIT, 0.1)))
