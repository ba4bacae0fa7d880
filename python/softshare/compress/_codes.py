"""Code lengths of Han et al.'s sparse streams: Huffman codes and the entropy.

Shared by :mod:`softshare.compress` and :mod:`softshare.torch` (through :mod:`softshare.compress._storage`).
"""

from __future__ import annotations

import heapq
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping


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
