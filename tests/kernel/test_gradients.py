"""Finite-difference checks of every gradient of the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import softshare
from softshare import reference

H = 1e-6


def _value(w: np.ndarray, mu: np.ndarray, log_var: np.ndarray, logit: np.ndarray) -> float:
    return reference.penalty(w, softshare.Mixture(mu, log_var, logit), LAM).value


LAM = 0.7


@pytest.fixture
def problem() -> tuple[np.ndarray, softshare.Mixture]:
    rng = np.random.default_rng(11)
    mix = softshare.Mixture(
        mu=np.array([-0.4, 0.0, 0.05, 0.5]),
        log_var=np.log([0.02, 0.001, 0.01, 0.05]),
        logit=np.array([0.1, 2.0, -0.5, 0.3]),
    )
    w = rng.normal(0.0, 0.3, 200)
    return w, mix


def _central(f: object, x: np.ndarray, i: int) -> float:
    step = H * max(1.0, abs(float(x[i])))
    xp, xm = x.copy(), x.copy()
    xp[i] += step
    xm[i] -= step
    return (f(xp) - f(xm)) / (2 * step)  # type: ignore[operator]


def test_grad_w(problem: tuple[np.ndarray, softshare.Mixture]) -> None:
    w, mix = problem
    r = reference.penalty(w, mix, LAM)
    for i in range(0, w.size, 17):
        fd = _central(lambda x: _value(x, mix.mu, mix.log_var, mix.logit), w, i)
        np.testing.assert_allclose(r.grad_w[i], fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["mu", "log_var", "logit"])
@pytest.mark.parametrize(
    ("fn", "rtol"),
    [(reference.penalty, 1e-6), (softshare.penalty, 1e-5)],
    ids=["reference", "native"],
)
def test_component_gradients(
    problem: tuple[np.ndarray, softshare.Mixture], name: str, fn: object, rtol: float
) -> None:
    """Each implementation's own value, differentiated numerically, gives its gradients."""
    w, mix = problem
    r = fn(w, mix, LAM)  # type: ignore[operator]
    params = {"mu": mix.mu.copy(), "log_var": mix.log_var.copy(), "logit": mix.logit.copy()}

    def f(x: np.ndarray) -> float:
        p = dict(params)
        p[name] = x
        return fn(w, softshare.Mixture(**p), LAM).value  # type: ignore[operator, no-any-return]

    fd = np.array([_central(f, params[name], j) for j in range(mix.n_components)])
    analytic = getattr(r, "grad_" + name)
    np.testing.assert_allclose(analytic, fd, rtol=rtol, atol=rtol * np.max(np.abs(fd)))


def test_grad_sigma(problem: tuple[np.ndarray, softshare.Mixture]) -> None:
    w, mix = problem
    r = reference.penalty(w, mix, LAM)
    sigma = mix.sigma.copy()

    def f(s: np.ndarray) -> float:
        return _value(w, mix.mu, 2 * np.log(s), mix.logit)

    fd = np.array([_central(f, sigma, j) for j in range(mix.n_components)])
    np.testing.assert_allclose(r.grad_sigma, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))


@pytest.mark.parametrize("fn", [softshare.penalty, reference.penalty])
def test_identities(problem: tuple[np.ndarray, softshare.Mixture], fn: object) -> None:
    w, mix = problem
    r = fn(w, mix, LAM)  # type: ignore[operator]
    # softmax logits: the gradient sums to zero
    assert abs(np.sum(r.grad_logit)) <= 1e-12 * LAM * w.size
    # S0/S1/S2 against responsibilities computed here from scratch (dense, in float64)
    d = w[:, None] - mix.mu[None, :]
    dens = mix.pi * np.exp(-0.5 * d * d / mix.var) / np.sqrt(2 * np.pi * mix.var)
    gamma = dens / dens.sum(axis=1, keepdims=True)
    expected = np.stack([gamma.sum(0), (gamma * d).sum(0), (gamma * d * d).sum(0)])
    np.testing.assert_allclose(np.sum(r.stats[0]), w.size, rtol=1e-12)
    np.testing.assert_allclose(r.stats, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.value, -LAM * np.sum(np.log(dens.sum(axis=1))), rtol=1e-12)
