// The grouped block kernel: a block sorted by value, each tile against its cells' components only.
// Per-target code (-inl): included once per target, by kernel_isa.cpp only.
//
// Python-free. For narrow mixtures of many components (grouping.hpp plans
// when, and proves the components left out of a tile exactly 0): per weight
// the arithmetic of process_block (block-inl.hpp), through the same tile
// passes (tile-inl.hpp).
//
// kernel_isa.cpp defines SOFTSHARE_ISA_NS, the namespace the instantiations
// live in, before including this header.
#pragma once

#include <cstdint>

#include "softshare/tile-inl.hpp"
#include "softshare/types.hpp"
#include "softshare/vmath-inl.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/grouped-inl.hpp"
#endif

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {

// The cell of each weight of a vector (GroupingView): floor(u), u = (w - x0)
// inv_h + 1 clamped to [0, top] (NaN to 0), as int32.
template <class T>
struct CellLanes;
template <>
struct CellLanes<float> {
    typedef std::int32_t V __attribute__((vector_size(kVectorBytes), aligned(4)));
};
template <>
struct CellLanes<double> {
    typedef std::int32_t V __attribute__((vector_size(kVectorBytes / 2), aligned(4)));
};

template <class T>
SOFTSHARE_INLINE void store_cells(std::int32_t* out, Vec<T> w, T x0, T inv_h, T top) {
    using C = typename CellLanes<T>::V;
    Vec<T> u = (w - x0) * inv_h + T(1);
    u = u >= T(0) ? u : splat(T(0));
    u = u <= top ? u : splat(top);
    *reinterpret_cast<C*>(out) = __builtin_convertvector(u, C);
}

// The fused pass over one block with the weights grouped by value: a counting
// sort of the block into the cells of grp, then tiles of sorted weights, each
// against the components of its cells' window only (grouping.hpp proves the
// others' responsibilities exactly 0 on every path of exp2_neg). Per weight,
// grad_w and gamma are those of process_block when the means are in order
// (perm the identity); the sums differ by their order of summation only.
// Returns false, having written nothing, when a weight is not finite.
template <class T>
bool process_block_grouped(const ComponentsView<T>& comp, const GroupingView<T>& grp, const T* w,
                           T* grad_w, T* gamma, std::int64_t n, T lam, double* partial,
                           const Scratch<T>& scratch) {
    using V = Vec<T>;
    constexpr int L = Simd<T>::kLanes;
    constexpr int U = kUnroll;
    constexpr int TL = U * L;
    const std::int64_t m = comp.m;
    const std::int64_t cells = grp.cells;
    std::int32_t* cell = scratch.cell;
    std::int32_t* end = scratch.count;  // counts, then where each cell starts, then ends
    T* ws = scratch.ws;
    std::int32_t* idx = scratch.idx;

    // Cells, and whether every weight is finite (w - w is NaN otherwise).
    const T top = static_cast<T>(cells - 1);
    V bad = V{};
    std::int64_t i = 0;
    for (; i + L <= n; i += L) {
        const V wv = load(w + i);
        bad += wv - wv;
        store_cells<T>(cell + i, wv, grp.x0, grp.inv_h, top);
    }
    if (i < n) {
        alignas(64) T wpad[L];
        alignas(64) std::int32_t cpad[L];
        for (int t = 0; t < L; ++t) wpad[t] = i + t < n ? w[i + t] : T(0);
        const V wv = load(wpad);
        bad += wv - wv;
        store_cells<T>(cpad, wv, grp.x0, grp.inv_h, top);
        for (int t = 0; i + t < n; ++t) cell[i + t] = cpad[t];
    }
    for (int t = 0; t < L; ++t) {
        if (bad[t] != T(0)) return false;
    }

    // Counting sort by cell, stable: ws[p] = w[idx[p]].
    for (std::int64_t k = 0; k < cells; ++k) end[k] = 0;
    for (std::int64_t k = 0; k < n; ++k) ++end[cell[k]];
    std::int32_t pos = 0;
    for (std::int64_t k = 0; k < cells; ++k) {
        const std::int32_t cnt = end[k];
        end[k] = pos;
        pos += cnt;
    }
    for (std::int64_t k = 0; k < n; ++k) {
        const std::int32_t p = end[cell[k]]++;
        ws[p] = w[k];
        idx[p] = static_cast<std::int32_t>(k);
    }
    // end[k] is now one past cell k's last position. The window of the cells
    // of the positions [p0, p1]: their cells are a run [k0, k1].
    const std::int64_t grid_end = cells - 1;
    const auto window = [&](std::int64_t k0, std::int64_t k1, std::int64_t& lo, std::int64_t& hi) {
        const bool outside = k0 == 0 || k1 == grid_end;
        lo = outside ? 0 : grp.j_lo[k0];
        hi = outside ? m - 1 : grp.j_hi[k1];
    };
    std::int64_t k_first = 0, k_last = 0;
    while (end[k_first] <= 0) ++k_first;
    while (end[k_last] <= n - 1) ++k_last;
    std::int64_t block_lo, block_hi;
    window(k_first, k_last, block_lo, block_hi);

    // acc: 3 x M float64 sums (not per lane: each flush folds its lanes, so
    // that only the block's window is zeroed and folded, a few components
    // at a time).
    V* buf = reinterpret_cast<V*>(scratch.buf);
    V* sub = reinterpret_cast<V*>(scratch.sub);
    double* acc = scratch.acc;
    for (std::int64_t k0 = 0; k0 < 3 * m; k0 += m) {
        for (std::int64_t k = k0 + block_lo; k <= k0 + block_hi; ++k) {
            sub[k] = V{};
            acc[k] = 0.0;
        }
    }
    alignas(64) double lsum[L] = {};
    alignas(64) double check[L] = {};
    V not_finite = V{};  // scale_and_check's NaN flag

    int tile = 0;
    std::int64_t c0 = k_first, c1 = k_first;  // the cells of the tile's first and last weight
    std::int64_t flush_lo = m, flush_hi = -1;
    for (std::int64_t i0 = 0; i0 < n; i0 += TL, ++tile) {
        const std::int64_t cnt = n - i0 < TL ? n - i0 : TL;
        while (end[c0] <= i0) ++c0;
        if (c1 < c0) c1 = c0;
        while (end[c1] <= i0 + cnt - 1) ++c1;
        std::int64_t lo, hi;
        window(c0, c1, lo, hi);
        flush_lo = lo < flush_lo ? lo : flush_lo;
        flush_hi = hi > flush_hi ? hi : flush_hi;

        V wt[U], valid[U], g[U], inv_s[U], big_l;
        load_tile<T>(ws + i0, cnt, wt, valid);
        tile_pass<T>(comp, lo, hi + 1, wt, valid, buf, sub, g, inv_s, big_l);
        add_to_f64(lsum, big_l);
        scale_and_check<T>(g, lam, not_finite);
        alignas(64) T gt[TL];
        for (int u = 0; u < U; ++u) store(gt + u * L, g[u]);
        for (std::int64_t t = 0; t < cnt; ++t) grad_w[idx[i0 + t]] = gt[t];
        if (gamma != nullptr) {
            for (std::int64_t t = 0; t < cnt; ++t) {
                const int u = static_cast<int>(t) / L, lane = static_cast<int>(t) % L;
                T* row = gamma + static_cast<std::int64_t>(idx[i0 + t]) * m;
                for (std::int64_t j = 0; j < m; ++j) row[j] = T(0);
                for (std::int64_t j = lo; j <= hi; ++j) {
                    const std::int64_t out = grp.perm == nullptr ? j : grp.perm[j];
                    row[out] = buf[(j - lo) * U + u][lane] * (inv_s[u][lane] * kGammaUnscale<T>);
                }
            }
        }
        if (tile + 1 == kSubTiles || i0 + TL >= n) {
            for (std::int64_t k0 = 0; k0 < 3 * m; k0 += m) {
                for (std::int64_t k = k0 + flush_lo; k <= k0 + flush_hi; ++k) {
                    acc[k] += fold_lanes<T>(sub[k]);
                    sub[k] = V{};
                }
            }
            flush_lo = m;
            flush_hi = -1;
            tile = -1;
        }
    }
    add_to_f64(check, not_finite);
    finish_partial<T, 1>(comp, lsum, check, acc, block_lo, block_hi, grp.perm, partial);
    return true;
}

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
