"""The compression recipe built on soft weight-sharing (Ullrich, Meeds & Welling 2017).

Framework-free (NumPy): initialise a mixture over trained weights, hyper-priors
on it, the closed-form EM update, merging of coinciding components and pruning
of dead ones, quantization of every weight to its component's mean, and the
storage cost in the sparse format of Han, Mao & Dally (2016) with real Huffman
code lengths, with an export/load pair that reconstructs the quantized weights
exactly. :mod:`softshare.demo` runs the whole recipe with PyTorch.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._inputs import as_mixture, as_weights
from ._mixture import Mixture
from ._penalty import penalty

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    from ._inputs import WeightsLike

__all__ = [
    "CompressionReport",
    "HyperPrior",
    "LayerCost",
    "MergeReport",
    "compression_report",
    "em_step",
    "export_quantized",
    "huffman_code_lengths",
    "init_mixture",
    "load_quantized",
    "log_likelihood",
    "merge_components",
    "quantize",
    "save_quantized",
]

_CHUNK = 1 << 15


def _flat64(weights: WeightsLike) -> NDArray[np.float64]:
    w = as_weights(weights)
    if not w.flat:
        return np.zeros(0)
    return np.concatenate([a.astype(np.float64, copy=False) for a in w.flat])


# --------------------------------------------------------------------------- init


def init_mixture(
    weights: WeightsLike,
    n_components: int = 17,
    *,
    zero_component: bool = True,
    pi_zero: float = 0.999,
    spread: str = "range",
    sigma: float | None = None,
) -> Mixture:
    """A mixture to start retraining from, laid over trained weights.

    Parameters
    ----------
    weights : array_like or list of array_like
        The pretrained weights.
    n_components : int, default 17
        Number of components M, the zero component included.
    zero_component : bool, default True
        Component 0 has mean exactly 0 and mixing proportion ``pi_zero``.
    pi_zero : float, default 0.999
        Initial mixing proportion of the zero component (0 < pi_zero < 1).
    spread : {"range", "quantile"}, default "range"
        Means evenly over [min, max] of the weights, or at evenly spaced
        quantiles of them.
    sigma : float, optional
        Shared initial standard deviation; by default a quarter of the spacing
        of the means.

    Returns
    -------
    Mixture
        Components ordered as: zero component (if any), then means ascending.
    """
    w = _flat64(weights)
    if w.size == 0:
        msg = "init_mixture needs at least one weight"
        raise ValueError(msg)
    if not np.all(np.isfinite(w)):
        msg = "weights must be finite"
        raise ValueError(msg)
    n_free = n_components - (1 if zero_component else 0)
    if n_components < 1 or n_free < (0 if zero_component else 1):
        msg = f"n_components must be >= {2 if zero_component else 1}, got {n_components}"
        raise ValueError(msg)
    if zero_component and not 0.0 < pi_zero < 1.0:
        msg = f"pi_zero must be in (0, 1), got {pi_zero}"
        raise ValueError(msg)
    lo, hi = float(np.min(w)), float(np.max(w))
    if spread == "range":
        means = np.linspace(lo, hi, n_free) if n_free > 1 else np.array([0.5 * (lo + hi)])
    elif spread == "quantile":
        means = np.quantile(w, np.linspace(0.0, 1.0, n_free + 2)[1:-1])
    else:
        msg = f"spread must be 'range' or 'quantile', got {spread!r}"
        raise ValueError(msg)
    if sigma is None:
        span = max(hi - lo, 1e-8)
        sigma = 0.25 * span / max(n_free - 1, 1)
    if not sigma > 0:
        msg = f"sigma must be positive, got {sigma}"
        raise ValueError(msg)
    if zero_component:
        mu = np.concatenate([[0.0], means])
        pi = np.concatenate([[pi_zero], np.full(n_free, (1.0 - pi_zero) / max(n_free, 1))])
    else:
        mu = means
        pi = np.full(n_free, 1.0 / n_free)
    return Mixture.from_pi_sigma(pi, mu, np.full(mu.shape, sigma))


# --------------------------------------------------------------------------- hyper-priors


@dataclass(frozen=True)
class HyperPrior:
    """Hyper-priors on a mixture with a zero component at index 0.

    Gamma priors on each component's precision ``1 / sigma_j^2`` (shape, rate),
    with their own shape and rate for the zero component, and an optional
    Beta(alpha, beta) prior on the zero component's mixing proportion. The
    defaults are those of Ullrich et al.: (5000, 2) for the zero component,
    (250, 0.1) for the others.

    ``value_and_grad(mixture)`` gives the negative log-density (up to a
    constant) and its gradients with respect to ``mu``, ``log_var`` and
    ``logit``; ``softshare.torch.MixturePrior`` evaluates the same terms with
    torch ops.
    """

    gamma: tuple[float, float] | None = (250.0, 0.1)
    zero_gamma: tuple[float, float] | None = (5000.0, 2.0)
    beta: tuple[float, float] | None = None

    def shape_rate(self, m: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Gamma shape and rate of each of ``m`` components' precision (rate 0: no prior)."""
        shape = np.zeros(m)
        rate = np.zeros(m)
        if self.gamma is not None:
            shape[1:], rate[1:] = self.gamma
        if self.zero_gamma is not None:
            shape[0], rate[0] = self.zero_gamma
        return shape, rate

    def value_and_grad(
        self, mixture: Mixture
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Negative log hyper-prior and its gradients (mu, log_var, logit)."""
        mix = as_mixture(mixture)
        m = mix.n_components
        shape, rate = self.shape_rate(m)
        active = rate > 0
        precision = np.exp(-mix.log_var)
        # -log Gamma(lambda | a, b) = -(a - 1) log lambda + b lambda + const, log lambda = -xi
        value = float(np.sum(np.where(active, (shape - 1.0) * mix.log_var + rate * precision, 0.0)))
        grad_log_var = np.where(active, (shape - 1.0) - rate * precision, 0.0)
        grad_logit = np.zeros(m)
        if self.beta is not None:
            a, b = self.beta
            pi = mix.pi
            p0 = float(pi[0])
            value += -(a - 1.0) * math.log(p0) - (b - 1.0) * math.log1p(-p0)
            dp0 = -(a - 1.0) / p0 + (b - 1.0) / (1.0 - p0)
            jac = -p0 * pi  # d pi_0 / d eta_k = pi_0 (delta_0k - pi_k)
            jac[0] += p0
            grad_logit = dp0 * jac
        return value, np.zeros(m), grad_log_var, grad_logit


# --------------------------------------------------------------------------- EM


def log_likelihood(weights: WeightsLike, mixture: Mixture) -> float:
    """``sum_i ln p(w_i)`` under the mixture (= -Omega)."""
    return -penalty(weights, mixture, 1.0).value


def em_step(weights: WeightsLike, mixture: Mixture, *, min_var: float = 1e-12) -> Mixture:
    """One EM update of the mixture for fixed weights, from S0, S1, S2 (SPEC).

    ``pi_j = S0_j / N``, ``mu_j += S1_j / S0_j``, ``sigma_j^2 = S2_j / S0_j -
    (S1_j / S0_j)^2`` (floored at ``min_var``). A component with no
    responsibility (S0_j = 0) keeps its mean and variance and gets the
    smallest positive proportion. The log-likelihood never decreases.
    """
    mix = as_mixture(mixture)
    r = penalty(weights, mix, 1.0)
    if r.n == 0:
        return mix
    s0, s1, s2 = r.stats
    alive = s0 > 0
    safe = np.where(alive, s0, 1.0)
    shift = np.where(alive, s1 / safe, 0.0)
    mu = mix.mu + shift
    var = np.where(alive, np.maximum(s2 / safe - shift * shift, min_var), mix.var)
    pi = np.where(alive, s0 / r.n, np.finfo(np.float64).tiny)
    return Mixture(mu, np.log(var), np.log(pi))


# --------------------------------------------------------------------------- merging


def symmetric_kl(mixture: Mixture) -> NDArray[np.float64]:
    """Symmetric KL divergence between every pair of components, shape (M, M)."""
    mu, var = mixture.mu, mixture.var
    ratio = var[:, None] / var[None, :]
    d2 = (mu[:, None] - mu[None, :]) ** 2
    return 0.5 * (ratio + 1.0 / ratio - 2.0) + 0.5 * d2 * (1.0 / var[:, None] + 1.0 / var[None, :])


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_components` did: merged groups and pruned components."""

    merged: list[tuple[int, ...]] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(self.kept)} components kept"]
        if self.merged:
            parts.append("merged " + ", ".join("+".join(map(str, g)) for g in self.merged))
        if self.pruned:
            parts.append("pruned " + ", ".join(map(str, self.pruned)))
        return "; ".join(parts)


def merge_components(
    mixture: Mixture,
    weights: WeightsLike | None = None,
    *,
    threshold: float = 1.0,
    min_responsibility: float = 0.5,
    zero_component: bool = True,
) -> tuple[Mixture, MergeReport]:
    """Merge components whose distributions nearly coincide; prune dead ones.

    Two components merge when their symmetric KL divergence is below
    ``threshold`` (1.0: their means lie within about one sigma of each other and
    their widths are similar; retrained mixtures routinely have such pairs).
    Merging matches moments: ``pi = pi_a + pi_b``, the mean and variance of the
    pair as one distribution. With ``weights`` given, components whose total
    responsibility S0 is below ``min_responsibility`` are pruned first. The
    zero component (index 0) is never pruned and keeps mean 0 when merged.

    Returns
    -------
    (Mixture, MergeReport)
        The reduced mixture (zero component first) and what was done, in the
        input's component indices.
    """
    mix = as_mixture(mixture)
    m = mix.n_components
    pi = mix.pi.copy()
    mu = mix.mu.copy()
    var = mix.var.copy()
    pruned: list[int] = []
    alive = np.ones(m, dtype=bool)
    if weights is not None:
        s0 = penalty(weights, mix, 1.0).stats[0]
        for j in range(m):
            if s0[j] < min_responsibility and not (zero_component and j == 0):
                alive[j] = False
                pruned.append(j)
    groups: list[list[int]] = [[j] for j in range(m) if alive[j]]
    while len(groups) > 1:
        cur = Mixture(
            [mu[g[0]] for g in groups], [math.log(var[g[0]]) for g in groups], np.zeros(len(groups))
        )
        kl = symmetric_kl(cur)
        np.fill_diagonal(kl, np.inf)
        a, b = np.unravel_index(int(np.argmin(kl)), kl.shape)
        if not kl[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        ia, ib = groups[a][0], groups[b][0]
        p = pi[ia] + pi[ib]
        m_new = (pi[ia] * mu[ia] + pi[ib] * mu[ib]) / p
        v_new = (pi[ia] * (var[ia] + mu[ia] ** 2) + pi[ib] * (var[ib] + mu[ib] ** 2)) / p - m_new**2
        if zero_component and 0 in (groups[a][0], groups[b][0]):
            m_new = 0.0
        pi[ia], mu[ia], var[ia] = p, m_new, max(v_new, 1e-300)
        groups[a] = groups[a] + groups[b]
        del groups[b]
    kept = [g[0] for g in groups]
    merged = [tuple(g) for g in groups if len(g) > 1]
    order = sorted(kept, key=lambda j: (not (zero_component and j == 0), mu[j]))
    pis = np.array([pi[j] for j in order])
    out = Mixture(
        [mu[j] for j in order], [math.log(var[j]) for j in order], np.log(pis / pis.sum())
    )
    return out, MergeReport(merged=merged, pruned=pruned, kept=order)


# --------------------------------------------------------------------------- quantization


def assign(weights: ArrayLike, mixture: Mixture, *, use_pi: bool = True) -> NDArray[np.intp]:
    """Index of the most responsible component of every weight (MAP), shaped like ``weights``.

    Chunked: never more than 32768 x M log-terms at once. ``use_pi=False``
    ignores the mixing proportions (nearest component in likelihood).
    """
    mix = as_mixture(mixture)
    arr = np.asarray(weights, dtype=np.float64)
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.intp)
    base = -0.5 * mix.log_var + (mix.log_pi if use_pi else 0.0)
    inv2var = 0.5 / mix.var
    for i0 in range(0, flat.size, _CHUNK):
        d = flat[i0 : i0 + _CHUNK, None] - mix.mu[None, :]
        out[i0 : i0 + _CHUNK] = np.argmax(base - d * d * inv2var, axis=1)
    return out.reshape(arr.shape)


def quantize(
    weights: WeightsLike, mixture: Mixture, *, use_pi: bool = True
) -> tuple[list[NDArray[np.floating]], list[NDArray[np.intp]]]:
    """Set every weight to the mean of its most responsible component.

    Returns the quantized arrays (dtype and shape of the inputs) and the
    component index of every weight. A zero component (mean exactly 0) gives
    exact zeros.
    """
    mix = as_mixture(mixture)
    w = as_weights(weights)
    quantized, indices = [], []
    for arr, shape in zip(w.flat, w.shapes):
        idx = assign(arr, mix, use_pi=use_pi).reshape(shape)
        indices.append(idx)
        quantized.append(mix.mu[idx].astype(arr.dtype))
    return quantized, indices


# --------------------------------------------------------------------------- storage cost


def huffman_code_lengths(counts: Mapping[Any, int]) -> dict[Any, int]:
    """Code length of every symbol in an optimal (Huffman) prefix code.

    Symbols with count 0 are left out; a single symbol gets length 1.
    The lengths satisfy Kraft's equality ``sum 2^-l = 1`` for >= 2 symbols.
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
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return -sum(c * math.log2(c / total) for c in counts.values() if c > 0)


def sparse_entries(
    values: NDArray[np.intp], zero_index: int, index_bits: int
) -> tuple[list[int], list[int]]:
    """Han et al.'s relative-index sparse stream of one layer.

    ``values`` are codebook indices in storage order; entries equal to
    ``zero_index`` are not stored. Each stored entry has a gap ``d`` (1 ..
    2^index_bits) to the previous stored entry; a longer gap is bridged with
    filler zeros (entries with ``zero_index`` at the largest gap).

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
    """Storage of one layer: sizes and bits under three codings of the streams."""

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
        return self.n_nonzero / self.n_weights if self.n_weights else 0.0

    @property
    def ratio(self) -> float:
        """float32 size / Huffman-coded size."""
        return 32.0 * self.n_weights / self.bits_huffman if self.bits_huffman else math.inf


@dataclass(frozen=True)
class CompressionReport:
    """Per-layer and total storage, the codebook counted once."""

    layers: list[LayerCost]
    codebook_size: int
    codebook_bits: int

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    @property
    def bits_huffman(self) -> int:
        return self.codebook_bits + sum(layer.bits_huffman for layer in self.layers)

    @property
    def bits_entropy(self) -> float:
        return self.codebook_bits + sum(layer.bits_entropy for layer in self.layers)

    @property
    def bits_fixed(self) -> int:
        return self.codebook_bits + sum(layer.bits_fixed for layer in self.layers)

    @property
    def ratio(self) -> float:
        """float32 size of all weights / total Huffman-coded size."""
        return 32.0 * self.n_weights / self.bits_huffman

    @property
    def nonzero_fraction(self) -> float:
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
    """
    book = np.asarray(codebook, dtype=np.float64).reshape(-1)
    widths = {"conv": 8, "dense": 5}
    if index_bits:
        widths.update(index_bits)
    kinds = dict(kinds or {})
    value_bits = max(1, math.ceil(math.log2(max(book.size, 2))))
    layers = []
    for name, idx in indices.items():
        arr = np.asarray(idx)
        kind = kinds.get(name, "dense")
        if kind not in widths:
            msg = f"layer {name!r}: kind must be one of {sorted(widths)}, got {kind!r}"
            raise ValueError(msg)
        bits = widths[kind]
        gaps, symbols = sparse_entries(arr, zero_index, bits)
        gap_counts = Counter(gaps)
        sym_counts = Counter(symbols)
        gap_len = huffman_code_lengths(gap_counts)
        sym_len = huffman_code_lengths(sym_counts)
        huff = sum(gap_len[g] * c for g, c in gap_counts.items()) + sum(
            sym_len[s] * c for s, c in sym_counts.items()
        )
        layers.append(
            LayerCost(
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
        )
    return CompressionReport(
        layers=layers, codebook_size=int(book.size), codebook_bits=32 * int(book.size)
    )


# --------------------------------------------------------------------------- export


def export_quantized(
    layers: Mapping[str, ArrayLike], mixture: Mixture, *, use_pi: bool = True
) -> dict[str, NDArray[Any]]:
    """Codebook and per-layer integer indices of the quantized weights.

    Returns a flat dict for :func:`numpy.savez`: ``"codebook"`` (float32, the
    component means that are used, the zero first when present) and, per layer,
    ``"<name>"`` (uint8/uint16 indices into the codebook, the layer's shape).
    """
    mix = as_mixture(mixture)
    raw = {name: assign(np.asarray(a), mix, use_pi=use_pi) for name, a in layers.items()}
    used = (
        np.unique(np.concatenate([v.reshape(-1) for v in raw.values()]))
        if raw
        else np.zeros(0, int)
    )
    remap = np.zeros(mix.n_components, dtype=np.int64)
    remap[used] = np.arange(used.size)
    dtype = np.uint8 if used.size <= 256 else np.uint16
    out: dict[str, NDArray[Any]] = {"codebook": mix.mu[used].astype(np.float32)}
    for name, idx in raw.items():
        if name == "codebook":
            msg = "a layer may not be called 'codebook'"
            raise ValueError(msg)
        out[name] = remap[idx].astype(dtype)
    return out


def load_quantized(exported: Mapping[str, NDArray[Any]]) -> dict[str, NDArray[np.float32]]:
    """Rebuild the quantized float32 layers from :func:`export_quantized`'s output."""
    book = np.asarray(exported["codebook"], dtype=np.float32)
    return {name: book[np.asarray(idx)] for name, idx in exported.items() if name != "codebook"}


def save_quantized(path: str | Path, exported: Mapping[str, NDArray[Any]]) -> None:
    """Write an export to ``path`` (.npz, compressed)."""
    arrays = {name: np.asarray(a) for name, a in exported.items()}
    np.savez_compressed(Path(path), **arrays)  # type: ignore[arg-type]
