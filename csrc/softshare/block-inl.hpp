// The fused per-block pass of the soft weight-sharing penalty (docs/math.md).
// Per-target code (-inl): included once per target, by kernel_isa.cpp only.
//
// Python-free. `process_block` handles one block of consecutive weights in
// tiles of kUnroll SIMD vectors of weights (lanes = weights; the M components
// in an inner loop). For every weight it computes the M log-terms in base 2,
//     l_j = log2(e) (ln pi_j - 0.5 ln(2 pi) - 0.5 log_var_j) - z_j^2,
//     z_j = (w - mu_j) r_j,   r_j = sqrt(log2(e) / 2) / sigma_j,
// their log-sum-exp L (max subtracted), the responsibilities gamma_j, the
// weight gradient lam * sum_j gamma_j (w - mu_j) / sigma_j^2, and adds the
// component sums S0, S1, S2 and sum L into per-lane float64 accumulators (sum L
// every tile; S0, S1, S2 every kSubTiles tiles, from partial sums in the
// weights' precision).
// Nothing of size N x M is stored unless responsibilities are asked for.
//
// kernel_isa.cpp defines SOFTSHARE_ISA_NS, the namespace the instantiations
// live in, before including this header.
//
// The steps of one tile are in tile-inl.hpp; the grouped kernel, for narrow
// mixtures of many components, in grouped-inl.hpp.
#pragma once

#include <cstdint>

#include "softshare/tile-inl.hpp"
#include "softshare/types.hpp"
#include "softshare/vmath-inl.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/block-inl.hpp"
#endif

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {

// Asks for the weights and the grad_w lines kPrefetchBytes ahead of a tile (a
// prefetch never faults, so past the end of the arrays it is merely dropped).
// The hardware prefetchers, seeing one tile's lines every few hundred cycles,
// left many to arrive on demand: over arrays beyond L2 the pass ran some 10 %
// slower per block than over one cached block; with this, 2-8 % faster at
// N = 1e6 and 1e7 (most at small M).
constexpr std::uintptr_t kPrefetchBytes = 2048;

template <class T>
SOFTSHARE_INLINE void prefetch_ahead(const T* w, T* grad_w) {
    constexpr std::uintptr_t kTileBytes = kUnroll * Simd<T>::kLanes * sizeof(T);
    const std::uintptr_t w_at = reinterpret_cast<std::uintptr_t>(w) + kPrefetchBytes;
    const std::uintptr_t g_at = reinterpret_cast<std::uintptr_t>(grad_w) + kPrefetchBytes;
    for (std::uintptr_t k = 0; k < kTileBytes; k += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(w_at + k), 0, 3);
        __builtin_prefetch(reinterpret_cast<const void*>(g_at + k), 1, 3);  // for writing
    }
}

// After a tile's passes: its sum L into lsum, grad_w (g scaled, checked:
// scale_and_check) stored for its cnt weights at grad_w, and every kSubTiles
// tiles (tiles counts them since the last flush) and after the block's last
// tile the S0, S1, S2 partials added to the float64 accumulators acc
// (3 x M x L) and restarted.
template <class T>
SOFTSHARE_INLINE void finish_tile(Vec<T> (&g)[kUnroll], const Vec<T>& big_l, T lam, T* grad_w,
                                  std::int64_t cnt, bool last, int& tiles, std::int64_t m,
                                  Vec<T>* sub, double* acc, double* lsum, Vec<T>& not_finite) {
    constexpr int L = Simd<T>::kLanes;
    constexpr int TL = kUnroll * L;
    add_to_f64(lsum, big_l);
    scale_and_check<T>(g, lam, not_finite);
    if (cnt == TL) {
        for (int u = 0; u < kUnroll; ++u) store(grad_w + u * L, g[u]);
    } else {
        alignas(64) T gpad[TL];
        for (int u = 0; u < kUnroll; ++u) store(gpad + u * L, g[u]);
        for (std::int64_t t = 0; t < cnt; ++t) grad_w[t] = gpad[t];
    }
    if (++tiles == kSubTiles || last) {
        for (std::int64_t k = 0; k < 3 * m; ++k) {
            add_to_f64(acc + k * L, sub[k]);
            sub[k] = Vec<T>{};
        }
        tiles = 0;
    }
}

// process_block's tiles when pass 3 keeps z (M <= kKeepZMax) and no
// responsibilities are asked for, each component's pass 3 for tile t and pass
// 1 for tile t + 1 in one loop iteration: pass 3 reads the component's e and z
// of tile t from buf, then pass 1 writes its l and z of tile t + 1 in their
// place. The arithmetic of every weight is that of tile_pass_z, in the same
// order: the same bits. Passes 1 and 2, and 2 and 3, of one tile are serial
// (the maximum, then the sum, of all M terms come first): a tile at a time,
// each tile's pass 3 waits for its last exponential, division and log with
// the vector pipes mostly idle, and pass 1 stores all its terms at once
// (8 of the 15 vector stores per component and tile, at most one a cycle).
// Here pass 1's independent work fills that wait and its stores spread over
// the loop: AVX-512 M = 16 went from 0.86-0.90 to 0.91-0.97 pairs per cycle
// per core end to end; AVX2 and baseline no slower.
template <class T>
SOFTSHARE_INLINE void pipelined_tiles(const ComponentsView<T>& comp, const T* w, T* grad_w,
                                      std::int64_t n, T lam, Vec<T>* buf, Vec<T>* sub, double* acc,
                                      double* lsum, Vec<T>& not_finite) {
    using V = Vec<T>;
    constexpr int U = kUnroll;
    constexpr int TL = U * Simd<T>::kLanes;
    const std::int64_t m = comp.m;
    const TilePasses<T, true> tp(comp, 0, buf, sub);
    V wt[U], valid[U], mx[U];
    prefetch_ahead<T>(w, grad_w);
    load_tile<T>(w, n < TL ? n : TL, wt, valid);
    log_terms_pass<T, true>(tp, 0, m, wt, mx);
    int tiles = 0;
    for (std::int64_t i0 = 0; i0 < n; i0 += TL) {
        const std::int64_t cnt = n - i0 < TL ? n - i0 : TL;
        const std::int64_t next = i0 + TL;
        V inv_s[U], big_l, g[U];
        exponentials_pass<T, true>(tp, 0, m, valid, mx, inv_s, big_l);
        for (int u = 0; u < U; ++u) g[u] = V{};
        if (next < n) {
            prefetch_ahead<T>(w + next, grad_w + next);
            load_tile<T>(w + next, n - next < TL ? n - next : TL, wt, valid);
            start_max<T>(mx);
            for (std::int64_t j = 0; j < m; ++j) {
                tp.sums(j, wt, inv_s, g);  // tile i0 (z from buf: wt unused)
                tp.log_terms(j, wt, mx);   // tile next
            }
        } else {
            for (std::int64_t j = 0; j < m; ++j) tp.sums(j, wt, inv_s, g);
        }
        finish_tile<T>(g, big_l, lam, grad_w + i0, cnt, next >= n, tiles, m, sub, acc, lsum,
                       not_finite);
    }
}

template <class T>
void process_block(const ComponentsView<T>& comp, const T* w, T* grad_w, T* gamma, std::int64_t n,
                   T lam, double* partial, const Scratch<T>& scratch) {
    using V = Vec<T>;
    constexpr int L = Simd<T>::kLanes;
    constexpr int U = kUnroll;
    constexpr int TL = U * L;  // weights per tile
    static_assert(kBlockSize % TL == 0, "blocks hold whole tiles");
    static_assert(TL <= kMaxTileLanes, "tiles hold at most kMaxTileLanes weights");
    const std::int64_t m = comp.m;
    V* buf = reinterpret_cast<V*>(scratch.buf);  // m x U vectors: this tile's l, then e
    V* sub = reinterpret_cast<V*>(scratch.sub);  // 3 x m vectors: S0, S1, S2 partials
    double* acc = scratch.acc;                   // 3 x m x L float64
    for (std::int64_t k = 0; k < 3 * m; ++k) sub[k] = V{};
    for (std::int64_t k = 0; k < 3 * m * L; ++k) acc[k] = 0.0;

    alignas(64) double lsum[L] = {};
    alignas(64) double check[L] = {};
    V not_finite = V{};  // scale_and_check's NaN flag

    if (gamma == nullptr && m <= kKeepZMax) {
        pipelined_tiles<T>(comp, w, grad_w, n, lam, buf, sub, acc, lsum, not_finite);
    } else {
        int tiles = 0;
        for (std::int64_t i0 = 0; i0 < n; i0 += TL) {
            const std::int64_t cnt = n - i0 < TL ? n - i0 : TL;
            V wt[U], valid[U], g[U], inv_s[U], big_l;
            prefetch_ahead<T>(w + i0, grad_w + i0);
            load_tile<T>(w + i0, cnt, wt, valid);
            tile_pass<T>(comp, 0, m, wt, valid, buf, sub, g, inv_s, big_l);
            if (gamma != nullptr) {
                for (std::int64_t t = 0; t < cnt; ++t) {
                    const int u = static_cast<int>(t) / L, lane = static_cast<int>(t) % L;
                    T* row = gamma + (i0 + t) * m;
                    const T inv = inv_s[u][lane] * kGammaUnscale<T>;  // 1 / s, exactly
                    for (std::int64_t j = 0; j < m; ++j) row[j] = buf[j * U + u][lane] * inv;
                }
            }
            finish_tile<T>(g, big_l, lam, grad_w + i0, cnt, i0 + TL >= n, tiles, m, sub, acc, lsum,
                           not_finite);
        }
    }
    add_to_f64(check, not_finite);
    finish_partial<T, L>(comp, lsum, check, acc, 0, m - 1, nullptr, partial);
}

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
