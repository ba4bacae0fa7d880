"""The mixture prior's parameters: :class:`Mixture`, an immutable value."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

__all__ = ["MAX_ABS_LOG_VAR", "Mixture"]

#: The largest |log_var| a mixture may have: exp(+-708) are normal float64 numbers.
MAX_ABS_LOG_VAR = 708.0


def _param(name: str, values: ArrayLike) -> NDArray[np.float64]:
    """Return a read-only float64 copy of a 1-D, finite, real mixture parameter."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        msg = f"{name} must be real numbers, got an array of dtype {arr.dtype}"
        raise TypeError(msg)
    if arr.ndim != 1:
        msg = f"{name} must be 1-D (one value per component), got shape {arr.shape}"
        raise ValueError(msg)
    out = np.array(arr, dtype=np.float64, copy=True)
    bad = np.flatnonzero(~np.isfinite(out))
    if bad.size:
        i = int(bad[0])
        msg = f"{name} must be finite: {name}[{i}] = {out[i]}"
        raise ValueError(msg)
    out.setflags(write=False)
    return out


def check_component_shapes(*shapes: tuple[int, ...], kind: str = "arrays") -> int:
    """Check that ``mu``, ``log_var`` and ``logit`` are 1-D of one length M >= 1; return M.

    Shared by :class:`Mixture` and the torch adapter (``kind="tensors"``).
    """
    if any(len(s) != 1 for s in shapes):
        msg = (
            f"mu, log_var and logit must be 1-D {kind} of one length M >= 1, got shapes "
            + ", ".join(str(tuple(s)) for s in shapes)
        )
        raise ValueError(msg)
    m = shapes[0][0]
    if m == 0:
        msg = "a mixture needs at least one component (M >= 1), got M = 0"
        raise ValueError(msg)
    if any(s[0] != m for s in shapes):
        lengths = [str(s[0]) for s in shapes]
        msg = (
            f"mu, log_var and logit must be 1-D {kind} of one length M >= 1 (the same length M, "
            f"got {', '.join(lengths[:-1])} and {lengths[-1]})"
        )
        raise ValueError(msg)
    return int(m)


def _readonly(arr: NDArray[np.float64]) -> NDArray[np.float64]:
    arr.setflags(write=False)
    return arr


class Mixture:
    """A Gaussian mixture prior over weights, in its unconstrained parameters.

    Parameters
    ----------
    mu : array_like, shape (M,)
        Component means ``mu_j``.
    log_var : array_like, shape (M,)
        Log-variances ``xi_j = ln sigma_j**2``.
    logit : array_like, shape (M,)
        Mixing logits ``eta_j``; the mixing proportions are ``softmax(logit)``.

    Raises
    ------
    TypeError
        If a parameter is not real-valued.
    ValueError
        If a parameter is not 1-D or not finite, the three lengths differ,
        ``M == 0``, or some ``|log_var|`` exceeds 708 (beyond it sigma^2 or
        its inverse is not a normal float64 number).

    Notes
    -----
    The arrays are copied to float64 and made read-only, so a ``Mixture`` is
    an immutable value. ``pi``, ``sigma`` and ``var`` are derived from them.

    Examples
    --------
    >>> import softshare
    >>> mix = softshare.Mixture([0.0, 0.5], [-4.0, -2.0], [2.0, 0.0])
    >>> mix.n_components
    2
    """

    # the parameters, and what is derived from them (computed once, on first use)
    __slots__ = ("_log_pi", "_log_var", "_logit", "_mu", "_pi", "_sigma", "_var")
    _mu: NDArray[np.float64]
    _log_var: NDArray[np.float64]
    _logit: NDArray[np.float64]
    _log_pi: NDArray[np.float64] | None
    _pi: NDArray[np.float64] | None
    _var: NDArray[np.float64] | None
    _sigma: NDArray[np.float64] | None

    def __init__(self, mu: ArrayLike, log_var: ArrayLike, logit: ArrayLike) -> None:
        mu_a = _param("mu", mu)
        log_var_a = _param("log_var", log_var)
        logit_a = _param("logit", logit)
        check_component_shapes(mu_a.shape, log_var_a.shape, logit_a.shape)
        bad = np.flatnonzero(np.abs(log_var_a) > MAX_ABS_LOG_VAR)
        if bad.size:
            i = int(bad[0])
            msg = (
                f"log_var[{i}] = {log_var_a[i]} is outside the range [-{MAX_ABS_LOG_VAR}, "
                f"{MAX_ABS_LOG_VAR}]: sigma^2 = exp(log_var) and its inverse must be normal "
                "float64 numbers"
            )
            raise ValueError(msg)
        self._set(mu_a, log_var_a, logit_a)

    def _set(
        self, mu: NDArray[np.float64], log_var: NDArray[np.float64], logit: NDArray[np.float64]
    ) -> None:
        self._mu, self._log_var, self._logit = mu, log_var, logit
        self._log_pi = self._pi = self._var = self._sigma = None

    @classmethod
    def _from_rows(cls, rows: NDArray[np.float64]) -> Mixture:
        """The mixture of the rows ``(mu, log_var, logit)`` of a (3, M) float64 array.

        The fast path of adapters that call the kernel every training step:
        valid rows are used as they are (made read-only, not copied), so the
        caller hands the array over; anything else goes through ``Mixture``
        and its errors.
        """
        valid = (
            rows.dtype == np.float64
            and rows.ndim == 2
            and rows.shape[0] == 3
            and rows.shape[1] >= 1
            and bool(np.isfinite(rows).all())
            and float(np.abs(rows[1]).max()) <= MAX_ABS_LOG_VAR
        )
        if not valid:
            return cls(*rows)
        rows.setflags(write=False)
        mixture = object.__new__(cls)
        mixture._set(*rows)
        return mixture

    @classmethod
    def from_pi_sigma(cls, pi: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> Mixture:
        """Build a mixture from its natural parameters.

        Parameters
        ----------
        pi : array_like, shape (M,)
            Mixing proportions, all > 0. They are normalised to sum to 1.
        mu : array_like, shape (M,)
            Component means.
        sigma : array_like, shape (M,)
            Component standard deviations, all > 0.

        Returns
        -------
        Mixture
            With ``logit = ln(pi / sum(pi))`` and ``log_var = 2 ln(sigma)``.

        Raises
        ------
        ValueError
            If some ``pi`` or ``sigma`` is not positive, or as ``Mixture``.
        """
        pi_a = _param("pi", pi)
        sigma_a = _param("sigma", sigma)
        for name, arr in (("pi", pi_a), ("sigma", sigma_a)):
            bad = np.flatnonzero(arr <= 0)
            if bad.size:
                i = int(bad[0])
                msg = f"{name} must be positive: {name}[{i}] = {arr[i]}"
                raise ValueError(msg)
        logit = np.log(pi_a) - np.log(np.sum(pi_a))
        return cls(mu, 2.0 * np.log(sigma_a), logit)

    @property
    def mu(self) -> NDArray[np.float64]:
        """Component means, float64, shape (M,), read-only."""
        return self._mu

    @property
    def log_var(self) -> NDArray[np.float64]:
        """Log-variances ``ln sigma**2``, float64, shape (M,), read-only."""
        return self._log_var

    @property
    def logit(self) -> NDArray[np.float64]:
        """Mixing logits, float64, shape (M,), read-only."""
        return self._logit

    @property
    def n_components(self) -> int:
        """Number of components M."""
        return int(self._mu.shape[0])

    @property
    def log_pi(self) -> NDArray[np.float64]:
        """Log mixing proportions ``logit - logsumexp(logit)``."""
        if self._log_pi is None:
            logit = self._logit
            top = logit.max()
            if np.abs(logit).max() <= 64.0:
                self._log_pi = _readonly(logit - (top + np.log(np.exp(logit - top).sum())))
            else:
                with np.errstate(over="ignore"):  # logits ~1e308 apart: the far one's pi is 0
                    shifted = logit - top
                    # large logits: top + log(...) would round the small log away
                    self._log_pi = _readonly(shifted - np.log(np.exp(shifted).sum()))
        return self._log_pi

    @property
    def pi(self) -> NDArray[np.float64]:
        """Mixing proportions ``softmax(logit)``, summing to 1."""
        if self._pi is None:
            self._pi = _readonly(np.exp(self.log_pi))
        return self._pi

    @property
    def var(self) -> NDArray[np.float64]:
        """Component variances ``exp(log_var)``."""
        if self._var is None:
            self._var = _readonly(np.exp(self._log_var))
        return self._var

    @property
    def sigma(self) -> NDArray[np.float64]:
        """Component standard deviations ``exp(log_var / 2)``."""
        if self._sigma is None:
            self._sigma = _readonly(np.exp(0.5 * self._log_var))
        return self._sigma

    def __repr__(self) -> str:
        with np.printoptions(precision=4, threshold=8):
            return f"Mixture(mu={self._mu}, log_var={self._log_var}, logit={self._logit})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mixture):
            return NotImplemented
        return bool(
            np.array_equal(self._mu, other._mu)
            and np.array_equal(self._log_var, other._log_var)
            and np.array_equal(self._logit, other._logit)
        )

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[type[Mixture], tuple[NDArray[np.float64], ...]]:
        """Pickled as its three parameters and rebuilt through ``__init__``.

        So an unpickled mixture is checked again, read-only, and derives
        ``pi``, ``var`` and ``sigma`` afresh (a pickle of the slots would carry
        writeable copies of the arrays and the cached values beside them).
        """
        return (Mixture, (self._mu, self._log_var, self._logit))

    def __copy__(self) -> Mixture:
        """The mixture itself: it is an immutable value."""
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Mixture:
        """The mixture itself: it is an immutable value."""
        return self
