"""The penalty overlapped with the training step: started on a background thread, joined later.

The penalty at step t depends only on the weights and the mixture, which do
not change between the start of the step and ``optimizer.step()``. So the
fused pass can run on a background thread (the kernel releases the GIL)
while the network's forward and backward pass run on the caller's thread,
and ``join()`` adds its gradients to ``.grad`` afterwards, as
``MixturePrior.add_grad_`` does (``_hand_over.py``: no autograd for the
weights; tensors that autograd must see, a tensor given twice, go through a
backward pass of their own). The gradients are bit-identical to those of
the plain form ``(loss + penalty).backward()``: each ``.grad`` receives the
same two terms, and a sum of two floating-point numbers does not depend on
their order.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

import torch

from .._inputs import as_n_threads, cpu_count
from ._checks import checked_inputs
from ._compute import Computed, NativeCall, dense, native_applies
from ._distributed import is_sharded
from ._function import PenaltyFunction
from ._hand_over import add_mixture_grads, hand_over, plain_grads

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import Tensor, nn

    from ._checks import TensorOrTensors
    from ._prior_like import PriorLike

__all__ = [
    "PendingPenalty",
    "overlap_threads",
    "refuse_while_pending",
    "start_penalty",
    "start_prior",
]


def overlap_threads(n_threads: int | None) -> int:
    """Threads for an overlapped pass: by default the cores torch's own threads leave free.

    0 when torch's threads take every core: the pass then runs at once, on the
    caller's thread (a background pass beside a full step only slows both;
    measured in benchmarks/RESULTS.md).
    """
    if n_threads is None:
        return max(0, cpu_count() - torch.get_num_threads())
    return as_n_threads(n_threads, 1)


class _Pass:
    """The background pass and everything it reads or writes, owned or pinned.

    The weights it reads are detached aliases of theirs (a ``p.data = ...`` or
    ``set_`` cannot free their memory) whose storage is marked non-resizable,
    as ``Tensor.numpy()`` marks it (a ``resize_`` that would move it raises
    torch's error instead); the mixture is its own copy; the gradients are
    buffers of its own. The thread holds this object, never the
    :class:`PendingPenalty`: a penalty dropped unjoined (an exception between
    ``start()`` and ``join()``) is freed at once, and its pass finishes on
    its own, writing only into its own buffers.
    """

    def __init__(self, call: NativeCall, pinned: list[Tensor]) -> None:
        self.call = call
        self.pinned = pinned
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.call.run()
        except BaseException as err:  # noqa: BLE001 (re-raised by join, on the caller's thread)
            self.error = err


def _pinned(weights: Sequence[Tensor]) -> list[Tensor]:
    """The weights as the kernel reads them: dense aliases, their storage kept and non-resizable."""
    pinned = []
    for w in weights:
        alias = dense(w).detach()
        if alias.untyped_storage().resizable():
            alias.numpy()  # marks the storage non-resizable (no other public way)
        pinned.append(alias)
    return pinned


def _layout(t: Tensor) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Where and how a tensor's values lie: a replaced or resized storage changes it."""
    return t.data_ptr(), tuple(t.shape), t.stride()


#: Every prior's penalties started and not yet joined or cancelled (weakly: a dropped one leaves).
_STARTED: weakref.WeakKeyDictionary[object, weakref.WeakSet[PendingPenalty]] = (
    weakref.WeakKeyDictionary()
)


def refuse_while_pending(prior: object, step: str) -> None:
    """A RuntimeError if a penalty ``prior.start()`` started is neither joined nor cancelled."""
    if any(not p.finished for p in _STARTED.get(prior, ())):
        msg = (
            f"{step} while a penalty started with prior.start() is pending: join() it (or "
            "cancel() it) first; the pass reads the components and weights that it changes"
        )
        raise RuntimeError(msg)


class PendingPenalty:
    """A penalty being computed on a background thread; :meth:`join` hands its gradients over.

    Made by :func:`softshare.torch.start_penalty` or
    :meth:`softshare.torch.MixturePrior.start`; not meant to be built directly.
    Joined or cancelled on every path: :meth:`cancel` (or leaving a ``with``
    block unjoined) drops the result, a penalty dropped unjoined finishes its
    pass on its own, and interpreter exit waits for a pass still running.

    Attributes
    ----------
    finished : bool
        Whether it was joined or cancelled (the prior's recipe steps wait for it).
    """

    def __init__(
        self,
        weights: Sequence[Tensor],
        params: tuple[Tensor, Tensor, Tensor],
        lam: float,
        n_threads: int,
        extra: Callable[[], Tensor] | None = None,
        watch: Sequence[Tensor] = (),
    ) -> None:
        if any(is_sharded(t) for t in (*weights, *params)):
            msg = "an overlapped penalty needs plain tensors: these are sharded (DTensors)"
            raise ValueError(msg)
        if not native_applies(weights, params):
            msg = "an overlapped penalty needs CPU tensors and float32/float64 weights"
            raise ValueError(msg)
        self._weights = list(weights)
        self._params = params
        self._lam = lam
        self._extra = extra
        # what must not change before the join: the weights, the mixture (and
        # the parameters it is derived from), in place or by a new storage
        self._watched = list({id(t): t for t in (*self._weights, *params, *watch)}.values())
        self._versions = [t._version for t in self._watched]
        self._layouts = [_layout(t) for t in self._watched]
        self.finished = False  # joined or cancelled
        self._cancelled = False
        # Everything but the kernel happens here, on the caller's thread: the
        # background thread then needs the GIL only to start the kernel (which
        # releases it), not for Python work that would wait on the step's
        # own Python code for the GIL. Buffers are ordinary tensors whatever
        # the grad mode (an inference tensor as .grad breaks the next step).
        with torch.inference_mode(False):
            pinned = _pinned(self._weights)
            grads = [torch.empty(w.shape, dtype=w.dtype) for w in pinned]
            mu, log_var, logit = (p.detach().clone() for p in params)
            segments = [
                (d.data_ptr(), g.data_ptr(), d.numel(), d.dtype == torch.float64)
                for d, g in zip(pinned, grads)
            ]
            call = NativeCall(
                pinned,
                mu,
                log_var,
                logit,
                lam,
                n_threads or None,
                grads=grads,
                prepared=(pinned, segments),
            )
        self._pass: _Pass | None = _Pass(call, pinned)
        self._thread: threading.Thread | None = None
        if n_threads == 0:  # no free core: now, on torch's threads
            self._pass.run()
            return
        # Not a daemon: interpreter exit waits for the pass (a daemon thread
        # stopped inside the kernel at exit aborts the process).
        self._thread = threading.Thread(target=self._pass.run, name="softshare-penalty")
        self._thread.start()

    def done(self) -> bool:
        """Whether the background pass has finished (``join`` will not wait)."""
        return self._thread is None or not self._thread.is_alive()

    def __enter__(self) -> PendingPenalty:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *_exc: object) -> None:
        """Leaving a ``with`` block: cancel the penalty unless it was joined."""
        self.cancel()

    def cancel(self) -> None:
        """Wait for the pass and drop its result: no ``.grad`` changes. A no-op once finished."""
        if not self.finished:
            self._cancelled = True
        self._release()

    def _release(self) -> _Pass | None:
        """Wait for the pass; mark this penalty finished and let go of the pass (returned)."""
        if self._thread is not None:
            self._thread.join()
        work, self._pass = self._pass, None
        self.finished = True
        return work

    def join(self) -> Tensor:
        """Wait for the pass, then accumulate its gradients into ``.grad``; return the value.

        Call it after the network's ``loss.backward()`` and before
        ``optimizer.step()``. Every tensor that requires grad gets exactly
        the gradient the plain form ``(loss + penalty).backward()`` would have
        given it, under any grad mode (``torch.no_grad()`` and
        ``torch.inference_mode()`` included: handing gradients over is what
        it is for).

        Returns
        -------
        Tensor
            The penalty's value (0-d, detached), for logging.

        Raises
        ------
        ValueError
            What the penalty itself raises (non-finite weights, overflow).
        RuntimeError
            If called twice or after :meth:`cancel`, or if a weight or mixture
            parameter was changed in place (an optimizer step) or given a new
            storage (``p.data = ...``, ``set_``, ``resize_``, ``merge_``)
            before the join.
        """
        if self.finished:
            what = "cancelled" if self._cancelled else "joined already"
            msg = f"this penalty was {what}: start a new one for each step"
            raise RuntimeError(msg)
        work = self._release()  # whatever happens next, finished and let go of
        assert work is not None
        if work.error is not None:
            raise work.error
        if [_layout(t) for t in self._watched] != self._layouts:
            msg = (
                "a weight or mixture parameter was given a new storage or shape (p.data = ..., "
                "set_, resize_, merge_) while the penalty was computed on it: join() first"
            )
            raise RuntimeError(msg)
        if [t._version for t in self._watched] != self._versions:
            msg = (
                "a weight or mixture parameter changed in place while the penalty was computed "
                "on it: join() before optimizer.step()"
            )
            raise RuntimeError(msg)
        with torch.inference_mode(False), torch.enable_grad():
            return self._hand_over(work.call.finish())

    def _hand_over(self, computed: Computed) -> Tensor:
        """The pass's gradients into ``.grad``, as the autograd form gives them; the value."""
        value, grads, *mixture_grads = computed
        if plain_grads(self._weights):  # straight into .grad
            hand_over(self._weights, grads)
            return add_mixture_grads(value, self._params, mixture_grads, self._extra)
        apply: Any = PenaltyFunction.apply  # untyped in torch's stubs
        total: Tensor = apply(self._lam, computed, *self._params, *self._weights)
        if self._extra is not None:
            total = total + self._extra()
        if total.requires_grad:
            torch.autograd.backward(total)
        return total.detach()


def start_penalty(
    weights: Tensor | Iterable[Tensor],
    mu: Tensor,
    log_var: Tensor,
    logit: Tensor,
    lam: float = 1.0,
    *,
    n_threads: int | None = None,
) -> PendingPenalty:
    """Start ``lam * Omega`` on a background thread; ``join()`` it before ``optimizer.step()``.

    The overlapped form of :func:`softshare.torch.penalty`: instead of adding
    the penalty to the loss, start it when the step starts, run the
    network's forward and backward pass, then call ``join()``, which
    accumulates the penalty's gradients into ``.grad`` (bit-identical to
    the plain form) and returns its value. Where the step leaves cores idle
    (``torch.set_num_threads`` below the core count, small layers, Python
    overhead) the pass costs the step almost nothing.

    Parameters
    ----------
    weights, mu, log_var, logit, lam
        As for :func:`softshare.torch.penalty`; CPU tensors, float32/float64
        weights, not sharded.
    n_threads : int, optional
        Threads of the background pass: by default the cores left after
        torch's own threads (``torch.get_num_threads()``); when none is left,
        the pass runs at once on torch's threads (no overlap: it would only
        slow the step). -1 all cores; a positive int forces a background
        pass on that many.

    Returns
    -------
    PendingPenalty
        Its ``join()`` returns the value (detached) and hands the gradients
        to autograd; ``done()`` says whether the pass has finished;
        ``cancel()`` (or a ``with`` block left unjoined) drops the result.
        The pass keeps the weights' memory alive and their storage
        non-resizable; ``join()`` refuses tensors changed in place or given
        a new storage since the start.

    Raises
    ------
    ValueError
        For the inputs :func:`softshare.torch.penalty` refuses, tensors that
        are not on the CPU, non-float32/float64 weights, or DTensors.
    TypeError
        If a weight or mixture parameter is not a real floating-point tensor.

    Examples
    --------
    >>> pending = sst.start_penalty(model.parameters(), mu, log_var, logit, lam)  # doctest: +SKIP
    >>> criterion(model(x), y).backward()  # doctest: +SKIP
    >>> pending.join()  # doctest: +SKIP
    >>> optimizer.step()  # doctest: +SKIP
    """
    ws, lam_f = checked_inputs(weights, mu, log_var, logit, lam, "native")
    return PendingPenalty(ws, (mu, log_var, logit), lam_f, overlap_threads(n_threads))


def start_prior(
    prior: PriorLike,
    model_or_params: nn.Module | TensorOrTensors,
    lam: float,
    hyper_lam: float | None,
    n_threads: int | None,
) -> PendingPenalty:
    """:meth:`MixturePrior.start` (see there): the prior's penalty, hyper-prior included."""
    if prior.split_work:
        msg = "start() does not support split_work: use forward()"
        raise ValueError(msg)
    params = prior.effective()
    ws, lam_f = checked_inputs(prior.penalized_parameters(model_or_params), *params, lam, "native")
    extra = None
    if prior.hyperprior is not None:
        weight = lam_f if hyper_lam is None else hyper_lam

        def extra() -> Tensor:
            return weight * prior.hyperprior_penalty()

    pending = PendingPenalty(
        ws, params, lam_f, overlap_threads(n_threads), extra, watch=list(prior.parameters())
    )
    started = _STARTED.get(prior)
    if started is None:
        started = _STARTED[prior] = weakref.WeakSet()
    started.add(pending)
    return pending
