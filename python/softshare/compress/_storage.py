"""Storage cost of quantized layers in the sparse format of Han, Mao & Dally (2016)."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    from numpy.typing import ArrayLike, NDArray


def huffman_code_lengths(counts: Mapping[Any, int]) -> dict[Any, int]:
    """Code length of every symbol in an optimal (Huffman) prefix code.

    Parameters
    ----------
    counts : mapping of symbol to int
        How often each symbol occurs.

    Returns
    -------
    dict of symbol to int
        The code length in bits of every symbol with a positive count (symbols
        with count 0 are left out; a single symbol gets length 1). For >= 2
        symbols the lengths satisfy Kraft's equality ``sum 2^-l = 1``.
    """
    items = [(c, i, s) for i, (s, c) in enumerate(counts.items()) if c > 0]
    if not items:
        return {}
    if len(items) == 1:
        return {items[0][2]: 1}
    depth = {s: 0 for _, _, s in items}
    heap: list[tuple[int, int, list[Any]]] = [(c, i, [s]) for c, i, s in items]
    heapq.heapify(heap)
    tie = len(items)
    while len(heap) > 1:
        c1, _, s1 = heapq.heappop(heap)
        c2, _, s2 = heapq.heappop(heap)
        for s in (*s1, *s2):
            depth[s] += 1
        heapq.heappush(heap, (c1 + c2, tie, s1 + s2))
        tie += 1
    return depth


def _entropy_bits(counts: Mapping[Any, int]) -> float:
    """Total bits of the symbols at their empirical entropy (the Huffman lower bound)."""
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c * math.log2(c / total) for c in counts.values() if c > 0)


def sparse_entries(
    values: NDArray[np.intp], zero_index: int, index_bits: int
) -> tuple[list[int], list[int]]:
    """Han et al.'s relative-index sparse stream of one layer.

    Each stored entry has a gap ``d`` (1 .. 2^index_bits) to the previous
    stored entry; a longer gap is bridged with filler zeros (entries with
    ``zero_index`` at the largest gap).

    Parameters
    ----------
    values : array of int
        Codebook indices in storage order.
    zero_index : int
        The index whose entries are not stored.
    index_bits : int
        Width of the relative index.

    Returns
    -------
    (gaps, symbols)
        ``gaps[k] - 1`` is what the index stream stores; ``symbols[k]`` the
        codebook index of entry k.
    """
    flat = np.asarray(values).reshape(-1)
    positions = np.flatnonzero(flat != zero_index)
    max_gap = 1 << index_bits
    gaps: list[int] = []
    symbols: list[int] = []
    prev = -1
    for p in positions.tolist():
        d = p - prev
        while d > max_gap:
            gaps.append(max_gap)
            symbols.append(zero_index)
            d -= max_gap
        gaps.append(d)
        symbols.append(int(flat[p]))
        prev = p
    return gaps, symbols


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
    """

    layers: list[LayerCost]
    codebook_size: int
    codebook_bits: int

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
    def nonzero_fraction(self) -> float:
        """Fraction of all weights that are not zero."""
        return sum(layer.n_nonzero for layer in self.layers) / max(self.n_weights, 1)

    def to_markdown(self) -> str:
        """The table: layer, weights, non-zero %, distinct values, bits, ratio vs float32."""
        rows = [
            "| layer | kind | weights | non-zero % | distinct values | bits (Huffman) | ratio |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for c in self.layers:
            rows.append(
                f"| {c.name} | {c.kind} | {c.n_weights} | {100 * c.nonzero_fraction:.2f} | "
                f"{c.n_distinct} | {c.bits_huffman} | {c.ratio:.1f}x |"
            )
        rows.append(
            f"| codebook | - | {self.codebook_size} values | - | - | {self.codebook_bits} | - |"
        )
        rows.append(
            f"| **total** | | {self.n_weights} | {100 * self.nonzero_fraction:.2f} | "
            f"{self.codebook_size} | {self.bits_huffman} | **{self.ratio:.1f}x** |"
        )
        rows.append("")
        rows.append(
            f"Entropy bound: {32 * self.n_weights / self.bits_entropy:.1f}x; fixed-width codes: "
            f"{32 * self.n_weights / self.bits_fixed:.1f}x."
        )
        return "\n".join(rows)


def _layer_cost(
    name: str, arr: NDArray[Any], kind: str, bits: int, value_bits: int, zero_index: int
) -> LayerCost:
    """The cost of one layer's indices with a ``bits``-wide relative index."""
    gaps, symbols = sparse_entries(arr, zero_index, bits)
    gap_counts = Counter(gaps)
    sym_counts = Counter(symbols)
    gap_len = huffman_code_lengths(gap_counts)
    sym_len = huffman_code_lengths(sym_counts)
    huff = sum(gap_len[g] * c for g, c in gap_counts.items()) + sum(
        sym_len[s] * c for s, c in sym_counts.items()
    )
    return LayerCost(
        name=name,
        kind=kind,
        n_weights=int(arr.size),
        n_nonzero=int(np.count_nonzero(arr != zero_index)),
        n_entries=len(gaps),
        n_distinct=len(np.unique(arr)),
        bits_huffman=int(huff),
        bits_entropy=_entropy_bits(gap_counts) + _entropy_bits(sym_counts),
        bits_fixed=len(gaps) * (bits + value_bits),
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
        :func:`quantize`), in storage (C) order.
    codebook : array_like
        The distinct values; stored once, 32 bits each.
    kinds : mapping of layer name to "conv" or "dense", optional
        Layers not named are "dense".
    index_bits : mapping, default {"conv": 8, "dense": 5}
        Width of the relative index for each kind (Han et al.'s choice).
    zero_index : int, default 0
        The codebook index whose value is 0 (not stored; fillers use it).

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
    kinds = dict(kinds or {})
    value_bits = max(1, math.ceil(math.log2(max(book.size, 2))))
    layers = []
    for name, idx in indices.items():
        kind = kinds.get(name, "dense")
        if kind not in widths:
            msg = f"layer {name!r}: kind must be one of {sorted(widths)}, got {kind!r}"
            raise ValueError(msg)
        layers.append(
            _layer_cost(name, np.asarray(idx), kind, widths[kind], value_bits, zero_index)
        )
    return CompressionReport(
        layers=layers, codebook_size=int(book.size), codebook_bits=32 * int(book.size)
    )
