// The compression recipe's per-weight kernels for one instruction set: assign
// (each weight's most responsible component) and dequantize (codebook lookup).
// Per-target code (-inl): included once per target, by recipe_isa.cpp only,
// which CMake compiles with -ffp-contract=off (see argmax_tile).
//
// Python-free. Like block-inl.hpp, everything here is in SOFTSHARE_ISA_NS or
// has internal linkage, and no standard-library template is instantiated, so
// no instruction of one target can be linked into another's code.
#pragma once

#include <cstdint>

#include "softshare/recipe_types.hpp"
#include "softshare/vmath-inl.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/recipe-inl.hpp"
#endif

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {
namespace recipe {

using VD = Vec<double>;
using VI = IVec<double>;
constexpr int kLanes = Simd<double>::kLanes;
// Weights per tile: kUnroll vectors of float64, each component's scores for
// the kUnroll vectors being kUnroll independent dependency chains.
constexpr int kTile = kUnroll * kLanes;

// kLanes weights from p, as float64 (exact).
SOFTSHARE_INLINE VD load_f64(const double* p) { return load(p); }
SOFTSHARE_INLINE VD load_f64(const float* p) {
    typedef float H __attribute__((vector_size(kVectorBytes / 2), aligned(4), may_alias));
    return __builtin_convertvector(*reinterpret_cast<const H*>(p), VD);
}

// x in every lane. Not vmath's splat (0 + x): x - 0 is x for every x, -0
// included, so the compiler folds it into one broadcast, which it may not do
// for 0 + x (that is +0 for x = -0).
SOFTSHARE_INLINE VD bcast(double x) { return x - VD{}; }

// The lanes of v (indices below 2^63) as kLanes values of O, stored at p.
template <class O>
SOFTSHARE_INLINE void store_as(O* p, VI v) {
    typedef O OV __attribute__((vector_size(kLanes * sizeof(O)), aligned(1), may_alias));
    *reinterpret_cast<OV*>(p) = __builtin_convertvector(v, OV);
}

// The scores of one tile x (kUnroll vectors) against the components jof(0) ..
// jof(nc - 1), which must be in increasing order: idx gets, per lane, the first
// of them with the largest score, s_j = base_j - (d * d) * inv2var_j with
// d = x - mu_j. Each operation is one IEEE float64 operation, rounded on its
// own: the translation unit is compiled with -ffp-contract=off, so the
// compiler fuses none of them into an FMA, and the scores are bit for bit
// NumPy's (python/softshare/reference.py's assign). A strict > keeps the
// first of equal scores, as np.argmax; no score is NaN (finite weights and
// means, base finite, inv2var > 0: at worst -inf).
template <class J>
SOFTSHARE_INLINE void argmax_tile(const AssignView& c, const VD (&x)[kUnroll], J jof,
                                  std::int64_t nc, VI (&idx)[kUnroll]) {
    VD best[kUnroll];
    {
        const std::int64_t j = jof(0);
        const VD mu = bcast(c.mu[j]), b = bcast(c.base[j]), q = bcast(c.inv2var[j]);
        for (int u = 0; u < kUnroll; ++u) {
            const VD d = x[u] - mu;
            best[u] = b - (d * d) * q;
            idx[u] = VI{} + j;
        }
    }
    for (std::int64_t k = 1; k < nc; ++k) {
        const std::int64_t j = jof(k);
        const VD mu = bcast(c.mu[j]), b = bcast(c.base[j]), q = bcast(c.inv2var[j]);
        const VI jv = VI{} + j;
        for (int u = 0; u < kUnroll; ++u) {
            const VD d = x[u] - mu;
            const VD s = b - (d * d) * q;
            const VI gt = s > best[u];
            best[u] = gt ? s : best[u];
            idx[u] = gt ? jv : idx[u];
        }
    }
}

// The bounds of a component's computed score s_j(w) over w in [lo, hi]
// (candidates): low, and the largest, up. near_j <= |d| <= far_j for every
// computed d = w - mu_j there, each computed as argmax_tile computes a score.
struct ScoreBounds {
    double low, up;
};
SOFTSHARE_INLINE ScoreBounds score_bounds(const AssignView& c, std::int64_t j, double lo,
                                          double hi) {
    const double a = lo - c.mu[j], b = hi - c.mu[j];
    const double abs_a = a < 0.0 ? -a : a, abs_b = b < 0.0 ? -b : b;
    const double far = abs_a > abs_b ? abs_a : abs_b;
    const double near = a > 0.0 ? a : (b < 0.0 ? -b : 0.0);
    return {c.base[j] - (far * far) * c.inv2var[j], c.base[j] - (near * near) * c.inv2var[j]};
}

// The components that can win for some weight in [lo, hi], in increasing
// order, into cand; returns their count (>= 1).
//
// Exact, by monotonicity alone: every IEEE operation, correctly rounded, is
// monotone in each operand. For w in [lo, hi] the computed d = w - mu_j lies
// in [a, b] = [lo - mu_j, hi - mu_j] (computed), so |d| is between near_j and
// far_j of score_bounds and the computed s_j(w) between its low_j and up_j.
// Every such weight has s_c(w) >= top = max of low_c over the components seen;
// a component with up_j < top loses, strictly, for every one of them, and
// leaving it out changes no argmax, ties included. The scan starts at the
// components whose means are nearest to [lo, hi] and goes outward in the
// order of the means; it stops on a side once a bound for all the components
// beyond is below top: for the means above hi from position p on, each near_j
// >= n = smu_p - hi (computed), so up_j <= suf_base_p - (n * n) suf_q_p
// (computed); below lo likewise with the prefixes.
SOFTSHARE_INLINE std::int64_t candidates(const AssignView& c, double lo, double hi,
                                         std::int32_t* cand) {
    const std::int64_t m = c.m;
    // [p0, p1]: the means in [lo, hi] and the nearest one on each side
    std::int64_t first = 0, count = m;  // lower bound of lo in smu
    while (count > 0) {
        const std::int64_t half = count / 2;
        if (c.smu[first + half] < lo) {
            first += half + 1;
            count -= half + 1;
        } else {
            count = half;
        }
    }
    const std::int64_t p0 = first > 0 ? first - 1 : 0;
    std::int64_t p1 = first < m ? first : m - 1;
    while (p1 + 1 < m && !(c.smu[p1] > hi)) ++p1;
    double top = -__builtin_inf();
    for (std::int64_t p = p0; p <= p1; ++p) {
        const double low = score_bounds(c, c.order[p], lo, hi).low;
        top = low > top ? low : top;
    }
    std::int64_t nc = 0;
    const auto consider = [&](std::int64_t p) {
        const std::int32_t j = c.order[p];
        const ScoreBounds sb = score_bounds(c, j, lo, hi);
        top = sb.low > top ? sb.low : top;  // any low bounds every weight's best score
        cand[nc] = j;
        nc += !(sb.up < top);
    };
    for (std::int64_t p = p0; p <= p1; ++p) consider(p);
    for (std::int64_t p = p1 + 1; p < m; ++p) {
        const double n = c.smu[p] - hi;
        if (c.suf_base[p] - (n * n) * c.suf_q[p] < top) break;
        consider(p);
    }
    for (std::int64_t p = p0 - 1; p >= 0; --p) {
        const double n = lo - c.smu[p];
        if (c.pre_base[p] - (n * n) * c.pre_q[p] < top) break;
        consider(p);
    }
    // top only grew: a component kept early may lose to it now; the argmax
    // does not mind a component too many. In increasing order (insertion:
    // the list is short and nearly sorted).
    for (std::int64_t k = 1; k < nc; ++k) {
        const std::int32_t v = cand[k];
        std::int64_t i = k;
        for (; i > 0 && cand[i - 1] > v; --i) cand[i] = cand[i - 1];
        cand[i] = v;
    }
    return nc;
}

// The lanes' counts offsets: weight t of a tile counts in copy t mod
// kCountCopies of counts (M each).
SOFTSHARE_INLINE void count_offsets(std::int64_t m, VI (&copy)[kUnroll]) {
    for (int u = 0; u < kUnroll; ++u) {
        for (int t = 0; t < kLanes; ++t) copy[u][t] = ((u * kLanes + t) % kCountCopies) * m;
    }
}

template <class T, class O>
bool assign_typed(const AssignView& c, const T* w, O* out, std::int64_t n, std::int64_t* counts) {
    VD not_finite = VD{};  // x - x: 0, or NaN for an infinite or NaN weight
    alignas(64) double pad[kTile];
    alignas(64) std::int64_t at[kTile];
    VI copy[kUnroll];
    count_offsets(c.m, copy);
    for (std::int64_t i0 = 0; i0 < n; i0 += kTile) {
        const int len = n - i0 < kTile ? static_cast<int>(n - i0) : kTile;
        VD x[kUnroll];
        if (len == kTile) {
            for (int u = 0; u < kUnroll; ++u) x[u] = load_f64(w + i0 + u * kLanes);
        } else {  // the tail: padded with its first weight (its lanes are not stored)
            for (int t = 0; t < kTile; ++t) pad[t] = static_cast<double>(w[i0 + (t < len ? t : 0)]);
            for (int u = 0; u < kUnroll; ++u) x[u] = load(pad + u * kLanes);
        }
        for (int u = 0; u < kUnroll; ++u) not_finite += x[u] - x[u];
        VI idx[kUnroll];
        argmax_tile(c, x, [](std::int64_t k) { return k; }, c.m, idx);
        if (len == kTile) {
            for (int u = 0; u < kUnroll; ++u) store_as(out + i0 + u * kLanes, idx[u]);
        } else {
            alignas(64) O tail[kTile];
            for (int u = 0; u < kUnroll; ++u) store_as(tail + u * kLanes, idx[u]);
            for (int t = 0; t < len; ++t) out[i0 + t] = tail[t];
        }
        for (int u = 0; u < kUnroll; ++u) store_as(at + u * kLanes, copy[u] + idx[u]);
        for (int t = 0; t < len; ++t) ++counts[at[t]];
    }
    for (int t = 0; t < kLanes; ++t) {
        if (not_finite[t] != 0.0) return false;
    }
    return true;
}

// assign_typed's result for a block, through the block sorted by cell (a
// counting sort: weights of a cell stay in their order) and scored group by
// group (kAssignGroupWeights sorted weights, whose range is narrow) against
// their candidates alone. The same indices bit for bit (candidates), in
// another order of work. A block with a weight that is not finite goes to
// assign_typed.
template <class T, class O>
bool assign_grouped(const AssignView& c, const T* w, O* out, std::int64_t n,
                    std::int64_t* counts, const AssignScratch& s) {
    // cells, kLanes at a time (the tail through a padded vector)
    const VD x0 = bcast(c.x0), inv_h = bcast(c.inv_h), one = bcast(1.0), zero = VD{};
    const VD top_cell = bcast(static_cast<double>(c.cells - 1));
    VD not_finite = VD{};  // x - x: 0, or NaN for an infinite or NaN weight
    for (std::int64_t i = 0; i < n; i += kLanes) {
        VD x;
        if (n - i >= kLanes) {
            x = load_f64(w + i);
        } else {
            alignas(64) double pad[kLanes];
            for (int t = 0; t < kLanes; ++t) pad[t] = static_cast<double>(w[i + t < n ? i + t : i]);
            x = load(pad);
        }
        not_finite += x - x;
        VD u = (x - x0) * inv_h + one;
        u = u > zero ? u : zero;  // NaN: 0
        u = u < top_cell ? u : top_cell;
        alignas(64) std::int32_t cells[kLanes];
        store_as(cells, __builtin_convertvector(u, VI));
        for (int t = 0; t < kLanes && i + t < n; ++t) s.cell[i + t] = cells[t];
    }
    bool finite = true;
    for (int t = 0; t < kLanes; ++t) finite = finite && not_finite[t] == 0.0;
    if (!finite) return assign_typed(c, w, out, n, counts);
    for (std::int64_t k = 0; k < c.cells; ++k) s.count[k] = 0;
    for (std::int64_t i = 0; i < n; ++i) ++s.count[s.cell[i]];
    std::int32_t start = 0;
    for (std::int64_t k = 0; k < c.cells; ++k) {
        const std::int32_t here = s.count[k];
        s.count[k] = start;
        start += here;
    }
    for (std::int64_t i = 0; i < n; ++i) {
        const std::int32_t p = s.count[s.cell[i]]++;
        s.ws[p] = static_cast<double>(w[i]);
        s.pos[p] = static_cast<std::int32_t>(i);
    }
    for (int t = 0; t < kTile; ++t) s.ws[n + t] = s.ws[n - 1];  // the last tile's padding
    alignas(64) std::int64_t at[kTile];
    const std::int32_t* cand = s.cand;
    const std::int32_t* pos = s.pos;  // locals: counts' stores may alias c.m, not these
    const std::int64_t m = c.m;
    for (std::int64_t g0 = 0; g0 < n; g0 += kAssignGroupWeights) {
        const std::int64_t g1 = n - g0 < kAssignGroupWeights ? n : g0 + kAssignGroupWeights;
        // the group's range (the padding past n repeats its last weight)
        VD lo_v = load(s.ws + g0), hi_v = lo_v;
        for (std::int64_t p = g0 + kLanes; p < g1; p += kLanes) {
            const VD x = load(s.ws + p);
            lo_v = x < lo_v ? x : lo_v;
            hi_v = x > hi_v ? x : hi_v;
        }
        double lo = lo_v[0], hi = hi_v[0];
        for (int t = 1; t < kLanes; ++t) {
            lo = lo_v[t] < lo ? lo_v[t] : lo;
            hi = hi_v[t] > hi ? hi_v[t] : hi;
        }
        const std::int64_t nc = candidates(c, lo, hi, s.cand);
        for (std::int64_t t0 = g0; t0 < g1; t0 += kTile) {
            const int len = g1 - t0 < kTile ? static_cast<int>(g1 - t0) : kTile;
            VD x[kUnroll];
            for (int u = 0; u < kUnroll; ++u) x[u] = load(s.ws + t0 + u * kLanes);
            VI idx[kUnroll];
            argmax_tile(c, x, [cand](std::int64_t k) { return std::int64_t{cand[k]}; }, nc, idx);
            for (int u = 0; u < kUnroll; ++u) store_as(at + u * kLanes, idx[u]);
            for (int t = 0; t < len; ++t) {
                const std::int64_t j = at[t];
                out[pos[t0 + t]] = static_cast<O>(j);
                ++counts[(t % kCountCopies) * m + j];
            }
        }
    }
    return true;
}

template <class T, class O>
bool assign_any(const AssignView& c, const T* w, O* out, std::int64_t n, std::int64_t* counts,
                const AssignScratch& s) {
    if (c.cells > 0 && n > 0) return assign_grouped(c, w, out, n, counts, s);
    return assign_typed(c, w, out, n, counts);
}

template <class T>
bool assign_block(const AssignView& c, const T* w, void* out, IndexType out_type, std::int64_t n,
                  std::int64_t* counts, const AssignScratch& scratch) {
    switch (out_type) {
        case IndexType::u8:
            return assign_any(c, w, static_cast<std::uint8_t*>(out), n, counts, scratch);
        case IndexType::u16:
            return assign_any(c, w, static_cast<std::uint16_t*>(out), n, counts, scratch);
        case IndexType::u32:
            return assign_any(c, w, static_cast<std::uint32_t*>(out), n, counts, scratch);
        case IndexType::i64:
            return assign_any(c, w, static_cast<std::int64_t*>(out), n, counts, scratch);
    }
    return true;
}

// out[i] = book[idx[i]]; an index not below k reads book[0] instead (k >= 1)
// and is reported: the position of the first, or -1.
template <class I, class T>
std::int64_t dequantize_typed(const I* idx, const T* book, std::int64_t k, T* out,
                              std::int64_t n) {
    const auto uk = static_cast<std::uint64_t>(k);
    std::uint64_t bad = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const auto v = static_cast<std::uint64_t>(idx[i]);  // a negative int64: huge
        const bool ok = v < uk;
        bad |= static_cast<std::uint64_t>(!ok);
        out[i] = book[ok ? v : 0];
    }
    if (bad == 0) return -1;
    for (std::int64_t i = 0; i < n; ++i) {
        if (static_cast<std::uint64_t>(idx[i]) >= uk) return i;
    }
    return -1;
}

template <class I>
std::int64_t dequantize_index(const I* idx, const void* book, DType dtype, std::int64_t k,
                              void* out, std::int64_t n) {
    if (n == 0) return -1;
    if (k <= 0) return 0;  // every index is out of range, and there is no book[0]
    if (dtype == DType::f32) {
        return dequantize_typed(idx, static_cast<const float*>(book), k, static_cast<float*>(out),
                                n);
    }
    return dequantize_typed(idx, static_cast<const double*>(book), k, static_cast<double*>(out),
                            n);
}

std::int64_t dequantize(const void* idx, IndexType idx_type, const void* book, DType dtype,
                        std::int64_t k, void* out, std::int64_t n) {
    switch (idx_type) {
        case IndexType::u8:
            return dequantize_index(static_cast<const std::uint8_t*>(idx), book, dtype, k, out, n);
        case IndexType::u16:
            return dequantize_index(static_cast<const std::uint16_t*>(idx), book, dtype, k, out,
                                    n);
        case IndexType::u32:
            return dequantize_index(static_cast<const std::uint32_t*>(idx), book, dtype, k, out,
                                    n);
        case IndexType::i64:
            return dequantize_index(static_cast<const std::int64_t*>(idx), book, dtype, k, out, n);
    }
    return -1;
}

}  // namespace recipe
}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
