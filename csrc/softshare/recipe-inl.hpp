// The compression recipe's per-weight kernels for one instruction set: assign
// (each weight's most responsible component) and dequantize (codebook lookup).
// Per-target code (-inl): included once per target, by recipe_isa.cpp only,
// which CMake compiles with -ffp-contract=off (see assign_block).
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

// The components that can win for some weight in [lo, hi], in increasing
// order, into scratch.cand; returns their count. Exact, by monotonicity alone:
// every IEEE operation, correctly rounded, is monotone in each operand, so for
// w in [lo, hi] the computed d = w - mu_j lies in [lo - mu_j, hi - mu_j]
// (computed), |d| between near_j and far_j below, and the computed score
// s_j(w) between low_j = base_j - (far_j^2) inv2var_j and up_j = base_j -
// (near_j^2) inv2var_j, each computed as the kernel computes a score. Every
// weight of the tile has some s_c(w) >= max_c low_c; a component with
// up_j < max_c low_c therefore loses, strictly, for every weight of the tile,
// and leaving it out changes no argmax, ties included.
SOFTSHARE_INLINE std::int64_t candidates(const AssignView& c, double lo, double hi,
                                         const AssignScratch& s) {
    double top_low = -__builtin_inf();
    for (std::int64_t j = 0; j < c.m; ++j) {
        const double a = lo - c.mu[j], b = hi - c.mu[j];
        const double abs_a = a < 0.0 ? -a : a, abs_b = b < 0.0 ? -b : b;
        const double far = abs_a > abs_b ? abs_a : abs_b;
        const double near = a > 0.0 ? a : (b < 0.0 ? -b : 0.0);
        const double low = c.base[j] - (far * far) * c.inv2var[j];
        s.bound[j] = c.base[j] - (near * near) * c.inv2var[j];
        top_low = low > top_low ? low : top_low;
    }
    std::int64_t nc = 0;
    for (std::int64_t j = 0; j < c.m; ++j) {
        if (!(s.bound[j] < top_low)) s.cand[nc++] = static_cast<std::int32_t>(j);
    }
    return nc;
}

template <class T, class O>
bool assign_typed(const AssignView& c, const T* w, O* out, std::int64_t n, std::int64_t* counts,
                  const AssignScratch& scratch) {
    const std::int64_t m = c.m;
    const bool skip = m >= kAssignSkipMin;
    VD not_finite = VD{};  // x - x: 0, or NaN for an infinite or NaN weight
    alignas(64) double pad[kTile];
    alignas(64) std::int64_t at[kTile];
    // The offsets of the copies of counts, lane by lane: i0 is a multiple of
    // kTile, itself one of kCountCopies, so weight i0 + t counts in copy t mod
    // kCountCopies.
    VI copy[kUnroll];
    for (int u = 0; u < kUnroll; ++u) {
        for (int t = 0; t < kLanes; ++t) copy[u][t] = ((u * kLanes + t) % kCountCopies) * m;
    }
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
        if (skip) {
            VD lo_v = x[0], hi_v = x[0];
            for (int u = 1; u < kUnroll; ++u) {
                lo_v = x[u] < lo_v ? x[u] : lo_v;
                hi_v = x[u] > hi_v ? x[u] : hi_v;
            }
            double lo = lo_v[0], hi = hi_v[0];
            for (int t = 1; t < kLanes; ++t) {
                lo = lo_v[t] < lo ? lo_v[t] : lo;
                hi = hi_v[t] > hi ? hi_v[t] : hi;
            }
            const std::int64_t nc = candidates(c, lo, hi, scratch);
            const std::int32_t* cand = scratch.cand;
            argmax_tile(c, x, [cand](std::int64_t k) { return std::int64_t{cand[k]}; }, nc, idx);
        } else {
            argmax_tile(c, x, [](std::int64_t k) { return k; }, m, idx);
        }
        VI place[kUnroll];  // the tile's places in counts
        for (int u = 0; u < kUnroll; ++u) place[u] = copy[u] + idx[u];
        if (len == kTile) {
            for (int u = 0; u < kUnroll; ++u) store_as(out + i0 + u * kLanes, idx[u]);
        } else {
            alignas(64) O tail[kTile];
            for (int u = 0; u < kUnroll; ++u) store_as(tail + u * kLanes, idx[u]);
            for (int t = 0; t < len; ++t) out[i0 + t] = tail[t];
        }
        for (int u = 0; u < kUnroll; ++u) store_as(at + u * kLanes, place[u]);
        for (int t = 0; t < len; ++t) ++counts[at[t]];
    }
    for (int t = 0; t < kLanes; ++t) {
        if (not_finite[t] != 0.0) return false;
    }
    return true;
}

template <class T>
bool assign_block(const AssignView& c, const T* w, void* out, IndexType out_type, std::int64_t n,
                  std::int64_t* counts, const AssignScratch& scratch) {
    switch (out_type) {
        case IndexType::u8:
            return assign_typed(c, w, static_cast<std::uint8_t*>(out), n, counts, scratch);
        case IndexType::u16:
            return assign_typed(c, w, static_cast<std::uint16_t*>(out), n, counts, scratch);
        case IndexType::u32:
            return assign_typed(c, w, static_cast<std::uint32_t*>(out), n, counts, scratch);
        case IndexType::i64:
            return assign_typed(c, w, static_cast<std::int64_t*>(out), n, counts, scratch);
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
