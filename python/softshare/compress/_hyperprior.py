"""Hyper-priors on a mixture: Gamma priors on the precisions and a Beta prior on pi_zero."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._formulas import beta_neg_log_density, gamma_neg_log_density
from .._inputs import as_mixture

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .._mixture import Mixture

__all__ = ["HyperPrior"]


@dataclass(frozen=True)
class HyperPrior:
    """Hyper-priors on a mixture with a zero component at index 0.

    Gamma priors on each component's precision ``1 / sigma_j^2`` (shape, rate),
    with their own shape and rate for the zero component, and an optional
    Beta(alpha, beta) prior on the zero component's mixing proportion. The
    defaults are those of Ullrich et al.: (5000, 2) for the zero component,
    (250, 0.1) for the others.

    ``value_and_grad(mixture)`` gives the negative log-density and its
    gradients with respect to ``mu``, ``log_var`` and ``logit``;
    ``softshare.torch.MixturePrior`` evaluates the same terms with torch ops.
    Both leave out the densities' normalising constants (terms that depend on
    the shapes and rates only), so the value is the negative log-density up to
    an additive constant.

    Attributes
    ----------
    gamma : (shape, rate) or None
        Gamma prior on the precision of components 1..M-1; None for none.
    zero_gamma : (shape, rate) or None
        Gamma prior on the precision of component 0; None for none.
    beta : (alpha, beta) or None
        Beta prior on the zero component's mixing proportion; None for none.
    """

    gamma: tuple[float, float] | None = (250.0, 0.1)
    zero_gamma: tuple[float, float] | None = (5000.0, 2.0)
    beta: tuple[float, float] | None = None

    def shape_rate(self, m: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Gamma shape and rate of each of ``m`` components' precision (rate 0: no prior)."""
        shape = np.zeros(m)
        rate = np.zeros(m)
        if self.gamma is not None:
            shape[1:], rate[1:] = self.gamma
        if self.zero_gamma is not None:
            shape[0], rate[0] = self.zero_gamma
        return shape, rate

    def value_and_grad(
        self, mixture: Mixture
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Negative log hyper-prior and its gradients.

        Parameters
        ----------
        mixture : Mixture
            The mixture, zero component at index 0.

        Returns
        -------
        (value, grad_mu, grad_log_var, grad_logit)
            A float and three float64 arrays of shape (M,); ``grad_mu`` is zero
            (no hyper-prior acts on the means).
        """
        mix = as_mixture(mixture)
        m = mix.n_components
        shape, rate = self.shape_rate(m)
        active = rate > 0
        precision = np.exp(-mix.log_var)
        terms = gamma_neg_log_density(shape, rate, mix.log_var, precision)
        value = float(np.sum(np.where(active, terms, 0.0)))
        grad_log_var = np.where(active, (shape - 1.0) - rate * precision, 0.0)
        grad_logit = np.zeros(m)
        if self.beta is not None:
            a, b = self.beta
            pi = mix.pi
            p0 = float(pi[0])
            value += beta_neg_log_density(a, b, math.log(p0), math.log1p(-p0))
            dp0 = -(a - 1.0) / p0 + (b - 1.0) / (1.0 - p0)
            jac = -p0 * pi  # d pi_0 / d eta_k = pi_0 (delta_0k - pi_k)
            jac[0] += p0
            grad_logit = dp0 * jac
        return value, np.zeros(m), grad_log_var, grad_logit
