"""The op's forward computation on either backend: value and every gradient, as tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .._inputs import Weights
from .._mixture import Mixture
from .._penalty import penalty_raw, totals_raw
from ._fallback import check_finite, forward_torch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor

__all__ = [
    "Computed",
    "NativeCall",
    "as_numpy",
    "common_dtype",
    "compute",
    "dense",
    "mixture_of",
    "native_applies",
    "value_dtype",
]

_NATIVE_DTYPES = (torch.float32, torch.float64)

#: (value, grad_w per weight, grad_mu, grad_log_var, grad_logit)
Computed = tuple["Tensor", "list[Tensor]", "Tensor", "Tensor", "Tensor"]


def native_applies(weights: Sequence[Tensor], params: Sequence[Tensor]) -> bool:
    """Whether the native kernel takes these tensors: CPU, float32/float64 weights."""
    return all(t.is_cpu for t in (*weights, *params)) and all(
        w.dtype in _NATIVE_DTYPES for w in weights
    )


def value_dtype(weights: Sequence[Tensor], params: Sequence[Tensor]) -> torch.dtype:
    """The dtype of the value: the promotion of every input's dtype."""
    dtype = params[0].dtype
    for other in {t.dtype for t in (*weights, *params)}:  # a network has one or two
        dtype = torch.promote_types(dtype, other)
    return dtype


def as_numpy(t: Tensor) -> np.ndarray:
    """A NumPy view of a CPU tensor, through DLPack.

    Not ``Tensor.numpy()``: that marks the storage non-resizable for good, and
    FSDP2 frees unsharded parameters by resizing theirs.
    """
    return np.from_dlpack(t.detach())


def mixture_of(mu: Tensor, log_var: Tensor, logit: Tensor) -> Mixture:
    """A float64 :class:`softshare.Mixture` of mixture tensors (checked by ``Mixture``)."""
    stacked = torch.stack([mu.detach(), log_var.detach(), logit.detach()])  # dtypes promote
    return Mixture._from_rows(stacked.to("cpu", torch.float64).numpy())


def dense(t: Tensor) -> Tensor:
    """``t`` itself if its memory holds its values in order, else such a copy."""
    if t.is_contiguous() and not t.is_neg():
        return t
    return t.detach().resolve_neg().contiguous()


def raw_mixture(
    mu: Tensor, log_var: Tensor, logit: Tensor
) -> tuple[tuple[Tensor, ...], tuple[int, int, int, int, bool]]:
    """Tensors holding the mixture in kernel order, and their raw description.

    The parameters themselves when they share a float32/float64 dtype (the
    kernel reads them in place), else one float64 copy of all three rows.
    """
    params = (mu, log_var, logit)
    dtype = common_dtype(params)
    if not all(p.dtype == dtype and p.is_contiguous() and not p.is_neg() for p in params):
        rows = torch.stack([p.detach() for p in params]).to("cpu", torch.float64)
        params = (rows[0], rows[1], rows[2])
        dtype = torch.float64
    m = mu.shape[0]
    return params, (*(p.data_ptr() for p in params), m, dtype == torch.float64)  # type: ignore[return-value]


class NativeCall:
    """One native pass over CPU tensors, in three phases: prepare, :meth:`run`, :meth:`finish`.

    Made on the caller's thread (gradient buffers, addresses); ``run`` only
    calls the kernel, which releases the GIL and computes the value and every
    gradient natively, so it can run on a background thread without waiting
    for the GIL (the overlapped penalty); ``finish`` wraps the results as
    tensors. No copy of contiguous weights or mixture parameters: the kernel
    gets the tensors' addresses (NumPy views would cost more than the pass on
    small layers), and this object keeps the tensors alive.

    ``grads``, when given, are the tensors ``grad_w`` goes into (contiguous,
    of the weights' shapes and dtypes), and ``accumulate`` flags those it is
    added to rather than written into (``softshare.penalty``'s ``accumulate``);
    ``prepared``, the weights as the kernel reads them (:func:`dense`) and the
    raw segments of both, when the caller made them already.
    """

    def __init__(
        self,
        weights: Sequence[Tensor],
        mu: Tensor,
        log_var: Tensor,
        logit: Tensor,
        lam: float,
        n_threads: int | None = None,
        *,
        grads: Sequence[Tensor] | None = None,
        accumulate: Sequence[bool] = (),
        prepared: tuple[list[Tensor], list[tuple[int, int, int, bool]]] | None = None,
    ) -> None:
        self.weights = weights
        self.params = (mu, log_var, logit)
        self.lam = lam
        if grads is None:
            grads = [torch.empty(w.shape, dtype=w.dtype) for w in weights]
        self.grads = list(grads)
        self.accumulate = list(accumulate)
        if prepared is None:
            self.dense = [dense(w) for w in weights]
            self.segments = [
                (w.data_ptr(), g.data_ptr(), w.numel(), w.dtype == torch.float64)
                for w, g in zip(self.dense, self.grads)
            ]
        else:
            self.dense, self.segments = prepared
        self.mixture_tensors, self.mixture = raw_mixture(mu, log_var, logit)
        # the mixture gradients, in the parameters' dtype when they share one
        out_dtype = common_dtype(self.params)
        self.out = [torch.empty(mu.shape, dtype=out_dtype) for _ in range(3)]
        # by default torch's own thread count: the setting the rest of the step runs on
        self.n_threads = torch.get_num_threads() if n_threads is None else n_threads
        self.raw: tuple[float | None, float, float, np.ndarray] | None = None
        self.ran = False

    def run(self) -> None:
        """The kernel: ``grad_w`` into the gradient tensors, the rest into ``out``."""
        g_mu, g_lv, g_logit = self.out
        out = (g_mu.data_ptr(), g_lv.data_ptr(), g_logit.data_ptr(), g_mu.dtype == torch.float64)
        self.raw = penalty_raw(
            self.segments, self.mixture, self.lam, self.n_threads, out, self.accumulate
        )
        self.ran = True

    def _views(self) -> tuple[Weights, list[np.ndarray | None]]:
        flat = [as_numpy(w).reshape(-1) for w in self.dense]
        shapes = [tuple(w.shape) for w in self.weights]
        added = self.accumulate or [False] * len(self.grads)
        grads = [None if a else as_numpy(g).reshape(-1) for g, a in zip(self.grads, added)]
        return Weights(flat, shapes, True), grads

    def finish(self) -> Computed:
        """Value and gradients as tensors (errors as :func:`softshare.penalty`'s)."""
        assert self.ran, "run() first"
        value_type = value_dtype(self.weights, self.params)
        if self.raw is None or self.raw[0] is None:
            return self._finish_in_python(value_type)
        g_mu, g_lv, g_logit = (
            g if g.dtype == p.dtype else g.to(p.dtype) for g, p in zip(self.out, self.params)
        )
        return torch.tensor(self.raw[0], dtype=value_type), self.grads, g_mu, g_lv, g_logit

    def _finish_in_python(self, value_type: torch.dtype) -> Computed:
        """The slow path: a mixture the kernel refused, or a pass that needs its checks."""
        mixture = mixture_of(*self.params)  # raises Mixture's error for a refused mixture
        if self.raw is None:  # pragma: no cover (Mixture refuses what the kernel does)
            msg = "the mixture is outside what the kernel supports"
            raise ValueError(msg)
        totals = totals_raw(self.raw, mixture, self.lam, self._views)
        g_mu, g_lv, g_logit = (
            torch.from_numpy(g).to(p.dtype)
            for g, p in zip((totals.grad_mu, totals.grad_log_var, totals.grad_logit), self.params)
        )
        return torch.tensor(totals.value, dtype=value_type), self.grads, g_mu, g_lv, g_logit


def common_dtype(params: Sequence[Tensor]) -> torch.dtype:
    """The mixture parameters' one float32/float64 dtype, else float64."""
    dtype = params[0].dtype
    if dtype in _NATIVE_DTYPES and all(p.dtype == dtype for p in params):
        return dtype
    return torch.float64


def compute(
    weights: Sequence[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,
    backend: str,
    *,
    n_threads: int | None = None,
) -> Computed:
    """Value ``lam * Omega`` and its gradients, on the backend ``backend`` selects.

    "native" runs the C++ kernel (``ValueError`` where it does not apply) on
    ``n_threads`` threads (default: torch's), "torch" the chunked pure-torch
    implementation, "auto" the kernel where it applies. Non-finite inputs
    raise ``ValueError`` naming the tensor.
    """
    params = (mu, log_var, logit)
    use_native = backend == "native" or (backend == "auto" and native_applies(weights, params))
    if use_native:
        if not native_applies(weights, params):
            msg = "backend='native' needs CPU tensors and float32/float64 weights"
            raise ValueError(msg)
        # softshare.Mixture and the kernel check finiteness themselves
        call = NativeCall(weights, mu, log_var, logit, lam, n_threads)
        call.run()
        return call.finish()
    for name, p in zip(("mu", "log_var", "logit"), params):
        check_finite(name, p.detach())
    for k, w in enumerate(weights):
        check_finite(f"weights[{k}]", w.detach())
    value, grads, g_mu, g_lv, g_logit = forward_torch(weights, mu, log_var, logit, lam)
    return value.to(value_dtype(weights, params)), grads, g_mu, g_lv, g_logit
