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
#pragma once

#include <cstdint>
#include <limits>

#include "softshare/types.hpp"
#include "softshare/vmath-inl.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/block-inl.hpp"
#endif

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {

// Pass 3 works with the responsibilities scaled by 2^kGammaScale<T> (and so
// grad_w and S0, S1, S2, scaled back once per tile and per block by exact
// powers of 2): a gamma_ij = e_ij / s_i with e_ij just above the smallest
// normal (exp2 flushes what is below) and s_i > 1 is subnormal, and so are
// its products, and on Intel cores every instruction with a subnormal operand
// or result takes a microcode assist of some hundred cycles: mixtures of
// narrow components, where many weights have such a far neighbour, ran 1.6x
// slower. Scaled, the same numbers are normal: the results are those of the
// unscaled arithmetic, bit for bit (more accurate where it was subnormal). A
// |grad_w| or sum beyond T's range over the scale (2^96 for float32) makes
// the block's result infinite, and the driver computes it again in float64.
template <class T>
constexpr T kGammaScale = sizeof(T) == 4 ? T(0x1p32) : T(0x1p256);
template <class T>
constexpr T kGammaUnscale = sizeof(T) == 4 ? T(0x1p-32) : T(0x1p-256);

// Tiles are kUnroll vectors (types.hpp): each component's terms for the
// kUnroll vectors are kUnroll independent dependency chains, computed in
// lockstep, which keep the FP pipes busy while one exp waits on its latency.

// One tile of weights wt (valid: 1 for a weight, 0 for a padded lane) against
// the components [j0, j1), all scaled by kGammaScale: its g = sum_j gamma_j z_j
// a_j (grad_w before lam and the unscaling), inv_s = valid kGammaScale / sum_j
// 2^(l_j - max), big_l = sum of the lanes' L (not scaled), and its S0, S1, S2
// terms added to sub (3 x M vectors: S0, S1, S2 partials, indexed
// by component). buf (2 x M x kUnroll vectors: scratch_buf_size) keeps, from
// its start, the log-terms and then the shifted exponentials (the
// responsibilities read them there), and with kKeepZ, from M x kUnroll
// vectors on, each component's z, so that pass 3 loads z instead of computing
// it again (the same expression: the same bits either way). TilePasses holds
// the three passes' per-component steps; tile_pass_z runs them one tile at a
// time, and process_block runs pass 3 of a tile together with pass 1 of the
// next (pipelined_tiles).
//
// Per weight, the result depends only on the weight and on [j0, j1): a
// component left out whose 2^(l_j - max) is exactly 0 (grouping.hpp) changes
// nothing, since the max is another component's, and adding an exact 0 to s
// or g is the identity.
template <class T, bool kKeepZ>
struct TilePasses {
    using V = Vec<T>;
    static constexpr int U = kUnroll;
    // The components' arrays (copied: the scratch's vectors may alias anything).
    const T *mu, *r, *r_lo, *c, *a;
    std::int64_t m;
    V* b;   // b[j * U + u]: component j's vector u (buf - j0 * U)
    V* zb;  // zb[j * U + u]: its z
    V* sub;

    TilePasses(const ComponentsView<T>& comp, std::int64_t j0, Vec<T>* buf, Vec<T>* sub_)
        : mu(comp.mu),
          r(comp.r),
          r_lo(comp.r_lo),
          c(comp.c),
          a(comp.a),
          m(comp.m),
          b(buf - j0 * U),
          zb(buf - j0 * U + comp.m * U),
          sub(sub_) {}

    // Pass 1, component j: log-terms in base 2, l = c - z^2 with z = (w - mu) r,
    // and their maximum. r_lo restores what rounding mu to T lost: where w is
    // near mu, w - mu[j] is exact (Sterbenz) and z = (w - mu[j]) r - mu_lo r.
    SOFTSHARE_INLINE void log_terms(std::int64_t j, const V (&wt)[U], V (&mx)[U]) const {
        const T mu_j = mu[j], r_j = r[j], rl_j = r_lo[j], c_j = c[j];
        for (int u = 0; u < U; ++u) {
            const V z = (wt[u] - mu_j) * r_j - rl_j;
            const V l = c_j - z * z;
            if constexpr (kKeepZ) zb[j * U + u] = z;
            b[j * U + u] = l;
            mx[u] = vmax<T>(mx[u], l);
        }
    }

    // Pass 2, component j: shifted exponentials and their sum (>= 1: the max
    // term is 1).
    SOFTSHARE_INLINE void exponentials(std::int64_t j, const V (&mx)[U], V (&s)[U]) const {
        V e[U];
        for (int u = 0; u < U; ++u) e[u] = b[j * U + u] - mx[u];
        exp2_neg_n<T, U>(e);
        for (int u = 0; u < U; ++u) {
            b[j * U + u] = e[u];
            s[u] += e[u];
        }
    }

    // Pass 3, component j: responsibilities, grad_w and the component sums in
    // units of z (w - mu = z / r: S1 and S2 are rescaled once per block), the
    // U vectors of each component summed before they meet the accumulators
    // (the first vector starts the sums: 0 + x would cost an addition). wt is
    // read only without kKeepZ.
    SOFTSHARE_INLINE void sums(std::int64_t j, const V (&wt)[U], const V (&inv_s)[U],
                               V (&g)[U]) const {
        const T a_j = a[j], mu_j = mu[j], r_j = r[j], rl_j = r_lo[j];
        const auto z_of = [&](int u) {
            if constexpr (kKeepZ) return zb[j * U + u];
            return V((wt[u] - mu_j) * r_j - rl_j);
        };
        const V gam0 = b[j * U] * inv_s[0];
        const V z0 = z_of(0);
        const V gz0 = gam0 * z0;
        g[0] += gz0 * a_j;  // gamma (w - mu) / sigma^2
        V s0 = gam0, s1 = gz0, s2 = gz0 * z0;
        for (int u = 1; u < U; ++u) {
            const V gam = b[j * U + u] * inv_s[u];
            const V z = z_of(u);
            const V gz = gam * z;
            g[u] += gz * a_j;
            s0 += gam;
            s1 += gz;
            s2 += gz * z;
        }
        sub[j] += s0;
        sub[m + j] += s1;
        sub[2 * m + j] += s2;
    }
};

template <class T>
SOFTSHARE_INLINE void start_max(Vec<T> (&mx)[kUnroll]) {
    for (int u = 0; u < kUnroll; ++u) mx[u] = splat(-std::numeric_limits<T>::infinity());
}

// Pass 1 of a tile on its own: its log-terms (and z) in buf, their maximum mx.
template <class T, bool kKeepZ>
SOFTSHARE_INLINE void log_terms_pass(const TilePasses<T, kKeepZ>& tp, std::int64_t j0,
                                     std::int64_t j1, const Vec<T> (&wt)[kUnroll],
                                     Vec<T> (&mx)[kUnroll]) {
    start_max<T>(mx);
    for (std::int64_t j = j0; j < j1; ++j) tp.log_terms(j, wt, mx);
}

// Between passes 2 and 3: inv_s and L = max + log(sum); masked lanes
// contribute nothing anywhere.
template <class T>
SOFTSHARE_INLINE void normalise(const Vec<T> (&valid)[kUnroll], const Vec<T> (&mx)[kUnroll],
                                const Vec<T> (&s)[kUnroll], Vec<T> (&inv_s)[kUnroll],
                                Vec<T>& big_l) {
    big_l = Vec<T>{};
    for (int u = 0; u < kUnroll; ++u) {
        inv_s[u] = valid[u] * kGammaScale<T> / s[u];
        big_l += valid[u] * (opaque(mx[u] * T(0.6931471805599453)) + log_ge1<T>(s[u]));
    }
}

// Pass 2 of a tile (its log-terms in buf, their maximum mx) and the step
// after it.
template <class T, bool kKeepZ>
SOFTSHARE_INLINE void exponentials_pass(const TilePasses<T, kKeepZ>& tp, std::int64_t j0,
                                        std::int64_t j1, const Vec<T> (&valid)[kUnroll],
                                        const Vec<T> (&mx)[kUnroll], Vec<T> (&inv_s)[kUnroll],
                                        Vec<T>& big_l) {
    Vec<T> s[kUnroll];
    for (int u = 0; u < kUnroll; ++u) s[u] = Vec<T>{};
    for (std::int64_t j = j0; j < j1; ++j) tp.exponentials(j, mx, s);
    normalise<T>(valid, mx, s, inv_s, big_l);
}

template <class T, bool kKeepZ>
SOFTSHARE_INLINE void tile_pass_z(const ComponentsView<T>& comp, std::int64_t j0, std::int64_t j1,
                                  const Vec<T> (&wt)[kUnroll], const Vec<T> (&valid)[kUnroll],
                                  Vec<T>* buf, Vec<T>* sub, Vec<T> (&g)[kUnroll],
                                  Vec<T> (&inv_s)[kUnroll], Vec<T>& big_l) {
    const TilePasses<T, kKeepZ> tp(comp, j0, buf, sub);
    Vec<T> mx[kUnroll];
    log_terms_pass<T, kKeepZ>(tp, j0, j1, wt, mx);
    exponentials_pass<T, kKeepZ>(tp, j0, j1, valid, mx, inv_s, big_l);
    for (int u = 0; u < kUnroll; ++u) g[u] = Vec<T>{};
    for (std::int64_t j = j0; j < j1; ++j) tp.sums(j, wt, inv_s, g);
}

// Up to kKeepZMax components a tile keeps its z for pass 3 (two vector
// operations fewer per pair); beyond, its log-terms and z together leave L1
// (M = 256: 128 KB for float32 on AVX-512, 19 % slower than computing z
// again), and pass 3 computes z again.
constexpr std::int64_t kKeepZMax = 64;

template <class T>
SOFTSHARE_INLINE void tile_pass(const ComponentsView<T>& comp, std::int64_t j0, std::int64_t j1,
                                const Vec<T> (&wt)[kUnroll], const Vec<T> (&valid)[kUnroll],
                                Vec<T>* buf, Vec<T>* sub, Vec<T> (&g)[kUnroll],
                                Vec<T> (&inv_s)[kUnroll], Vec<T>& big_l) {
    if (j1 - j0 <= kKeepZMax) {
        tile_pass_z<T, true>(comp, j0, j1, wt, valid, buf, sub, g, inv_s, big_l);
    } else {
        tile_pass_z<T, false>(comp, j0, j1, wt, valid, buf, sub, g, inv_s, big_l);
    }
}

// The block's partial = [sum L, check, S0(M), S1(M), S2(M)]: sum L and check
// from their lanes, folded in a fixed order; S0, S1, S2 from acc, 3 x M
// per-lane accumulators (lanes = L) or 3 x M sums (lanes = 1), for the
// components [lo, hi] (the others 0); component j's sums go to perm[j] (j
// without perm), and acc is then scratch.
template <class T, int lanes>
SOFTSHARE_INLINE void finish_partial(const ComponentsView<T>& comp, const double* lsum,
                                     const double* check, double* acc, std::int64_t lo,
                                     std::int64_t hi, const std::int64_t* perm, double* partial) {
    constexpr int L = Simd<T>::kLanes;
    const std::int64_t m = comp.m;
    double total_l = 0.0, total_check = 0.0;
    for (int t = 0; t < L; ++t) {
        total_l += lsum[t];
        total_check += check[t];
    }
    partial[0] = total_l;
    partial[1] = total_check;
    double* sums = partial + 2;
    if (lo > 0 || hi < m - 1) {
        for (std::int64_t k = 0; k < 3 * m; ++k) sums[k] = 0.0;
    }
    for (std::int64_t k0 = 0; k0 < 3 * m; k0 += m) {
        for (std::int64_t k = k0 + lo; k <= k0 + hi; ++k) {
            const double* in = acc + k * lanes;
            double sum = 0.0;
            for (int t = 0; t < lanes; ++t) sum += in[t];
            sums[k] = sum;
        }
    }
    // From units of z back to w - mu: S1 / r, S2 / r^2 (r as rounded to T), and
    // without tile_pass's scale (exact in float64).
    const double unscale = static_cast<double>(kGammaUnscale<T>);
    for (std::int64_t j = lo; j <= hi; ++j) {
        const double r_j = static_cast<double>(comp.r[j]);
        sums[j] *= unscale;
        sums[m + j] = sums[m + j] / r_j * unscale;
        sums[2 * m + j] = sums[2 * m + j] / (r_j * r_j) * unscale;
    }
    if (perm != nullptr) {
        for (std::int64_t k = 0; k < 3 * m; ++k) acc[k] = sums[k];
        for (std::int64_t k0 = 0; k0 < 3 * m; k0 += m) {
            for (std::int64_t j = 0; j < m; ++j) sums[k0 + perm[j]] = acc[k0 + j];
        }
    }
}

// The sum of v's lanes in float64, pairwise in a fixed order.
template <class T>
SOFTSHARE_INLINE double fold_lanes(Vec<T> v) {
    constexpr int L = Simd<T>::kLanes;
    alignas(64) double lanes[L] = {};
    add_to_f64(lanes, v);
    for (int width = L / 2; width > 0; width /= 2) {
        for (int t = 0; t < width; ++t) lanes[t] += lanes[t + width];
    }
    return lanes[0];
}

// Loads one tile of weights from p (cnt of them; a short tile is padded with
// p[0], masked out by valid).
template <class T>
SOFTSHARE_INLINE void load_tile(const T* p, std::int64_t cnt, Vec<T> (&wt)[kUnroll],
                                Vec<T> (&valid)[kUnroll]) {
    constexpr int L = Simd<T>::kLanes;
    constexpr int TL = kUnroll * L;
    if (cnt == TL) {
        for (int u = 0; u < kUnroll; ++u) {
            wt[u] = load(p + u * L);
            valid[u] = splat(T(1));
        }
        return;
    }
    alignas(64) T wpad[TL], vpad[TL];
    for (int t = 0; t < TL; ++t) {
        wpad[t] = t < cnt ? p[t] : p[0];
        vpad[t] = t < cnt ? T(1) : T(0);
    }
    for (int u = 0; u < kUnroll; ++u) {
        wt[u] = load(wpad + u * L);
        valid[u] = load(vpad + u * L);
    }
}

// g = g * lam / kGammaScale: one rounding where the result is subnormal too
// (unscaling first rounded into the subnormal range and lam then doubled that
// error: a float32 grad_w of -7.4e-44 came out one subnormal step off; where the
// result is normal the two orders give the same bits), and bad += (NaN iff some
// lane's g is NaN or inf, which a NaN or infinite weight always makes it, and
// so does a g beyond T's range over the scale). Unmasked: a padded lane copies
// a weight of its tile and is not finite only if that weight is not (and
// valid[] stays out of pass 3's registers). bad holds only zeros and NaNs, so
// it stays in T for the whole block: NaN iff some g of the block was not finite.
template <class T>
SOFTSHARE_INLINE void scale_and_check(Vec<T> (&g)[kUnroll], T lam, Vec<T>& bad) {
    for (int u = 0; u < kUnroll; ++u) {
        g[u] = g[u] * lam * kGammaUnscale<T>;
        bad += g[u] - g[u];
    }
}

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
