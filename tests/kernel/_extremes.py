"""What the extreme-input tests share: the comparison with the reference, limits, an oracle.

See test_extremes.py for the cases these serve (the kernel's float32 and float64 fallbacks).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

import softshare
from softshare import reference
from softshare._formulas import HALF_LOG_2PI

from tests.conftest import assert_fields_close, tolerance

DTYPES = [np.float32, np.float64]
FIELDS = ("value", "grad_w", "grad_mu", "grad_sigma", "grad_log_var", "grad_logit")
#: What a ValueError may say: it names the parameter or the overflow.
DOCUMENTED = re.compile(
    r"must be finite|penalty overflowed|lam must be|(mu|log_var|logit)(\[\d+\])? (is|must)|"
    r"outside the range"
)


def _tiny(dtype: type) -> float:
    return float(np.finfo(dtype).tiny)


def _no_nan(result: softshare.PenaltyResult) -> None:
    grads = result.grad_w if isinstance(result.grad_w, list) else [result.grad_w]
    gammas = [] if result.gamma is None else result.gamma
    gammas = gammas if isinstance(gammas, list) else [gammas]
    for name, arr in [
        ("value", np.asarray(result.value)),
        ("stats", result.stats),
        *((f, getattr(result, f)) for f in FIELDS[2:]),
        *(("grad_w", g) for g in grads),
        *(("gamma", g) for g in gammas),
    ]:
        assert not np.any(np.isnan(arr)), f"NaN in {name}"


def _zero_where(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.array(arr, copy=True)
    out[mask] = 0
    return out


def _conditioning(w: np.ndarray, mix: softshare.Mixture) -> np.ndarray:
    """``1 + sum_j gamma_ij |l_ij|`` per weight: how much rounding of the log-terms is amplified.

    Beyond about 1e12, float64 keeps no digit of the responsibilities (the
    reference itself computes gamma = exp(l - L) with L rounded to |L|'s ulp).
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        x = np.asarray(w, dtype=np.float64).ravel()
        q = (x[:, None] - mix.mu[None, :]) * (math.sqrt(0.5) * np.exp(-0.5 * mix.log_var))
        terms = (mix.log_pi - HALF_LOG_2PI - 0.5 * mix.log_var)[None, :] - q * q
        top = np.max(terms, axis=1, keepdims=True)
        e = np.exp(terms - top)
        gamma = e / np.sum(e, axis=1, keepdims=True)
        return 1.0 + np.sum(np.where(gamma > 0, gamma * np.abs(terms), 0.0), axis=1)


def assert_agrees(
    native: softshare.PenaltyResult,
    ref: softshare.PenaltyResult,
    weights: np.ndarray,
    mix: softshare.Mixture,
    lam: float,
) -> None:
    """No NaN; +-inf where the reference has it; the rest within float bounds.

    Where the reference is +-inf the kernel must be the same infinity, unless
    the entry is so ill-conditioned (see :func:`_conditioning`) that the
    reference's own rounding may have made it overflow.
    """
    _no_nan(native)
    assert np.isfinite(native.value)
    cond = _conditioning(weights, mix)
    sound = cond < 1e9
    fields: dict[str, object] = {}
    finite_ref = {}
    for name in FIELDS[1:]:
        got, want = np.asarray(getattr(native, name)), np.asarray(getattr(ref, name))
        assert got.dtype == want.dtype, name
        off = ~np.isfinite(want)
        strict = off & (sound if name == "grad_w" else bool(np.all(sound)))
        np.testing.assert_array_equal(got[strict], want[strict], err_msg=name)
        fields[name] = _zero_where(got, off)
        finite_ref[name] = _zero_where(want, off)
    fields["value"] = native.value
    for k, name in enumerate(("S0", "S1", "S2")):
        off = ~np.isfinite(ref.stats[k])
        strict = off & bool(np.all(sound))
        np.testing.assert_array_equal(native.stats[k][strict], ref.stats[k][strict], err_msg=name)
        fields[name] = _zero_where(native.stats[k], off)
    ref_stats = np.where(np.isfinite(ref.stats), ref.stats, 0.0)
    ref = dataclasses.replace(ref, stats=ref_stats, **finite_ref)  # type: ignore[arg-type]
    dtype = weights.dtype.type
    _forgive_underflow(fields, ref, mix, lam, dtype)
    rtol = 10 * tolerance(dtype)
    if float(np.max(cond, initial=1.0)) * float(np.finfo(dtype).eps) > 0.1:
        # Log-terms so large that their rounding in the weights' precision is
        # more than 0.1: the responsibilities among the nearest components are
        # not determined by that precision (a float32 weight 1e11 sigmas out
        # cannot tell pi = 1 from pi = 0); only the value keeps its bound.
        fields = {"value": fields["value"]}
    assert_fields_close(
        fields,
        ref,
        rtol,
        weights=weights.astype(np.float64),
        mixture=mix,
        lam=lam,
        atol_w=_tiny(dtype),
        atol_gamma=_tiny(dtype),
    )


def _forgive_underflow(
    fields: dict[str, object],
    ref: softshare.PenaltyResult,
    mix: softshare.Mixture,
    lam: float,
    dtype: type,
) -> None:
    """Accept the kernel's underflow of ``z = (w - mu) / sigma`` terms.

    The kernel sums ``gamma z`` and ``gamma z^2`` in units of ``z``: terms below
    its dtype's smallest subnormal (1.4e-45 in float32, 4.9e-324 in float64:
    a float64 weight 1e-162 from a wide component) are lost, an absolute error of about that
    times ``sigma_j`` in S1 and ``sigma_j^2`` in S2 per weight, and what follows
    from them in the mixture's gradients; negligible next to S0 sigma_j and S0
    sigma_j^2, but beyond bounds relative to the sums themselves when the
    weights sit within 1e-23 sigma of a component. Entries within that are set
    to the reference's.
    """
    floor = 64 * float(np.finfo(dtype).smallest_subnormal) * ref.n
    sigma = mix.sigma / math.sqrt(0.5 * math.log2(math.e))  # 1 / r: units of z
    with np.errstate(over="ignore", divide="ignore", under="ignore", invalid="ignore"):
        allow = {
            "S1": floor * sigma,
            "S2": floor * sigma * sigma,
            "grad_mu": lam * floor * sigma / mix.var,
            "grad_log_var": lam * floor * sigma * sigma / mix.var,
            "grad_sigma": lam * floor * sigma * sigma / (mix.var * mix.sigma),
        }
    want = {"S1": ref.stats[1], "S2": ref.stats[2]}
    for name, tol in allow.items():
        if name not in fields:
            continue
        got = np.array(fields[name], dtype=np.float64)
        target = want[name] if name in want else getattr(ref, name)
        close = np.abs(got - target) <= tol
        got[close] = target[close]
        fields[name] = got


def _mixture_around(log_var: float) -> softshare.Mixture:
    """Three overlapping components of log-variances near ``log_var`` (within +-708)."""
    sigma = math.exp(0.5 * log_var)
    log_vars = np.clip([log_var, log_var - 1.0, log_var + 1.0], -708.0, 708.0)
    return softshare.Mixture([0.0, 3 * sigma, -2 * sigma], log_vars, [0.0, 1.0, -1.0])


def _weights_around(mix: softshare.Mixture, n: int, dtype: type, seed: int = 0) -> np.ndarray:
    """Weights within a few sigmas of the components, in the dtype's range."""
    rng = np.random.default_rng(seed)
    j = rng.integers(0, mix.n_components, n)
    top = float(np.finfo(dtype).max)
    w = np.clip(mix.mu[j] + rng.normal(0.0, 2.0, n) * mix.sigma[j], -top, top)
    return w.astype(dtype)


def _both(
    weights: np.ndarray, mix: softshare.Mixture, lam: float = 1.0, **kw: object
) -> tuple[softshare.PenaltyResult, softshare.PenaltyResult]:
    return softshare.penalty(weights, mix, lam, **kw), reference.penalty(weights, mix, lam, **kw)  # type: ignore[arg-type]


@dataclasses.dataclass
class _Oracle:
    value: float
    grad_w: np.ndarray
    s0: np.ndarray
    scale: float  # sum_i |L_i|: what the value's rounding errors are relative to


def _scaled_oracle(w: np.ndarray, mix: softshare.Mixture, lam: float) -> _Oracle:
    """The penalty with ``(w - mu)^2 / (2 sigma^2)`` formed as ``((w - mu) / (sqrt 2 sigma))^2``.

    Finite wherever the log-densities are; the reference forms ``(w - mu)^2``
    first, which overflows for ``|w - mu| > 1.9e154`` whatever sigma is.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        x = np.asarray(w, dtype=np.float64).ravel()
        inv_sigma = np.exp(-0.5 * mix.log_var)
        q = (x[:, None] - mix.mu[None, :]) * (math.sqrt(0.5) * inv_sigma)
        terms = (mix.log_pi - HALF_LOG_2PI - 0.5 * mix.log_var)[None, :] - q * q
        top = np.max(terms, axis=1, keepdims=True)
        big_l = top[:, 0] + np.log(np.sum(np.exp(terms - top), axis=1))
        gamma = np.exp(terms - big_l[:, None])
        # gamma (w - mu) / sigma^2 = gamma q sqrt(2) / sigma, 0 where gamma is
        grad = lam * np.sum(
            np.where(gamma > 0, gamma * q * (math.sqrt(2.0) * inv_sigma), 0), axis=1
        )
    return _Oracle(
        value=-lam * float(np.sum(big_l)),
        grad_w=grad,
        s0=np.sum(gamma, axis=0),
        scale=lam * float(np.sum(np.abs(big_l))),
    )
