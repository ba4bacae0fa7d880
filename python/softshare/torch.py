"""PyTorch backend: the soft weight-sharing penalty as a differentiable torch op.

Optional: needs ``torch`` (``pip install softshare[torch]``); ``import softshare``
never imports this module.

>>> import torch, softshare.torch as sst
>>> model = torch.nn.Linear(20, 10)
>>> prior = sst.MixturePrior(mu=[0.0, -0.1, 0.1], log_var=[-8.0, -6.0, -6.0], logit=[2.0, 0.0, 0.0])
>>> loss = prior(model, lam=1e-3)
>>> loss.backward()  # gradients reach model.weight, model.bias and prior.mu/log_var/logit

The op ``torch.ops.softshare.penalty`` computes the value and every gradient in
one pass (the native kernel for CPU float32/float64 tensors, zero-copy; a
chunked pure-torch implementation of the same math on any other device or
dtype) and saves the gradients, so backward only scales them. It has a fake
implementation and an autograd formula registered with ``torch.library``, so
``torch.compile(fullgraph=True)`` traces through it without a graph break.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import Tensor, nn

from ._inputs import as_lam
from ._mixture import Mixture
from ._penalty import penalty as _native_penalty
from .compress import HyperPrior

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["MixturePrior", "penalty"]

#: Backends of the op: "auto" picks "native" where it applies, else "torch".
BACKENDS = ("auto", "native", "torch")
_NATIVE_DTYPES = (torch.float32, torch.float64)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_CHUNK = 1 << 16

TensorOrTensors = Union[Tensor, Iterable[Tensor]]


def _native_applies(weights: Sequence[Tensor], params: Sequence[Tensor]) -> bool:
    return all(t.device.type == "cpu" for t in (*weights, *params)) and all(
        w.dtype in _NATIVE_DTYPES for w in weights
    )


def _value_dtype(weights: Sequence[Tensor], params: Sequence[Tensor]) -> torch.dtype:
    dtype = params[0].dtype
    for t in (*weights, *params):
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _check_finite(name: str, t: Tensor) -> None:
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        msg = f"{name} must be finite: found {t[index].item()} at index {index}"
        raise ValueError(msg)


def _forward_native(
    weights: Sequence[Tensor], mu: Tensor, log_var: Tensor, logit: Tensor, lam: float
) -> tuple[float, list[Tensor], Tensor, Tensor, Tensor]:
    mix = Mixture(*(p.detach().to(torch.float64).numpy() for p in (mu, log_var, logit)))
    r = _native_penalty([w.detach().numpy() for w in weights], mix, lam)
    grad_w = r.grad_w if isinstance(r.grad_w, list) else [r.grad_w]
    grads = [torch.from_numpy(np.asarray(g)) for g in grad_w]
    return (
        r.value,
        grads,
        torch.from_numpy(r.grad_mu).to(mu.dtype),
        torch.from_numpy(r.grad_log_var).to(log_var.dtype),
        torch.from_numpy(r.grad_logit).to(logit.dtype),
    )


def _forward_torch(
    weights: Sequence[Tensor], mu: Tensor, log_var: Tensor, logit: Tensor, lam: float
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    """The same math in plain torch ops, on the tensors' device, O(chunk x M) memory.

    Log-terms and responsibilities are computed in float32 (float64 for float64
    input); the per-component sums and the value accumulate in float64 where the
    device has it.
    """
    device = mu.device
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    work = torch.float64 if any(t.dtype == torch.float64 for t in weights) else torch.float32
    m64 = mu.detach().to(acc_dtype)
    lv64 = log_var.detach().to(acc_dtype)
    log_pi = torch.log_softmax(logit.detach().to(acc_dtype), dim=0)
    c = (log_pi - _HALF_LOG_2PI - 0.5 * lv64).to(work)
    mu_w = m64.to(work)
    inv_var = torch.exp(-lv64).to(work)
    sum_l = torch.zeros((), dtype=acc_dtype, device=device)
    s0 = torch.zeros_like(m64)
    s1 = torch.zeros_like(m64)
    s2 = torch.zeros_like(m64)
    grads = []
    n = 0
    for w in weights:
        flat = w.detach().reshape(-1)
        n += flat.numel()
        grad = torch.empty(flat.shape, dtype=w.dtype, device=w.device)
        for i0 in range(0, flat.numel(), _CHUNK):
            x = flat[i0 : i0 + _CHUNK].to(work)
            d = x[:, None] - mu_w[None, :]
            log_terms = c - 0.5 * d * d * inv_var
            big_l = torch.logsumexp(log_terms, dim=1)
            gamma = torch.exp(log_terms - big_l[:, None])
            grad[i0 : i0 + _CHUNK] = (lam * (gamma * d * inv_var).sum(dim=1)).to(w.dtype)
            gd = gamma * d
            sum_l += big_l.to(acc_dtype).sum()
            s0 += gamma.to(acc_dtype).sum(dim=0)
            s1 += gd.to(acc_dtype).sum(dim=0)
            s2 += (gd * d).to(acc_dtype).sum(dim=0)
        grads.append(grad.reshape(w.shape))
    var = torch.exp(lv64)
    pi = torch.exp(log_pi)
    value = -lam * sum_l
    if not bool(torch.isfinite(value)):
        msg = "the penalty overflowed: some weight is too far from every mixture component"
        raise ValueError(msg)
    return (
        value,
        grads,
        (-lam * s1 / var).to(mu.dtype),
        (0.5 * lam * (s0 - s2 / var)).to(log_var.dtype),
        (lam * (n * pi - s0)).to(logit.dtype),
    )


@torch.library.custom_op("softshare::penalty", mutates_args=())
def _penalty_op(
    weights: list[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,
    backend: str,
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    """Value ``lam * Omega`` and its gradients for weights, mu, log_var and logit."""
    params = (mu, log_var, logit)
    value_dtype = _value_dtype(weights, params)
    use_native = backend == "native" or (backend == "auto" and _native_applies(weights, params))
    if use_native:
        if not _native_applies(weights, params):
            msg = "backend='native' needs CPU tensors and float32/float64 weights"
            raise ValueError(msg)
        # softshare.Mixture and the kernel check finiteness themselves
        value, grads, g_mu, g_lv, g_logit = _forward_native(weights, mu, log_var, logit, lam)
        value_t = torch.tensor(value, dtype=value_dtype)
    else:
        for name, p in zip(("mu", "log_var", "logit"), params):
            _check_finite(name, p.detach())
        for k, w in enumerate(weights):
            _check_finite(f"weights[{k}]", w.detach())
        value_t, grads, g_mu, g_lv, g_logit = _forward_torch(weights, mu, log_var, logit, lam)
        value_t = value_t.to(value_dtype)
    return value_t, grads, g_mu, g_lv, g_logit


@_penalty_op.register_fake
def _penalty_fake(
    weights: list[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float,  # noqa: ARG001 (the op's signature)
    backend: str,  # noqa: ARG001
) -> tuple[Tensor, list[Tensor], Tensor, Tensor, Tensor]:
    value = mu.new_empty((), dtype=_value_dtype(weights, (mu, log_var, logit)))
    return (
        value,
        [torch.empty_like(w) for w in weights],
        torch.empty_like(mu),
        torch.empty_like(log_var),
        torch.empty_like(logit),
    )


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:  # noqa: ARG001
    _, grads, g_mu, g_lv, g_logit = output
    ctx.n_weights = len(grads)
    ctx.save_for_backward(*grads, g_mu, g_lv, g_logit)


def _backward(
    ctx: Any,
    grad_value: Tensor,
    _grad_grads: list[Tensor],
    _g_mu: Tensor,
    _g_lv: Tensor,
    _g_logit: Tensor,
) -> tuple[list[Tensor], Tensor, Tensor, Tensor, None, None]:
    saved = ctx.saved_tensors
    k = ctx.n_weights
    grads = [(grad_value * g).to(g.dtype) for g in saved[:k]]
    g_mu, g_lv, g_logit = ((grad_value * g).to(g.dtype) for g in saved[k:])
    return grads, g_mu, g_lv, g_logit, None, None


_penalty_op.register_autograd(_backward, setup_context=_setup_context)


def penalty(
    weights: TensorOrTensors,
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float = 1.0,
    *,
    backend: str = "auto",
) -> Tensor:
    """Soft weight-sharing penalty ``lam * Omega(w)`` as a differentiable tensor.

    Parameters
    ----------
    weights : Tensor or iterable of Tensor
        The weights (any shapes), e.g. ``model.parameters()``: one mixture over
        all of them.
    mu, log_var, logit : Tensor, shape (M,)
        The mixture's means, log-variances and mixing logits. Gradients flow to
        whichever of them (and of the weights) require grad.
    lam : float, default 1.0
        Penalty strength, finite and >= 0.
    backend : {"auto", "native", "torch"}, default "auto"
        "native" runs the fused C++ kernel (CPU tensors, float32/float64
        weights, no copies); "torch" the chunked pure-torch implementation on
        the tensors' device; "auto" the native kernel where it applies.

    Returns
    -------
    Tensor
        0-d tensor ``lam * Omega``, in the promoted dtype of the inputs.

    Raises
    ------
    ValueError
        Non-finite weights or mixture parameters, ``lam`` negative or not
        finite, an unknown backend, or mixture parameters that are not 1-D of
        one length.
    TypeError
        If ``weights`` holds something other than tensors.
    """
    ws = [weights] if isinstance(weights, Tensor) else list(weights)
    for k, w in enumerate(ws):
        if not isinstance(w, Tensor):
            msg = f"weights[{k}] must be a torch.Tensor, got {type(w).__name__}"
            raise TypeError(msg)
    if backend not in BACKENDS:
        msg = f"backend must be one of {BACKENDS}, got {backend!r}"
        raise ValueError(msg)
    if mu.ndim != 1 or log_var.shape != mu.shape or logit.shape != mu.shape or mu.numel() == 0:
        msg = (
            "mu, log_var and logit must be 1-D tensors of one length M >= 1, got shapes "
            f"{tuple(mu.shape)}, {tuple(log_var.shape)} and {tuple(logit.shape)}"
        )
        raise ValueError(msg)
    value: Tensor = torch.ops.softshare.penalty(ws, mu, log_var, logit, as_lam(lam), backend)[0]
    return value


class MixturePrior(nn.Module):
    """A learnable Gaussian-mixture prior over a network's weights.

    Parameters
    ----------
    mu, log_var, logit : array_like or Tensor, shape (M,)
        Initial means, log-variances and mixing logits, held as
        ``nn.Parameter`` (dtype ``torch.get_default_dtype()`` unless a tensor
        with its own float dtype is given).
    zero_component : bool, default False
        Pin component 0's mean at exactly 0 (``mu[0]`` is then ignored and gets
        no gradient).
    pi_zero : float, optional
        Fix component 0's mixing proportion at this value (the other
        proportions are ``(1 - pi_zero) * softmax(logit[1:])``); by default all
        proportions are ``softmax(logit)`` and learnt.
    hyperprior : softshare.compress.HyperPrior, optional
        Gamma priors on the precisions and a Beta prior on pi_zero, added to
        the penalty (times ``lam``'s scale: see ``forward``).

    Examples
    --------
    >>> prior = MixturePrior.from_mixture(softshare.Mixture([0.0, 0.1], [-8.0, -6.0], [1.0, 0.0]))
    ... # doctest: +SKIP
    >>> loss = criterion(model(x), y) + prior(model, lam=1e-4)  # doctest: +SKIP
    """

    def __init__(
        self,
        mu: ArrayLike | Tensor,
        log_var: ArrayLike | Tensor,
        logit: ArrayLike | Tensor,
        *,
        zero_component: bool = False,
        pi_zero: float | None = None,
        hyperprior: HyperPrior | None = None,
    ) -> None:
        super().__init__()
        tensors = [self._as_tensor(x) for x in (mu, log_var, logit)]
        Mixture(*(t.detach().to(torch.float64).cpu().numpy() for t in tensors))  # validates
        if pi_zero is not None and not 0.0 < pi_zero < 1.0:
            msg = f"pi_zero must be in (0, 1), got {pi_zero}"
            raise ValueError(msg)
        if (zero_component or pi_zero is not None) and tensors[0].numel() < 2:
            msg = "a zero component needs M >= 2"
            raise ValueError(msg)
        self.mu = nn.Parameter(tensors[0])
        self.log_var = nn.Parameter(tensors[1])
        self.logit = nn.Parameter(tensors[2])
        self.zero_component = bool(zero_component)
        self.pi_zero = pi_zero
        self.hyperprior = hyperprior

    def effective(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(mu, log_var, logit)`` as the penalty sees them (zero component applied)."""
        mu: Tensor = self.mu
        if self.zero_component:
            mu = torch.cat([torch.zeros_like(mu[:1]), mu[1:]])
        logit: Tensor = self.logit
        if self.pi_zero is not None:
            rest = math.log1p(-self.pi_zero) + torch.log_softmax(logit[1:], dim=0)
            logit = torch.cat([torch.full_like(logit[:1], math.log(self.pi_zero)), rest])
        return mu, self.log_var, logit

    def hyperprior_penalty(self) -> Tensor:
        """The hyper-priors' negative log-density (0 without a hyperprior)."""
        _, log_var, logit = self.effective()
        hp = self.hyperprior
        value = torch.zeros((), dtype=log_var.dtype, device=log_var.device)
        if hp is None:
            return value
        shape, rate = (
            torch.as_tensor(a, dtype=log_var.dtype, device=log_var.device)
            for a in hp.shape_rate(log_var.shape[0])
        )
        active = rate > 0
        terms = (shape - 1.0) * log_var + rate * torch.exp(-log_var)
        value = value + torch.where(active, terms, torch.zeros_like(terms)).sum()
        if hp.beta is not None:
            a, b = hp.beta
            log_pi = torch.log_softmax(logit, dim=0)
            value = value - (a - 1.0) * log_pi[0] - (b - 1.0) * torch.log1p(-torch.exp(log_pi[0]))
        return value

    @staticmethod
    def _as_tensor(x: ArrayLike | Tensor) -> Tensor:
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.detach().clone()
        return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.get_default_dtype())

    @classmethod
    def from_mixture(
        cls, mixture: Mixture, *, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> MixturePrior:
        """A prior initialised from a :class:`softshare.Mixture`, in ``dtype``.

        Keyword arguments (``zero_component``, ``pi_zero``, ``hyperprior``) are
        passed to the constructor.
        """
        dtype = dtype or torch.get_default_dtype()
        arrays = (mixture.mu, mixture.log_var, mixture.logit)
        return cls(*(torch.tensor(np.asarray(a), dtype=dtype) for a in arrays), **kwargs)

    @property
    def n_components(self) -> int:
        """Number of components M."""
        return int(self.mu.numel())

    def mixture(self) -> Mixture:
        """A float64 :class:`softshare.Mixture` snapshot of the effective parameters."""
        return Mixture(*(p.detach().to(torch.float64).cpu().numpy() for p in self.effective()))

    def penalized_parameters(self, model_or_params: nn.Module | TensorOrTensors) -> list[Tensor]:
        """The tensors the prior applies to: a module's parameters except the prior's own."""
        if isinstance(model_or_params, nn.Module):
            own = {id(p) for p in self.parameters()}
            return [p for p in model_or_params.parameters() if id(p) not in own]
        if isinstance(model_or_params, Tensor):
            return [model_or_params]
        return list(model_or_params)

    def forward(
        self,
        model_or_params: nn.Module | TensorOrTensors,
        lam: float = 1.0,
        *,
        hyper_lam: float | None = None,
    ) -> Tensor:
        """``lam * Omega`` over a module's parameters (or the given tensors).

        With a hyperprior, ``hyper_lam`` times its negative log-density is added
        (default: ``lam``, i.e. the hyper-priors weigh like one weight's prior).
        """
        mu, log_var, logit = self.effective()
        value = penalty(self.penalized_parameters(model_or_params), mu, log_var, logit, lam)
        if self.hyperprior is not None:
            value = value + (lam if hyper_lam is None else hyper_lam) * self.hyperprior_penalty()
        return value

    def parameter_groups(
        self,
        lr_mu: float | None = None,
        lr_log_var: float | None = None,
        lr_logit: float | None = None,
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups for the mixture, one per kind of parameter.

        A learning rate left as None is not set, so the optimizer's default applies.

        Examples
        --------
        >>> opt = torch.optim.Adam(  # doctest: +SKIP
        ...     [{"params": model.parameters()}, *prior.parameter_groups(5e-4, 1e-2, 3e-3)], lr=2e-3)
        """
        groups: list[dict[str, Any]] = []
        for param, lr in ((self.mu, lr_mu), (self.log_var, lr_log_var), (self.logit, lr_logit)):
            group: dict[str, Any] = {"params": [param]}
            if lr is not None:
                group["lr"] = lr
            groups.append(group)
        return groups

    def extra_repr(self) -> str:
        extras = [f"n_components={self.n_components}"]
        if self.zero_component:
            extras.append("zero_component=True")
        if self.pi_zero is not None:
            extras.append(f"pi_zero={self.pi_zero}")
        return ", ".join(extras)
