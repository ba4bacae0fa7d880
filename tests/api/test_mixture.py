"""softshare.Mixture: read-only float64 parameters, derived quantities, its errors, pickling."""

from __future__ import annotations

import numpy as np
import pytest

import softshare


def test_parameters_are_readonly_float64_copies() -> None:
    mu = np.array([0.0, 1.0], dtype=np.float32)
    mix = softshare.Mixture(mu, [-2, -4], [0, 1])
    mu[0] = 5.0
    assert mix.mu[0] == 0.0
    for arr in (mix.mu, mix.log_var, mix.logit):
        assert arr.dtype == np.float64
        assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        mix.mu[0] = 1.0
    assert mix.n_components == 2


def test_derived_quantities() -> None:
    mix = softshare.Mixture([0.0, 1.0, 2.0], np.log([0.04, 0.25, 1.0]), [0.0, np.log(2), 1e3])
    np.testing.assert_allclose(mix.var, [0.04, 0.25, 1.0])
    np.testing.assert_allclose(mix.sigma, [0.2, 0.5, 1.0])
    assert np.isfinite(mix.pi).all()  # logit 1e3 does not overflow
    np.testing.assert_allclose(mix.pi.sum(), 1.0)
    np.testing.assert_allclose(mix.pi, [0.0, 0.0, 1.0], atol=1e-300)


def test_from_pi_sigma_round_trip() -> None:
    pi = np.array([0.7, 0.2, 0.1])
    sigma = np.array([0.01, 0.1, 1.0])
    mix = softshare.Mixture.from_pi_sigma(pi, [0.0, -0.5, 0.5], sigma)
    np.testing.assert_allclose(mix.pi, pi)
    np.testing.assert_allclose(mix.sigma, sigma)
    np.testing.assert_allclose(mix.log_var, 2 * np.log(sigma))
    # unnormalised proportions are normalised
    np.testing.assert_allclose(softshare.Mixture.from_pi_sigma([7, 2, 1], [0, 1, 2], sigma).pi, pi)


def test_equality_and_repr() -> None:
    a = softshare.Mixture([0.0], [0.0], [0.0])
    assert a == softshare.Mixture([0], [0], [0])
    assert a != softshare.Mixture([1.0], [0.0], [0.0])
    assert "Mixture(mu=" in repr(a)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([], [], []), r"at least one component \(M >= 1\), got M = 0"),
        (([0.0, 1.0], [0.0], [0.0, 0.0]), "same length M, got 2, 1 and 2"),
        (([[0.0]], [0.0], [0.0]), r"mu must be 1-D .*shape \(1, 1\)"),
        (([np.nan], [0.0], [0.0]), r"mu must be finite: mu\[0\] = nan"),
        (([0.0, 1.0], [0.0, np.inf], [0.0, 0.0]), r"log_var must be finite: log_var\[1\] = inf"),
        (([0.0], [0.0], [-np.inf]), r"logit must be finite: logit\[0\] = -inf"),
    ],
)
def test_bad_parameters(args: tuple[object, object, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        softshare.Mixture(*args)  # type: ignore[arg-type]


def test_non_real_parameters() -> None:
    with pytest.raises(TypeError, match="mu must be real numbers"):
        softshare.Mixture([1j], [0.0], [0.0])
    with pytest.raises(TypeError, match="logit must be real numbers"):
        softshare.Mixture([0.0], [0.0], ["a"])


@pytest.mark.parametrize(
    ("pi", "sigma", "message"),
    [
        ([0.5, 0.0], [1.0, 1.0], r"pi must be positive: pi\[1\] = 0.0"),
        ([0.5, -0.5], [1.0, 1.0], r"pi must be positive: pi\[1\] = -0.5"),
        ([0.5, 0.5], [-1.0, 1.0], r"sigma must be positive: sigma\[0\] = -1.0"),
        ([0.5, 0.5], [1.0, 0.0], r"sigma must be positive: sigma\[1\] = 0.0"),
        ([0.5, np.nan], [1.0, 1.0], r"pi must be finite: pi\[1\] = nan"),
    ],
)
def test_bad_natural_parameters(pi: list[float], sigma: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        softshare.Mixture.from_pi_sigma(pi, [0.0, 1.0], sigma)


@pytest.mark.parametrize("log_var", [708.5, -708.5, 1400.0, -1e300])
def test_log_var_beyond_float64_variances(log_var: float) -> None:
    with pytest.raises(
        ValueError, match=r"log_var\[1\] = .* is outside the range \[-708.0, 708.0\]"
    ):
        softshare.Mixture([0.0, 0.0], [0.0, log_var], [0.0, 0.0])
    edge = softshare.Mixture([0.0], [np.sign(log_var) * 708.0], [0.0])
    assert np.isfinite(edge.var).all()
    assert np.isfinite(1.0 / edge.var).all()


def test_pickle_and_copies_keep_a_mixture_immutable() -> None:
    import copy
    import pickle

    mix = softshare.Mixture([0.0, 0.5], [-4.0, -2.0], [2.0, 0.0])
    _ = mix.pi, mix.var, mix.sigma  # cached before pickling
    for other in (pickle.loads(pickle.dumps(mix)), copy.copy(mix), copy.deepcopy(mix)):
        assert other == mix
        for arr in (other.mu, other.log_var, other.logit, other.pi, other.var, other.sigma):
            assert not arr.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = 1.0
    back = pickle.loads(pickle.dumps(mix))
    assert back.pi is not mix.pi  # derived afresh, never carried stale
