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

try:
    from . import _core  # noqa: F401 (fail here, with the message below)
except ImportError as _err:  # pragma: no cover - only without a build
    _msg = (
        "softshare's compiled core (softshare._core) could not be imported. Did you forget to "
        "compile it? Install the package with `pip install .` (it builds the C++ kernel); "
        "importing softshare from a source checkout without building does not work. "
        f"The original error: {_err}"
    )
    raise ImportError(_msg) from _err

from . import reference
from ._mixture import Mixture
from ._native_recipe import assign
from ._penalty import penalty
from ._result import PenaltyResult, PenaltyTotals, from_partial_sums
from ._runtime import _select_simd_from_env, has_openmp, simd_target, simd_targets
from ._version import __version__

__all__ = [
    "Mixture",
    "PenaltyResult",
    "PenaltyTotals",
    "__version__",
    "assign",
    "from_partial_sums",
    "has_openmp",
    "penalty",
    "reference",
    "simd_target",
    "simd_targets",
]

_select_simd_from_env()
