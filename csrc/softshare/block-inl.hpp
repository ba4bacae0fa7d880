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

// Tiles are kUnroll vectors (types.hpp): each component's terms for the
// kUnroll vectors are kUnroll independent dependency chains, computed in
// lockstep, which keep the FP pipes busy while one exp waits on its latency.

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
    const T* mu = comp.mu;
    const T* r = comp.r;
    const T* r_lo = comp.r_lo;
    const T* c = comp.c;
    const T* a = comp.a;
    V* buf = reinterpret_cast<V*>(scratch.buf);  // m x U vectors: this tile's l, then e
    V* sub = reinterpret_cast<V*>(scratch.sub);  // 3 x m vectors: S0, S1, S2 partials
    double* acc = scratch.acc;                   // 3 x m x L float64
    V* sub0 = sub;
    V* sub1 = sub + m;
    V* sub2 = sub + 2 * m;
    for (std::int64_t k = 0; k < 3 * m; ++k) sub[k] = V{};
    for (std::int64_t k = 0; k < 3 * m * L; ++k) acc[k] = 0.0;

    alignas(64) double lsum[L] = {};
    alignas(64) double check[L] = {};

    int tile = 0;
    for (std::int64_t i0 = 0; i0 < n; i0 += TL, ++tile) {
        const std::int64_t cnt = n - i0 < TL ? n - i0 : TL;
        V wt[U], valid[U];
        if (cnt == TL) {
            for (int u = 0; u < U; ++u) {
                wt[u] = load(w + i0 + u * L);
                valid[u] = splat(T(1));
            }
        } else {
            // Tail tile: pad with the tile's first weight, masked out below.
            alignas(64) T wpad[TL], vpad[TL];
            for (int t = 0; t < TL; ++t) {
                wpad[t] = t < cnt ? w[i0 + t] : w[i0];
                vpad[t] = t < cnt ? T(1) : T(0);
            }
            for (int u = 0; u < U; ++u) {
                wt[u] = load(wpad + u * L);
                valid[u] = load(vpad + u * L);
            }
        }

        // Pass 1: log-terms in base 2, l = c - z^2 with z = (w - mu) r, and their
        // maximum. r_lo restores what rounding mu to T lost: where w is near mu,
        // w - mu[j] is exact (Sterbenz) and z = (w - mu[j]) r - mu_lo r.
        V mx[U];
        for (int u = 0; u < U; ++u) mx[u] = splat(-std::numeric_limits<T>::infinity());
        for (std::int64_t j = 0; j < m; ++j) {
            const T mu_j = mu[j], r_j = r[j], rl_j = r_lo[j], c_j = c[j];
            for (int u = 0; u < U; ++u) {
                const V z = (wt[u] - mu_j) * r_j - rl_j;
                const V l = c_j - z * z;
                buf[j * U + u] = l;
                mx[u] = vmax<T>(mx[u], l);
            }
        }

        // Pass 2: shifted exponentials and their sum (>= 1: the max term is 1).
        V s[U];
        for (int u = 0; u < U; ++u) s[u] = V{};
        for (std::int64_t j = 0; j < m; ++j) {
            V e[U];
            for (int u = 0; u < U; ++u) e[u] = buf[j * U + u] - mx[u];
            exp2_neg_n<T, U>(e);
            for (int u = 0; u < U; ++u) {
                buf[j * U + u] = e[u];
                s[u] += e[u];
            }
        }

        // L = max + log(sum); masked lanes contribute nothing anywhere.
        V inv_s[U];
        V big_l = V{};
        for (int u = 0; u < U; ++u) {
            inv_s[u] = valid[u] / s[u];
            big_l += valid[u] * (mx[u] * T(0.6931471805599453) + log_ge1<T>(s[u]));
        }
        add_to_f64(lsum, big_l);

        // Pass 3: responsibilities, grad_w and the component sums in units of z
        // (w - mu = z / r: S1 and S2 are rescaled once per block), the U vectors
        // of each component summed before they meet the accumulators.
        V g[U];
        for (int u = 0; u < U; ++u) g[u] = V{};
        for (std::int64_t j = 0; j < m; ++j) {
            const T a_j = a[j], mu_j = mu[j], r_j = r[j], rl_j = r_lo[j];
            V s0 = V{}, s1 = V{}, s2 = V{};
            for (int u = 0; u < U; ++u) {
                const V gam = buf[j * U + u] * inv_s[u];
                const V z = (wt[u] - mu_j) * r_j - rl_j;
                const V gz = gam * z;
                g[u] += gz * a_j;  // gamma (w - mu) / sigma^2
                s0 += gam;
                s1 += gz;
                s2 += gz * z;
            }
            sub0[j] += s0;
            sub1[j] += s1;
            sub2[j] += s2;
        }

        // grad_w, and the check: NaN iff some grad_w of the tile is NaN or inf,
        // which a NaN or infinite weight always makes it. Unmasked: a padded
        // lane copies the tile's first weight and is not finite only if that
        // weight's lane is not (and valid[] stays out of pass 3's registers).
        V bad = V{};
        for (int u = 0; u < U; ++u) {
            g[u] *= lam;
            bad += g[u] - g[u];
        }
        add_to_f64(check, bad);
        if (cnt == TL) {
            for (int u = 0; u < U; ++u) store(grad_w + i0 + u * L, g[u]);
        } else {
            alignas(64) T gpad[TL];
            for (int u = 0; u < U; ++u) store(gpad + u * L, g[u]);
            for (std::int64_t t = 0; t < cnt; ++t) grad_w[i0 + t] = gpad[t];
        }
        if (gamma != nullptr) {
            for (std::int64_t t = 0; t < cnt; ++t) {
                const int u = static_cast<int>(t) / L, lane = static_cast<int>(t) % L;
                T* row = gamma + (i0 + t) * m;
                for (std::int64_t j = 0; j < m; ++j) row[j] = buf[j * U + u][lane] * inv_s[u][lane];
            }
        }
        if (tile + 1 == kSubTiles || i0 + TL >= n) {
            for (std::int64_t k = 0; k < 3 * m; ++k) {
                add_to_f64(acc + k * L, sub[k]);
                sub[k] = V{};
            }
            tile = -1;
        }
    }

    // Fold the lanes in a fixed order: partial = [sum L, check, S0(M), S1(M), S2(M)].
    double total_l = 0.0, total_check = 0.0;
    for (int t = 0; t < L; ++t) {
        total_l += lsum[t];
        total_check += check[t];
    }
    partial[0] = total_l;
    partial[1] = total_check;
    for (std::int64_t k = 0; k < 3 * m; ++k) {
        const double* lanes = acc + k * L;
        double sum = 0.0;
        for (int t = 0; t < L; ++t) sum += lanes[t];
        partial[2 + k] = sum;
    }
    // From units of z back to w - mu: S1 / r, S2 / r^2 (r as rounded to T).
    for (std::int64_t j = 0; j < m; ++j) {
        const double r_j = static_cast<double>(r[j]);
        partial[2 + m + j] /= r_j;
        partial[2 + 2 * m + j] /= r_j * r_j;
    }
}

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
