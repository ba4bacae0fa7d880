// One tile's three passes and a block's finished partial sums, shared by both block kernels.
// Per-target code (-inl): included once per target, through block-inl.hpp and
// grouped-inl.hpp, by kernel_isa.cpp only.
//
// Python-free. A tile is kUnroll SIMD vectors of weights (types.hpp) against a
// run of components [j0, j1): pass 1 the log-terms and their maximum, pass 2
// the shifted exponentials and their sum, pass 3 the responsibilities, grad_w
// and the component sums (the formulas: block-inl.hpp, docs/math.md). The
// plain kernel (process_block, block-inl.hpp) runs every component, the
// grouped one (process_block_grouped, grouped-inl.hpp) a window of them.
//
// kernel_isa.cpp defines SOFTSHARE_ISA_NS, the namespace the instantiations
// live in, before including this header.
#pragma once

#include <cstdint>
#include <limits>

#include "softshare/types.hpp"
#include "softshare/vmath-inl.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/tile-inl.hpp"
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

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
