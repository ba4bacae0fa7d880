// The slow path of a block: scalar, float64 throughout, for the blocks whose
// SIMD arithmetic (block-inl.hpp) cannot represent them (driver.hpp computes
// such a block again here).
//
// Python-free; compiled with baseline flags only (included by runner.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {
namespace detail {

inline bool all_finite(const double* p, std::int64_t n) {
    for (std::int64_t k = 0; k < n; ++k) {
        if (!std::isfinite(p[k])) return false;
    }
    return true;
}

// The slow path of a block the SIMD kernels could not represent: scalar,
// float64 throughout, l_ij in natural log (so it overflows only where l_ij
// itself does), components with gamma_ij = 0 skipped (no 0 * inf), S1 and S2
// summed in units of w - mu. Every output is its correctly rounded value, +-inf
// for a gradient or a sum beyond the range of its type, never NaN, except for a
// weight that is not finite (check NaN: python/softshare names it) or whose
// log-density is not representable (sum L = -inf: "the penalty overflowed").
template <class T>
void robust_block(const ComponentsView<double>& comp, const T* w, T* grad_w, T* gamma,
                  std::int64_t n, double lam, double* partial) {
    const std::int64_t m = comp.m;
    const double ln2 = 0.6931471805599453;
    const double sqrt_ln2 = 0.8325546111576977;
    const double inf = std::numeric_limits<double>::infinity();
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(partial, partial + partial_size(m), 0.0);
    double* s0 = partial + 2;
    double* s1 = s0 + m;
    double* s2 = s1 + m;
    // l_j = c_j ln 2 - ((w - mu_j) / (sqrt(2) sigma_j))^2, -inf where it overflows.
    const auto log_term = [&](double wi, std::int64_t j) {
        const double q = (wi - comp.mu[j]) * (comp.r[j] * sqrt_ln2);
        return comp.c[j] * ln2 - q * q;
    };
    for (std::int64_t i = 0; i < n; ++i) {
        const double wi = static_cast<double>(w[i]);
        T* row = gamma == nullptr ? nullptr : gamma + i * m;
        double mx = -inf;
        for (std::int64_t j = 0; j < m; ++j) mx = std::max(mx, log_term(wi, j));
        if (!std::isfinite(wi) || !(mx > -inf)) {
            partial[0] += std::isfinite(wi) ? -inf : nan;
            partial[1] = nan;
            grad_w[i] = static_cast<T>(nan);
            if (row != nullptr) std::fill(row, row + m, static_cast<T>(nan));
            continue;
        }
        double sum = 0.0;
        for (std::int64_t j = 0; j < m; ++j) sum += std::exp(log_term(wi, j) - mx);
        partial[0] += mx + std::log(sum);
        // d(Omega)/dw = sum_j gamma_j (w - mu_j) / sigma_j^2 as sum_j (gamma_j z_j) a_j;
        // where its terms overflow (to inf - inf = NaN, or to inf), again with a
        // scaled by 2^-600, the sum scaled back after lam: inf only if it is.
        double g = 0.0, g_scaled = 0.0;
        for (std::int64_t j = 0; j < m; ++j) {
            const double gam = std::exp(log_term(wi, j) - mx) / sum;
            if (row != nullptr) row[j] = static_cast<T>(gam);
            if (gam == 0.0) continue;
            const double d = wi - comp.mu[j];  // finite: l_j > -inf
            const double gz = gam * (d * comp.r[j]);
            g += gz * comp.a[j];
            g_scaled += gz * std::ldexp(comp.a[j], -600);
            s0[j] += gam;
            s1[j] += gam * d;
            s2[j] += gam * d * d;
        }
        const double grad = std::isfinite(g) ? g * lam : std::ldexp(g_scaled * lam, 600);
        grad_w[i] = static_cast<T>(grad);
    }
}

}  // namespace detail
}  // namespace kernel
}  // namespace softshare
