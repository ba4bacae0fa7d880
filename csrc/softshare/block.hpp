// The fused per-block pass of the soft weight-sharing penalty (SPEC.md).
//
// Python-free. `process_block` handles one block of consecutive weights in
// tiles of kLanes weights (SIMD lanes = weights, the M components in an inner
// loop). For every weight it computes the M log-terms
//     l_j = c_j - 0.5 * ((w - mu_j) / sigma_j)^2,
//     c_j = ln pi_j - 0.5 ln(2 pi) - 0.5 log_var_j,
// their log-sum-exp L (max subtracted), the responsibilities gamma_j, the
// weight gradient lam * sum_j gamma_j (w - mu_j) / sigma_j^2, and adds into
// per-lane float64 accumulators the component sums S0, S1, S2 and sum L.
// Nothing of size N x M is stored unless responsibilities are asked for.
//
// This header is compiled once per instruction set (see dispatch.hpp): it
// must only be included inside a translation unit that first defines
// SOFTSHARE_ISA_NS, the namespace the instantiations live in.
#pragma once

#include <cstdint>
#include <limits>

#include "softshare/types.hpp"
#include "softshare/vmath.hpp"

#ifndef SOFTSHARE_ISA_NS
#error "define SOFTSHARE_ISA_NS before including softshare/block.hpp"
#endif

#if defined(_OPENMP) || defined(__GNUC__) || defined(__clang__)
#define SOFTSHARE_SIMD _Pragma("omp simd")
#else
#define SOFTSHARE_SIMD
#endif

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {

template <class T>
void process_block(const ComponentsView<T>& comp, const T* w, T* grad_w, T* gamma,
                   std::int64_t n, T lam, double* partial, const Scratch<T>& scratch) {
    const std::int64_t m = comp.m;
    const T* mu = comp.mu;
    const T* mu_lo = comp.mu_lo;
    const T* inv_sigma = comp.inv_sigma;
    const T* c = comp.c;
    T* buf = scratch.buf;
    T* sub0 = scratch.sub;
    T* sub1 = sub0 + m * kLanes;
    T* sub2 = sub1 + m * kLanes;
    double* acc0 = scratch.acc;
    const std::int64_t n_acc = 3 * m * kLanes;
    for (std::int64_t k = 0; k < n_acc; ++k) {
        sub0[k] = T(0);
        acc0[k] = 0.0;
    }

    alignas(64) double lsum[kLanes] = {};
    alignas(64) double check[kLanes] = {};
    alignas(64) T wt[kLanes];
    alignas(64) T mx[kLanes];
    alignas(64) T s[kLanes];
    alignas(64) T inv_s[kLanes];
    alignas(64) T valid[kLanes];
    alignas(64) T g[kLanes];

    int tile = 0;
    for (std::int64_t i0 = 0; i0 < n; i0 += kLanes, ++tile) {
        const std::int64_t cnt = n - i0 < kLanes ? n - i0 : kLanes;
        if (cnt == kLanes) {
            SOFTSHARE_SIMD
            for (int t = 0; t < kLanes; ++t) {
                wt[t] = w[i0 + t];
                valid[t] = T(1);
            }
        } else {
            // Tail tile: pad with the block's first weight, masked out below.
            for (int t = 0; t < kLanes; ++t) {
                wt[t] = t < cnt ? w[i0 + t] : w[i0];
                valid[t] = t < cnt ? T(1) : T(0);
            }
        }

        // Pass 1: log-terms and their lane-wise maximum.
        SOFTSHARE_SIMD
        for (int t = 0; t < kLanes; ++t) mx[t] = -std::numeric_limits<T>::infinity();
        for (std::int64_t j = 0; j < m; ++j) {
            const T mu_j = mu[j], lo_j = mu_lo[j], is_j = inv_sigma[j], c_j = c[j];
            T* b = buf + j * kLanes;
            SOFTSHARE_SIMD
            for (int t = 0; t < kLanes; ++t) {
                const T z = ((wt[t] - mu_j) - lo_j) * is_j;
                const T l = c_j - T(0.5) * z * z;
                b[t] = l;
                mx[t] = l > mx[t] ? l : mx[t];
            }
        }

        // Pass 2: shifted exponentials and their sum (>= 1: the max term is 1).
        SOFTSHARE_SIMD
        for (int t = 0; t < kLanes; ++t) s[t] = T(0);
        for (std::int64_t j = 0; j < m; ++j) {
            T* b = buf + j * kLanes;
            SOFTSHARE_SIMD
            for (int t = 0; t < kLanes; ++t) {
                const T e = vmath::exp_neg(b[t] - mx[t]);
                b[t] = e;
                s[t] += e;
            }
        }

        // L = max + log(sum); masked lanes contribute nothing anywhere.
        SOFTSHARE_SIMD
        for (int t = 0; t < kLanes; ++t) {
            inv_s[t] = valid[t] / s[t];
            const T big_l = mx[t] + vmath::log_ge1(s[t]);
            lsum[t] += static_cast<double>(valid[t] * big_l);
            // w - w is 0 for finite w and NaN for NaN/inf: flags bad input.
            check[t] += static_cast<double>(valid[t] * (wt[t] - wt[t]));
            g[t] = T(0);
        }

        // Pass 3: responsibilities, grad_w and the component sums.
        for (std::int64_t j = 0; j < m; ++j) {
            const T mu_j = mu[j], lo_j = mu_lo[j], is_j = inv_sigma[j];
            const T* b = buf + j * kLanes;
            T* a0 = sub0 + j * kLanes;
            T* a1 = sub1 + j * kLanes;
            T* a2 = sub2 + j * kLanes;
            SOFTSHARE_SIMD
            for (int t = 0; t < kLanes; ++t) {
                const T gam = b[t] * inv_s[t];
                // Where w is near mu_j, w - mu_j is exact (Sterbenz) and the low
                // part restores what rounding mu_j to T lost.
                const T d = (wt[t] - mu_j) - lo_j;
                const T gd = gam * d;
                // (gd * is) * is rather than gd * is^2: finite whenever gd is.
                g[t] += (gd * is_j) * is_j;
                a0[t] += gam;
                a1[t] += gd;
                a2[t] += gd * d;
            }
        }
        if (tile + 1 == kSubTiles || i0 + kLanes >= n) {
            SOFTSHARE_SIMD
            for (std::int64_t k = 0; k < n_acc; ++k) {
                acc0[k] += static_cast<double>(sub0[k]);
                sub0[k] = T(0);
            }
            tile = -1;
        }

        for (std::int64_t t = 0; t < cnt; ++t) grad_w[i0 + t] = lam * g[t];
        if (gamma != nullptr) {
            for (std::int64_t t = 0; t < cnt; ++t) {
                T* row = gamma + (i0 + t) * m;
                for (std::int64_t j = 0; j < m; ++j) row[j] = buf[j * kLanes + t] * inv_s[t];
            }
        }
    }

    // Fold the lanes in a fixed order: partial = [sum L, check, S0(M), S1(M), S2(M)].
    double total_l = 0.0, total_check = 0.0;
    for (int t = 0; t < kLanes; ++t) {
        total_l += lsum[t];
        total_check += check[t];
    }
    partial[0] = total_l;
    partial[1] = total_check;
    for (std::int64_t k = 0; k < 3 * m; ++k) {
        const double* a = acc0 + k * kLanes;
        double sum = 0.0;
        for (int t = 0; t < kLanes; ++t) sum += a[t];
        partial[2 + k] = sum;
    }
}

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
