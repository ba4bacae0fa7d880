"""A quantized network as one framework-free value, made once by quantization.

:class:`QuantizedNetwork` is what the report (:meth:`~QuantizedNetwork.compression_report`),
the file (:func:`softshare.compress.write_file`, ``softshare.torch.save_compressed``)
and the torch recipe's ``QuantizedState`` all take: a codebook, every layer's
indices into it in the smallest unsigned dtype, each layer's dtype, and the
tensors kept exact beside them. :func:`quantize_network` makes one from weights
and a mixture in one assignment pass per layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._inputs import as_mixture
from .._native_recipe import assign_arrays, dequantize, offset_sums
from .._recipe_inputs import index_dtype
from ._passes import codebook_dtype, raise_if_not_finite, real_layers, remap_into
from ._storage import compression_report

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray

    from .._mixture import Mixture
    from ._storage import CompressionReport

__all__ = ["QuantizedNetwork", "quantize_network"]


@dataclass(frozen=True, eq=False)  # arrays: equal by identity only
class QuantizedNetwork:
    """A quantized network: a codebook and every layer's indices into it.

    Made by :func:`quantize_network` (or ``softshare.torch.MixturePrior.quantize_``),
    read from a file by :func:`read_network`; never changed (a new codebook is
    a new value, :meth:`with_codebook`).

    Attributes
    ----------
    codebook : ndarray, shape (K,)
        The shared values in component order: float32 when every layer is
        float32, else float64. Layer ``n`` holds ``codebook[indices[n]]``
        converted to ``dtypes[n]``.
    indices : dict of str to ndarray of uint8, uint16 or uint32
        Every layer's codebook indices in its shape, in the smallest unsigned
        dtype that holds K values (:func:`index_dtype`).
    dtypes : dict of str to numpy dtype
        Every layer's dtype, float32 or float64.
    counts : tuple of int
        Weights holding each value.
    components : tuple of int or None
        The mixture component behind each value (None when unknown, e.g. read from a file).
    mixture : Mixture or None
        The mixture the network was quantized with, when kept.
    exact : dict of str to ndarray
        Tensors stored as they are (parameters not quantized, buffers).
    """

    codebook: NDArray[np.floating]
    indices: dict[str, NDArray[np.unsignedinteger]]
    dtypes: dict[str, np.dtype[Any]]
    counts: tuple[int, ...]
    components: tuple[int, ...] | None = None
    mixture: Mixture | None = None
    exact: dict[str, NDArray[Any]] = field(default_factory=dict)

    @property
    def zero_index(self) -> int:
        """The index of the codebook's value 0 (its weights are not stored), or K when none is 0."""
        zeros = np.flatnonzero(self.codebook == 0)
        return int(zeros[0]) if zeros.size else int(self.codebook.size)

    @property
    def n_weights(self) -> int:
        """Number of quantized weights."""
        return sum(int(i.size) for i in self.indices.values())

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of the quantized weights that are not exactly 0."""
        z = self.zero_index
        zeros = self.counts[z] if z < len(self.counts) else 0
        return (self.n_weights - zeros) / max(self.n_weights, 1)

    def layer(self, name: str, out: NDArray[np.floating] | None = None) -> NDArray[np.floating]:
        """One layer's quantized weights in its dtype and shape (written into ``out`` if given)."""
        idx = self.indices[name]
        dtype = self.dtypes[name]
        if out is None:
            out = np.empty(idx.shape, dtype=dtype)
        dequantize(idx.reshape(-1), self.codebook.astype(dtype), out.reshape(-1))
        return out

    def layers(self) -> dict[str, NDArray[np.floating]]:
        """Every layer's quantized weights, then the exact tensors."""
        out = {n: self.layer(n) for n in self.indices}
        out.update(self.exact)
        return out

    def with_codebook(self, codebook: ArrayLike) -> QuantizedNetwork:
        """The same assignment with new values (same size; finite in every layer's dtype)."""
        book = np.asarray(codebook, dtype=np.float64)
        if book.shape != self.codebook.shape:
            msg = f"the new codebook has shape {book.shape}, the network's {self.codebook.shape}"
            raise ValueError(msg)
        checked = _checked_codebook(book, self.codebook.dtype, self.dtypes)
        return dataclasses.replace(self, codebook=checked)

    def refitted(self, layers: Mapping[str, NDArray[np.floating]]) -> QuantizedNetwork:
        """Each value moved to the mean of the weights assigned to it (a value 0 stays 0).

        ``layers`` are the network's layers after they moved (an optimizer
        step): same names and shapes, each in its dtype. Sums in float64 of the
        offsets from the values, computed in the layers' dtype.
        """
        shift = np.zeros(self.codebook.size)
        for name, idx in self.indices.items():
            w = np.asarray(layers[name])
            if w.shape != idx.shape:
                msg = f"layer {name!r} has shape {w.shape}, the network's {idx.shape}"
                raise ValueError(msg)
            book = self.codebook.astype(self.dtypes[name])
            shift += offset_sums(w.reshape(-1), idx.reshape(-1), book)[0]
        if not np.all(np.isfinite(shift)):
            msg = "a weight is not finite: the optimizer step diverged"
            raise ValueError(msg)
        counts = np.maximum(np.array(self.counts, dtype=np.float64), 1.0)
        book = self.codebook.astype(np.float64) + shift / counts
        book[self.codebook == 0] = 0.0
        return self.with_codebook(book)

    def compression_report(
        self,
        *,
        kinds: Mapping[str, str] | None = None,
        index_bits: Mapping[str, int] | None = None,
    ) -> CompressionReport:
        """The storage cost of these indices in Han et al.'s sparse format.

        As :func:`softshare.compress.compression_report`, the codebook's 0 not
        stored. ``kinds`` defaults to "conv" for layers of 3 or more dimensions,
        "dense" for the others; ``index_bits`` to {"conv": 8, "dense": 5}.
        """
        every = {n: "conv" if i.ndim > 2 else "dense" for n, i in self.indices.items()}
        every.update(kinds or {})
        return compression_report(
            self.indices,
            self.codebook,
            kinds=every,
            index_bits=index_bits,
            zero_index=self.zero_index,
        )

    def export(self) -> dict[str, NDArray[Any]]:
        """As :func:`softshare.compress.export_indices` lays an export out: a float32 codebook first.

        Raises ValueError if a layer is called ``"codebook"``.
        """
        if "codebook" in self.indices:
            msg = "a layer called 'codebook' cannot be exported beside the codebook"
            raise ValueError(msg)
        return {"codebook": self.codebook.astype(np.float32), **self.indices}


def _checked_codebook(
    values: NDArray[np.float64], dtype: np.dtype[Any], dtypes: Mapping[str, np.dtype[Any]]
) -> NDArray[np.floating]:
    """The values as a read-only codebook of ``dtype``; a ValueError if one is not finite in a layer's dtype.

    One rule for every dtype mix: a value that a float32 layer would hold as
    inf is refused, whatever the codebook's dtype.
    """
    narrowest = np.float32 if np.dtype(np.float32) in dtypes.values() else np.float64
    with np.errstate(over="ignore", invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(values.astype(narrowest)))
    if bad.size:
        msg = (
            f"codebook value {values[bad[0]]} (index {bad[0]}) is not finite in "
            f"{np.dtype(narrowest)}, the dtype of a layer that would hold it"
        )
        raise ValueError(msg)
    book = values.astype(dtype)
    book.flags.writeable = False
    return book


def quantize_network(
    layers: Mapping[str, ArrayLike],
    mixture: Mixture,
    *,
    use_pi: bool = True,
    keep_mixture: bool = True,
    exact: Mapping[str, ArrayLike] | None = None,
) -> QuantizedNetwork:
    """Quantize layers: every weight to the mean of its most responsible component.

    One assignment pass per layer; the codebook is the means in use.

    Parameters
    ----------
    layers : mapping of str to array_like
        The weights, any shapes; float32 layers stay float32, any other real
        dtype is held as float64.
    mixture : Mixture
        The mixture.
    use_pi : bool, default True
        Weigh components by their mixing proportions (MAP); False: likelihood alone.
    keep_mixture : bool, default True
        Keep ``mixture`` in the result (a file then stores it, 24 bytes a component).
    exact : mapping of str to array_like, optional
        Tensors kept as they are beside the quantized layers (not quantized).

    Returns
    -------
    QuantizedNetwork

    Raises
    ------
    TypeError
        If a layer is not real-valued.
    ValueError
        If a weight is not finite, a name is both a layer and exact, or a
        mean in use is not finite in a float32 layer's dtype.
    """
    mix = as_mixture(mixture)
    flag: object = use_pi  # callers without type checking pass anything
    if not isinstance(flag, bool):
        msg = f"use_pi must be True or False, got {use_pi!r}"
        raise TypeError(msg)
    arrays = real_layers(layers, check_finite=False)  # the assignment pass checks
    kept = {n: np.array(a) for n, a in (exact or {}).items()}
    if both := sorted(set(kept) & set(arrays)):
        msg = f"{both[:5]} are both quantized layers and exact tensors"
        raise ValueError(msg)
    m = mix.n_components
    wide = index_dtype(m)
    assigned: dict[str, NDArray[Any]] = {}
    counts = np.zeros(m, dtype=np.int64)
    for name, arr in arrays.items():
        out = np.empty(arr.shape, dtype=wide)
        got = assign_arrays([arr.reshape(-1)], mix, [out.reshape(-1)], use_pi=use_pi)
        if got is None:
            raise_if_not_finite(name, arr)
        counts += got if got is not None else 0
        assigned[name] = out
    used = np.flatnonzero(counts)
    if not used.size:  # no weights at all: one value, so that the codebook is never empty
        used = np.zeros(1, dtype=np.intp)
    narrow = index_dtype(used.size)
    indices: dict[str, NDArray[np.unsignedinteger]] = {}
    if used.size == m and narrow == wide:  # every component in use: the indices are final
        indices = assigned
    else:
        table = np.zeros(m, dtype=narrow)
        table[used] = np.arange(used.size)
        for name, comp in assigned.items():
            idx = comp if narrow == wide else np.empty(comp.shape, dtype=narrow)
            remap_into(comp.reshape(-1), table, idx.reshape(-1))
            indices[name] = idx
    dtypes = {n: a.dtype for n, a in arrays.items()}
    return QuantizedNetwork(
        codebook=_checked_codebook(mix.mu[used], codebook_dtype(dtypes), dtypes),
        indices=indices,
        dtypes=dtypes,
        counts=tuple(int(c) for c in counts[used]),
        components=tuple(int(j) for j in used),
        mixture=mix if keep_mixture else None,
        exact=kept,
    )
