"""softshare: soft weight-sharing, a learned Gaussian-mixture prior over weights.

The penalty ``lam * Omega(w) = -lam * sum_i ln sum_j pi_j N(w_i | mu_j, sigma_j^2)``
(Nowlan & Hinton 1992; Bishop, PRML 5.5.7) and all its gradients, computed
by a fused native kernel in one parallel pass over the weights.

>>> import numpy as np, softshare
>>> mix = softshare.Mixture(mu=[0.0, 0.2], log_var=[-6.0, -4.0], logit=[1.0, 0.0])
>>> r = softshare.penalty(np.linspace(-0.3, 0.3, 7), mix, lam=1e-3)
>>> r.grad_w.shape
(7,)

:mod:`softshare.reference` holds the same functions in plain NumPy.
"""

from __future__ import annotations

from . import reference
from ._mixture import Mixture
from ._penalty import _select_simd_from_env, has_openmp, penalty, simd_target, simd_targets
from ._result import PenaltyResult
from ._version import __version__

__all__ = [
    "Mixture",
    "PenaltyResult",
    "__version__",
    "has_openmp",
    "penalty",
    "reference",
    "simd_target",
    "simd_targets",
]

_select_simd_from_env()
