"""A quantized module's state: a :class:`~softshare.compress.QuantizedNetwork` over its tensors, made and written back.

:class:`QuantizedState`; :func:`make_state` assigns tensors to a mixture's
components once, :func:`write_state` writes a state's values into them (CPU
float32/float64 tensors in place through the native passes, others by copy).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..compress._network import QuantizedNetwork, quantize_network
from ._checks import layout_error

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import NDArray

    from .._mixture import Mixture
    from ..compress._storage import CompressionReport

__all__ = [
    "QuantizedState",
    "check_flag",
    "is_native",
    "make_state",
    "numpy_weights",
    "with_exact",
    "write_layer",
    "write_state",
]

_NATIVE = (torch.float32, torch.float64)


@dataclass(frozen=True, eq=False)  # arrays: equal by identity only
class QuantizedState:
    """What quantization made of a module: every penalised weight's index into a codebook.

    :meth:`MixturePrior.snapshot` and :meth:`MixturePrior.quantize_` return one;
    :meth:`MixturePrior.requantize_` returns a new one (a state is never
    changed, so keeping one keeps it: e.g. the best epoch of fine-tuning);
    :func:`softshare.torch.save_compressed` writes one as it is.

    Attributes
    ----------
    network : softshare.compress.QuantizedNetwork
        The framework-free value: the codebook, every parameter's indices
        (uint8, uint16 or uint32), dtypes, counts, components and the mixture.
    use_pi : bool
        Whether the assignment was MAP (True) or by likelihood alone.
    generation : int
        The prior's generation it was made for (``merge_`` starts a new one).
    """

    network: QuantizedNetwork
    use_pi: bool
    generation: int = 0

    @property
    def codebook(self) -> Tensor:
        """The shared values, shape (K,): float32 when every parameter is float32, else float64."""
        return torch.tensor(self.network.codebook)

    @property
    def indices(self) -> dict[str, Tensor]:
        """Every parameter's codebook indices in its shape, as int64 tensors on the CPU.

        Copies made on each access, for indexing (torch reads a uint8 index
        tensor as a mask); ``network.indices`` holds the compact arrays.
        """
        return {n: torch.from_numpy(i.astype(np.int64)) for n, i in self.network.indices.items()}

    @property
    def components(self) -> tuple[int, ...]:
        """The prior's component behind each codebook value."""
        return self.network.components or ()

    @property
    def counts(self) -> tuple[int, ...]:
        """The number of weights that hold each codebook value."""
        return self.network.counts

    @property
    def zero_index(self) -> int:
        """The codebook index of the value 0 (its weights are not stored), or K."""
        return self.network.zero_index

    @property
    def n_weights(self) -> int:
        """Number of quantized weights."""
        return self.network.n_weights

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of the quantized weights that are not exactly 0."""
        return self.network.nonzero_fraction

    def weights(self) -> dict[str, Tensor]:
        """Every parameter's quantized values, in its dtype, on the CPU."""
        return {n: torch.from_numpy(self.network.layer(n)) for n in self.network.indices}

    def export(self) -> dict[str, Tensor]:
        """The state as :func:`softshare.compress.export_indices` lays an export out.

        Returns
        -------
        dict of str to Tensor
            ``"codebook"`` (float32) and every parameter's indices on the CPU
            (uint8 up to 256 values, uint16 up to 65,536, else uint32: the
            rule of the file and of every export); ``torch.save`` keeps it,
            and :func:`softshare.compress.load_quantized` rebuilds the weights.

        Raises
        ------
        ValueError
            If a parameter is called ``"codebook"``.
        """
        return {n: torch.from_numpy(a.copy()) for n, a in self.network.export().items()}

    def compression_report(
        self,
        *,
        kinds: Mapping[str, str] | None = None,
        index_bits: Mapping[str, int] | None = None,
    ) -> CompressionReport:
        """The storage cost of these indices in Han et al.'s sparse format.

        :meth:`softshare.compress.QuantizedNetwork.compression_report`: the
        ``CompressionReport`` of :func:`softshare.compress.compression_report`
        (``nonzero_fraction``, ``bits_huffman``, ``ratio``, ``to_markdown()``,
        ``with_file(save_compressed(...))``), the value 0 not stored.

        Parameters
        ----------
        kinds : mapping of name to "conv" or "dense", optional
            By default a parameter of 3 or more dimensions is "conv", any
            other "dense".
        index_bits : mapping, default {"conv": 8, "dense": 5}
            Width of the relative index for each kind (an int from 1 to 16).

        Returns
        -------
        softshare.compress.CompressionReport
            Per parameter and in total.

        Raises
        ------
        ValueError
            If a kind has no index width, or a width is out of range.
        """
        return self.network.compression_report(kinds=kinds, index_bits=index_bits)


def check_flag(name: str, value: object) -> None:
    """A TypeError unless ``value`` is a bool."""
    if not isinstance(value, bool):
        msg = f"{name} must be True or False, got {value!r}"
        raise TypeError(msg)


def is_native(p: Tensor) -> bool:
    """Whether the native passes may read and write ``p``'s memory as a NumPy array."""
    return (
        p.device.type == "cpu"
        and p.dtype in _NATIVE
        and p.is_contiguous()
        and p.layout == torch.strided
    )


def numpy_weights(named: Mapping[str, Tensor]) -> dict[str, NDArray[np.floating]]:
    """NumPy arrays of the tensors' values: views of CPU float32/float64 tensors, else copies.

    Copies are float64 for other real floating dtypes. Raises TypeError,
    naming the tensor, for anything but a real floating-point tensor.
    """
    out: dict[str, NDArray[np.floating]] = {}
    for name, p in named.items():
        if not isinstance(p, Tensor) or p.is_complex() or not p.is_floating_point():
            what = f"dtype {p.dtype}" if isinstance(p, Tensor) else f"a {type(p).__name__}"
            msg = f"parameter {name!r} is {what}: only real floating-point tensors are quantized"
            raise TypeError(msg)
        if p.layout is not torch.strided or p.is_nested:
            raise layout_error(f"parameter {name!r}", p)
        if p.device.type == "meta":
            msg = f"parameter {name!r} is on the meta device: it holds no values"
            raise ValueError(msg)
        t = p.detach()
        if not is_native(t):
            t = t.cpu().contiguous()
            t = t if t.dtype in _NATIVE else t.double()
        out[name] = t.numpy()
    return out


def make_state(
    chosen: Mapping[str, Tensor], mixture: Mixture, *, use_pi: bool, generation: int
) -> QuantizedState:
    """The tensors' assignment to the mixture's components: one pass per tensor, nothing written."""
    network = quantize_network(numpy_weights(chosen), mixture, use_pi=use_pi)
    if not network.n_weights:
        msg = "the parameters hold no weights: nothing to quantize"
        raise ValueError(msg)
    return QuantizedState(network=network, use_pi=use_pi, generation=generation)


def _check_fits(chosen: Mapping[str, Tensor], state: object) -> QuantizedState:
    """``state`` if it is a QuantizedState of these tensors' names and shapes; else an error."""
    if not isinstance(state, QuantizedState):
        msg = f"state must be a QuantizedState (from quantize_), got {type(state).__name__}"
        raise TypeError(msg)
    shapes = {n: tuple(p.shape) for n, p in chosen.items()}
    have = {n: tuple(i.shape) for n, i in state.network.indices.items()}
    if shapes != have:
        msg = f"the parameters {str(shapes)[:300]} are not the state's {str(have)[:300]}"
        raise ValueError(msg)
    return state


def write_state(chosen: Mapping[str, Tensor], state: object, *, refit: bool) -> QuantizedState:
    """Write ``state`` (its codebook refitted to the tensors first, when asked) into them; return it.

    TypeError for a ``state`` or ``refit`` of the wrong type, ValueError for
    tensors that are not the state's.
    """
    state = _check_fits(chosen, state)
    check_flag("refit", refit)
    if refit:
        network = state.network.refitted(numpy_weights(chosen))
        state = dataclasses.replace(state, network=network)
    with torch.no_grad():
        for name, p in chosen.items():
            write_layer(p, state.network, name)
    return state


def write_layer(t: Tensor, network: QuantizedNetwork, name: str) -> None:
    """Write one layer of ``network`` into ``t``: in place for a CPU tensor of its dtype, else by copy.

    The in-place write goes through ``t``'s memory, so autograd is told (its version counter).
    """
    if is_native(t) and t.detach().numpy().dtype == network.dtypes[name]:
        network.layer(name, out=t.detach().numpy())
        torch.autograd.graph.increment_version(t)
    else:
        t.copy_(torch.from_numpy(network.layer(name)))


def with_exact(
    state: QuantizedState, exact: Mapping[str, Any], mixture: Mixture | None
) -> QuantizedNetwork:
    """The state's network with these tensors kept exact beside it, and ``mixture`` (or its own)."""
    network = state.network
    return dataclasses.replace(
        network, exact=dict(exact), mixture=mixture if mixture is not None else network.mixture
    )
