"""Storage cost of quantized layers in the sparse format of Han, Mao & Dally (2016).

:func:`softshare.compress.compression_report` and the torch side's
``QuantizedState.compression_report`` both give this module's :class:`CompressionReport`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._native_recipe import sparse_counts
from ._codes import _entropy_bits, huffman_code_lengths

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray


class _FileBytes(Protocol):
    """Where a compressed model file's bytes go, as :meth:`CompressionReport.with_file` reads them.

    :class:`softshare.compress.ModelFile` is one; a protocol, so that this module
    need not import the file format's, which imports it.
    """

    @property
    def file_bytes(self) -> int: ...

    @property
    def codebook_bytes(self) -> int: ...

    @property
    def layer_bytes(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class LayerCost:
    """Storage of one layer: sizes and bits under three codings of the streams.

    Attributes
    ----------
    name, kind : str
        The layer's name and kind ("conv" or "dense").
    n_weights, n_nonzero, n_entries, n_distinct : int
        Weights, non-zero weights, stored entries (non-zeros and fillers), and
        distinct codebook indices used.
    bits_huffman, bits_entropy, bits_fixed : int, float, int
        Bits of both streams with Huffman codes, at their entropy bound, and
        with fixed-width codes.
    file_bytes : int or None
        Bytes of the layer's data in a compressed model file (see
        :meth:`CompressionReport.with_file`), or None.
    """

    name: str
    kind: str
    n_weights: int
    n_nonzero: int
    n_entries: int
    n_distinct: int
    bits_huffman: int
    bits_entropy: float
    bits_fixed: int
    file_bytes: int | None = None

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of the weights that are not zero (0 for an empty layer)."""
        return self.n_nonzero / self.n_weights if self.n_weights else 0.0

    @property
    def ratio(self) -> float:
        """float32 size / Huffman-coded size."""
        return 32.0 * self.n_weights / self.bits_huffman if self.bits_huffman else math.inf


@dataclass(frozen=True)
class CompressionReport:
    """Per-layer and total storage, the codebook counted once.

    Attributes
    ----------
    layers : list of LayerCost
        One per layer, in the input's order.
    codebook_size, codebook_bits : int
        Values in the codebook and their bits (32 each).
    file_bytes, file_codebook_bytes : int or None
        Bytes of the compressed model file and of its codebook, or None (see
        :meth:`with_file`).
    """

    layers: list[LayerCost]
    codebook_size: int
    codebook_bits: int
    file_bytes: int | None = None
    file_codebook_bytes: int | None = None

    def with_file(self, model_file: _FileBytes) -> CompressionReport:
        """This report with the real bytes of a compressed model file of the same layers.

        Raises ValueError when the file's layers are not the report's.
        """
        if list(model_file.layer_bytes) != [c.name for c in self.layers]:
            msg = (
                f"the file's layers {list(model_file.layer_bytes)[:6]} are not the report's "
                f"{[c.name for c in self.layers][:6]}"
            )
            raise ValueError(msg)
        return dataclasses.replace(
            self,
            layers=[
                dataclasses.replace(c, file_bytes=model_file.layer_bytes[c.name])
                for c in self.layers
            ],
            file_bytes=model_file.file_bytes,
            file_codebook_bytes=model_file.codebook_bytes,
        )

    @property
    def n_weights(self) -> int:
        """Weights in all layers."""
        return sum(layer.n_weights for layer in self.layers)

    @property
    def bits_huffman(self) -> int:
        """Total bits with Huffman codes, codebook included."""
        return self.codebook_bits + sum(layer.bits_huffman for layer in self.layers)

    @property
    def bits_entropy(self) -> float:
        """Total bits at the entropy bound, codebook included."""
        return self.codebook_bits + sum(layer.bits_entropy for layer in self.layers)

    @property
    def bits_fixed(self) -> int:
        """Total bits with fixed-width codes, codebook included."""
        return self.codebook_bits + sum(layer.bits_fixed for layer in self.layers)

    @property
    def ratio(self) -> float:
        """float32 size of all weights / total Huffman-coded size."""
        return 32.0 * self.n_weights / self.bits_huffman

    @property
    def ratio_entropy(self) -> float:
        """float32 size of all weights / their entropy bound."""
        return 32.0 * self.n_weights / self.bits_entropy

    @property
    def ratio_file(self) -> float:
        """float32 size of all weights / the compressed model file's size (nan without one)."""
        return 4.0 * self.n_weights / self.file_bytes if self.file_bytes else math.nan

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of all weights that are not zero."""
        return sum(layer.n_nonzero for layer in self.layers) / max(self.n_weights, 1)

    def to_markdown(self) -> str:
        """The table: layer, weights, non-zero %, distinct values, bits, file bytes, ratios."""
        file = self.file_bytes is not None
        rows = [
            "| layer | kind | weights | non-zero % | distinct values | bits (Huffman) | "
            + ("bits (entropy) | file bytes | ratio (file) |" if file else "ratio |"),
            "|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if file else ""),
        ]
        for c in self.layers:
            ratio = f"{4 * c.n_weights / c.file_bytes:.1f}x" if c.file_bytes else "-"
            rows.append(
                f"| {c.name} | {c.kind} | {c.n_weights} | {100 * c.nonzero_fraction:.2f} | "
                f"{c.n_distinct} | {c.bits_huffman} | "
                + (
                    f"{c.bits_entropy:.0f} | {c.file_bytes} | {ratio} |"
                    if file
                    else f"{c.ratio:.1f}x |"
                )
            )
        rows.append(
            f"| codebook | - | {self.codebook_size} values | - | - | {self.codebook_bits} | "
            + (f"{self.codebook_bits} | {self.file_codebook_bytes} | - |" if file else "- |")
        )
        if file:
            rest = self.file_bytes - (self.file_codebook_bytes or 0)  # type: ignore[operator]
            rest -= sum(c.file_bytes or 0 for c in self.layers)
            rows.append(f"| header | - | - | - | - | - | - | {rest} | - |")
        rows.append(
            f"| **total** | | {self.n_weights} | {100 * self.nonzero_fraction:.2f} | "
            f"{self.codebook_size} | {self.bits_huffman} | "
            + (
                f"{self.bits_entropy:.0f} | {self.file_bytes} | **{self.ratio_file:.1f}x** |"
                if file
                else f"**{self.ratio:.1f}x** |"
            )
        )
        rows.append("")
        line = (
            f"Entropy bound: {self.ratio_entropy:.1f}x; Huffman codes: {self.ratio:.1f}x; "
            f"fixed-width codes: {32 * self.n_weights / self.bits_fixed:.1f}x."
        )
        if file:
            above = 100 * (8 * self.file_bytes / self.bits_entropy - 1)  # type: ignore[operator]
            side = "above" if above > 0 else "below"
            line = (
                f"File: {self.file_bytes} bytes, {self.ratio_file:.1f}x "
                f"({abs(above):.1f} % {side} the entropy bound). " + line
            )
        rows.append(line)
        return "\n".join(rows)


def _bits(counts: NDArray[np.int64]) -> tuple[int, float]:
    """Huffman-coded bits and entropy-bound bits of a stream with these symbol counts."""
    used = {int(s): int(c) for s, c in zip(np.flatnonzero(counts), counts[counts > 0])}
    lengths = huffman_code_lengths(used)
    return sum(lengths[s] * c for s, c in used.items()), _entropy_bits(used)


def _layer_cost(
    name: str, arr: NDArray[Any], kind: str, bits: int, k: int, zero_index: int
) -> LayerCost:
    """The cost of one layer's indices with a ``bits``-wide relative index."""
    counts = sparse_counts(arr.reshape(-1), k, zero_index, bits)
    gap_bits, gap_entropy = _bits(counts.gaps)
    sym_bits, sym_entropy = _bits(counts.symbols)
    n_entries = int(counts.gaps.sum())
    return LayerCost(
        name=name,
        kind=kind,
        n_weights=int(arr.size),
        n_nonzero=counts.nonzero,
        n_entries=n_entries,
        n_distinct=int(np.count_nonzero(counts.values)),
        bits_huffman=gap_bits + sym_bits,
        bits_entropy=gap_entropy + sym_entropy,
        bits_fixed=n_entries * (bits + max(1, math.ceil(math.log2(max(k, 2))))),
    )


def compression_report(
    indices: Mapping[str, ArrayLike],
    codebook: ArrayLike,
    *,
    kinds: Mapping[str, str] | None = None,
    index_bits: Mapping[str, int] | None = None,
    zero_index: int = 0,
) -> CompressionReport:
    """Storage cost of quantized layers in the format of Han et al. (2016).

    Parameters
    ----------
    indices : mapping of layer name to array of int
        The codebook index of every weight of every layer (as from
        :func:`softshare.compress.quantize`), in storage (C) order.
    codebook : array_like
        The distinct values; stored once, 32 bits each.
    kinds : mapping of layer name to "conv" or "dense", optional
        Layers not named are "dense".
    index_bits : mapping, default {"conv": 8, "dense": 5}
        Width of the relative index for each kind (Han et al.'s choice).
    zero_index : int, default 0
        The codebook index whose value is 0 (not stored; fillers use it); the
        codebook's size: no value is left out.

    Returns
    -------
    CompressionReport
        Per layer: the sparse entries (non-zeros and fillers), each coded as a
        relative index and a codebook index. ``bits_huffman`` codes both streams
        with real Huffman codes built per layer; ``bits_entropy`` is their
        entropy bound; ``bits_fixed`` uses ``index_bits`` and ceil(log2 K) bits.

    Raises
    ------
    ValueError
        If a layer's kind has no index width.
    """
    book = np.asarray(codebook, dtype=np.float64).reshape(-1)
    widths = {"conv": 8, "dense": 5}
    if index_bits:
        widths.update(index_bits)
    for kind, width in widths.items():
        if (
            not isinstance(width, (int, np.integer))
            or isinstance(width, bool)
            or not 1 <= width <= 16
        ):
            msg = f"index_bits[{kind!r}] must be an int from 1 to 16, got {width!r}"
            raise ValueError(msg)
    k = int(book.size)
    if not isinstance(zero_index, (int, np.integer)) or not 0 <= zero_index <= k:
        msg = f"zero_index must be an int from 0 to the codebook's size {k}, got {zero_index!r}"
        raise ValueError(msg)
    kinds = dict(kinds or {})
    layers = []
    for name, idx in indices.items():
        kind = kinds.get(name, "dense")
        if kind not in widths:
            msg = f"layer {name!r}: kind must be one of {sorted(widths)}, got {kind!r}"
            raise ValueError(msg)
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu":
            msg = f"layer {name!r}: indices must be integers, got dtype {arr.dtype}"
            raise TypeError(msg)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= k):
            msg = f"layer {name!r}: an index is outside [0, {k}) (the codebook's size)"
            raise ValueError(msg)
        layers.append(_layer_cost(name, arr, kind, int(widths[kind]), k, int(zero_index)))
    return CompressionReport(
        layers=layers, codebook_size=int(book.size), codebook_bits=32 * int(book.size)
    )
