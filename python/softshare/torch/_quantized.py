"""A quantized module's state (every parameter's index into a codebook), made and written back.

:class:`QuantizedState`; :func:`quantized_state` assigns tensors to a mixture's
components as :func:`softshare.torch.save_compressed` does, :func:`write_state`
writes a state (its codebook refitted to the weights' means, when asked) into them.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .._assign import assign_components, quantize_layers
from .._mixture import Mixture
from .._storage import CompressionReport, compression_report

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import NDArray

__all__ = [
    "QuantizedState",
    "check_flag",
    "narrowed_log_vars",
    "numpy_weights",
    "quantized_state",
    "write_state",
]


@dataclass(frozen=True, eq=False)  # tensors: equal by identity only
class QuantizedState:
    """What quantization made of a module: every weight's index into a codebook.

    :meth:`MixturePrior.snapshot` and :meth:`MixturePrior.quantize_` return one;
    :meth:`MixturePrior.requantize_` returns a new one (a state is never
    changed, so keeping one keeps it: e.g. the best epoch of fine-tuning).

    Attributes
    ----------
    codebook : Tensor, shape (K,)
        The shared values: the means of the prior's components that some weight
        is assigned to, in component order; float32 when every parameter is
        float32, else float64; on the CPU.
    indices : dict of str to Tensor of int64
        Every quantized parameter's codebook indices, in its shape and on its
        device; named as :meth:`MixturePrior.named_penalized_parameters` names them.
    components : tuple of int
        The prior's component behind each codebook value.
    counts : tuple of int
        The number of weights that hold each codebook value.
    zero_index : int
        The codebook index of the zero component (its value exactly 0), or K
        when the prior has no zero component or no weight is assigned to it.
    use_pi : bool
        Whether the assignment was MAP (True) or by likelihood alone.
    """

    codebook: Tensor
    indices: dict[str, Tensor]
    components: tuple[int, ...]
    counts: tuple[int, ...]
    zero_index: int
    use_pi: bool

    @property
    def n_weights(self) -> int:
        """Number of quantized weights."""
        return sum(int(i.numel()) for i in self.indices.values())

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of the quantized weights that are not exactly 0."""
        nonzero = sum(int((i != self.zero_index).sum()) for i in self.indices.values())
        return nonzero / max(self.n_weights, 1)

    def weights(self) -> dict[str, Tensor]:
        """Every parameter's quantized values (the codebook's dtype, the indices' device)."""
        return {n: self.codebook.to(i.device)[i] for n, i in self.indices.items()}

    def export(self) -> dict[str, Tensor]:
        """The state as :func:`softshare.compress.export_indices` lays an export out.

        Returns
        -------
        dict of str to Tensor
            ``"codebook"`` (float32) and every parameter's indices on the CPU
            (uint8 for at most 256 values, else int32); ``torch.save`` keeps it,
            and :func:`softshare.compress.load_quantized` rebuilds the weights.

        Raises
        ------
        ValueError
            If a parameter is called ``"codebook"``.
        """
        if "codebook" in self.indices:
            msg = "a parameter called 'codebook' cannot be exported beside the codebook"
            raise ValueError(msg)
        dtype = torch.uint8 if self.codebook.numel() <= 256 else torch.int32
        out = {"codebook": self.codebook.float()}
        out.update((n, i.to("cpu", dtype)) for n, i in self.indices.items())
        return out

    def compression_report(
        self,
        *,
        kinds: Mapping[str, str] | None = None,
        index_bits: Mapping[str, int] | None = None,
    ) -> CompressionReport:
        """The storage cost of these indices in Han et al.'s sparse format.

        As :func:`softshare.compress.compression_report` (the same
        ``CompressionReport``: ``nonzero_fraction``, ``bits_huffman``,
        ``ratio``, ``to_markdown()``, ``with_file(save_compressed(...))``), the
        zero component's weights not stored.

        Parameters
        ----------
        kinds : mapping of name to "conv" or "dense", optional
            By default a parameter of 3 or more dimensions is "conv", any
            other "dense".
        index_bits : mapping, default {"conv": 8, "dense": 5}
            Width of the relative index for each kind.

        Returns
        -------
        softshare.compress.CompressionReport
            Per parameter and in total.

        Raises
        ------
        ValueError
            If a kind has no index width.
        """
        every = {n: "conv" if i.dim() > 2 else "dense" for n, i in self.indices.items()}
        every.update(kinds or {})
        return compression_report(
            {n: i.cpu().numpy() for n, i in self.indices.items()},
            self.codebook.numpy(),
            kinds=every,
            index_bits=index_bits,
            zero_index=self.zero_index,
        )


def check_flag(name: str, value: object) -> None:
    """A TypeError unless ``value`` is a bool."""
    if not isinstance(value, bool):
        msg = f"{name} must be True or False, got {value!r}"
        raise TypeError(msg)


def numpy_weights(named: Mapping[str, Tensor]) -> dict[str, NDArray[np.floating]]:
    """NumPy views of detached CPU copies: float32 and float64 kept, other real floats as float64.

    Raises TypeError, naming the tensor, for anything but a real floating-point tensor.
    """
    out: dict[str, NDArray[np.floating]] = {}
    for name, p in named.items():
        if not isinstance(p, Tensor) or p.is_complex() or not p.is_floating_point():
            what = f"dtype {p.dtype}" if isinstance(p, Tensor) else f"a {type(p).__name__}"
            msg = f"parameter {name!r} is {what}: only real floating-point tensors are quantized"
            raise TypeError(msg)
        t = p.detach().cpu()
        out[name] = (t if t.dtype in (torch.float32, torch.float64) else t.double()).numpy()
    return out


def quantized_state(
    chosen: Mapping[str, Tensor], mixture: Mixture, *, use_pi: bool, zero_component: bool
) -> QuantizedState:
    """The tensors' assignment to the mixture's components, as ``save_compressed`` makes it."""
    layers = numpy_weights(chosen)
    book, indices, _ = quantize_layers(layers, mixture, use_pi=use_pi)
    if not any(i.size for i in indices.values()):
        msg = "the parameters hold no weights: nothing to quantize"
        raise ValueError(msg)
    # the component behind each codebook value: that of any one weight holding it
    sample = np.empty(book.size)
    flat = np.concatenate([i.reshape(-1) for i in indices.values()])
    for name, idx in indices.items():
        values, first = np.unique(idx.reshape(-1), return_index=True)
        sample[values] = layers[name].reshape(-1)[first]
    components = tuple(int(c) for c in assign_components(sample, mixture, use_pi=use_pi))
    return QuantizedState(
        codebook=torch.from_numpy(np.array(book)),
        indices={
            n: torch.from_numpy(i.astype(np.int64)).to(chosen[n].device) for n, i in indices.items()
        },
        components=components,
        counts=tuple(int(c) for c in np.bincount(flat, minlength=book.size)),
        zero_index=0 if zero_component and components[0] == 0 else book.size,
        use_pi=use_pi,
    )


def write_state(
    chosen: Mapping[str, Tensor], state: QuantizedState, *, refit: bool
) -> QuantizedState:
    """Write ``state`` (its codebook refitted first, when asked) into the tensors; return it.

    TypeError for a ``state`` or ``refit`` of the wrong type, ValueError for
    tensors that are not the state's.
    """
    given: object = state  # callers without type checking pass anything
    if not isinstance(given, QuantizedState):
        msg = f"state must be a QuantizedState (from quantize_), got {type(given).__name__}"
        raise TypeError(msg)
    check_flag("refit", refit)
    shapes = {n: tuple(p.shape) for n, p in chosen.items()}
    have = {n: tuple(i.shape) for n, i in state.indices.items()}
    if shapes != have:
        msg = f"the parameters {str(shapes)[:300]} are not the state's {str(have)[:300]}"
        raise ValueError(msg)
    with torch.no_grad():
        if refit:
            state = dataclasses.replace(state, codebook=_refit(chosen, state))
        for name, p in chosen.items():
            p.copy_(torch.take(state.codebook.to(p.device), state.indices[name]))
    return state


def _refit(chosen: Mapping[str, Tensor], state: QuantizedState) -> Tensor:
    """Each codebook value moved to the mean of the weights assigned to it (the zero kept).

    The mean of the weights' offsets from their values, summed in float32 (in
    float64 for float64 weights): accurate to the offsets' rounding.
    """
    k = state.codebook.numel()
    shift = torch.zeros(k, dtype=torch.float64)
    for name, p in chosen.items():
        idx = state.indices[name].reshape(-1)
        acc = torch.promote_types(p.dtype, torch.float32)
        offsets = p.reshape(-1).to(acc) - torch.take(state.codebook.to(p.device, acc), idx)
        shift += torch.zeros(k, dtype=acc, device=p.device).index_add_(0, idx, offsets).cpu()
    if not bool(torch.isfinite(shift).all()):
        msg = "a weight is not finite: the optimizer step diverged"
        raise ValueError(msg)
    book = state.codebook.double() + shift / torch.tensor(state.counts, dtype=torch.float64)
    if state.zero_index < k:
        book[state.zero_index] = 0.0
    return book.to(state.codebook.dtype)


def narrowed_log_vars(state: QuantizedState, mixture: Mixture) -> dict[int, float]:
    """New log-variances for the components the mixture would not assign their own value to.

    :func:`softshare.torch.save_compressed` and :meth:`MixturePrior.snapshot`
    assign a module's weights afresh: a value ``c`` of component ``k`` that
    another component is more responsible for (a light component near a heavy
    one) would move. Narrowing ``k`` (only ever narrowing) until it wins at
    ``c`` by a factor 4 keeps every value where it is; the assignment of the
    weights at the values is all that depends on it. Warns if that fails.
    """
    values = state.codebook.double().numpy()
    own = np.array(state.components)
    mu, log_var, log_pi = mixture.mu, mixture.log_var.copy(), mixture.log_pi
    if not state.use_pi:
        log_pi = np.zeros_like(log_pi)
    for _ in range(own.size + 1):
        again = assign_components(values, Mixture(mu, log_var, mixture.logit), use_pi=state.use_pi)
        moved = np.flatnonzero(again != own)
        if not moved.size:
            return {int(k): float(v) for k, v in enumerate(log_var) if v != mixture.log_var[k]}
        for b in moved.tolist():
            k, c = own[b], values[b]
            terms = log_pi - 0.5 * log_var - (c - mu) ** 2 * (0.5 * np.exp(-log_var))
            rival = np.max(np.delete(terms, k))
            log_var[k] = max(min(log_var[k], 2.0 * (log_pi[k] - rival) - 2.0 * np.log(4.0)), -700.0)
    msg = (
        f"the prior assigns the values of components {own[moved][:5].tolist()} to components "
        f"{again[moved][:5].tolist()}: save_compressed and snapshot would not reproduce these "
        "weights (state.export() and state.compression_report() do)"
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return {}
