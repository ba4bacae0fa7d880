// The mixture's constants for the kernels: computed once per call in float64, rounded to T.
//
// Python-free; compiled with baseline flags only (included through driver.hpp
// by the bindings and jax_ffi.cpp, never by kernel_isa.cpp). MixtureF64 holds
// what both precisions and the mixture gradients (gradients.hpp) share;
// Components<T> rounds it to the kernels' constants (ComponentsView, types.hpp)
// and says whether T holds them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <vector>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// What Components<T> needs of the mixture in float64, computed once per call
// for both precisions (the libm calls: M exp for ln pi and two per component
// for sigma): ln pi_j and, per component, exp(-log_var_j / 2) and
// exp(-log_var_j). top and log_sum (ln sum_j exp(logit_j - top)) are also
// those of mixture_gradients (gradients.hpp), which takes them from here.
struct MixtureF64 {
    MixtureF64(const double* mu_in, const double* log_var_in, const double* logit_in,
               std::int64_t m_in)
        : mu(mu_in),
          log_var(log_var_in),
          logit(logit_in),
          m(m_in),
          data(static_cast<std::size_t>(3 * m_in)) {
        top = logit[0];
        for (std::int64_t j = 1; j < m; ++j) top = logit[j] > top ? logit[j] : top;
        double sum = 0.0;
        for (std::int64_t j = 0; j < m; ++j) sum += std::exp(logit[j] - top);
        log_sum = std::log(sum);
        const double log_norm = top + log_sum;
        // ln pi_j = logit_j - log_norm, but top + log_sum drops log_sum below half
        // the ulp of top: past |top| = 64 (ulp 1.4e-14) the difference to top comes
        // first, exact for close logits: (logit_j - top) - log_sum.
        const bool large_logits = std::fabs(top) > 64.0;
        for (std::int64_t j = 0; j < m; ++j) {
            data[static_cast<std::size_t>(j)] =
                large_logits ? (logit[j] - top) - log_sum : logit[j] - log_norm;
            data[static_cast<std::size_t>(m + j)] = std::exp(-0.5 * log_var[j]);
            data[static_cast<std::size_t>(2 * m + j)] = std::exp(-log_var[j]);
        }
    }
    double log_pi(std::int64_t j) const { return data[static_cast<std::size_t>(j)]; }
    double inv_sigma(std::int64_t j) const { return data[static_cast<std::size_t>(m + j)]; }
    double inv_var(std::int64_t j) const { return data[static_cast<std::size_t>(2 * m + j)]; }

    const double* mu;
    const double* log_var;
    const double* logit;
    std::int64_t m;
    double top = 0.0;          // max_j logit_j
    double log_sum = 0.0;      // ln sum_j exp(logit_j - top)
    std::vector<double> data;  // rows: ln pi, exp(-log_var / 2), exp(-log_var)
};

// The mixture precomputed once per call in float64 (MixtureF64) and rounded to T.
template <class T>
struct Components {
    explicit Components(const MixtureF64& mix) : m(mix.m), data(static_cast<std::size_t>(5 * m)) {
        const double half_log_2pi = 0.9189385332046728;  // 0.5 * ln(2 pi)
        const double log2e = 1.4426950408889634;
        const double sqrt_half_log2e = std::sqrt(0.5 * log2e);
        const double t_max = static_cast<double>(std::numeric_limits<T>::max());
        for (std::int64_t j = 0; j < m; ++j) {
            const T mu_hi = static_cast<T>(mix.mu[j]);
            const double mu_lo = mix.mu[j] - static_cast<double>(mu_hi);
            const T r_t = static_cast<T>(sqrt_half_log2e * mix.inv_sigma(j));
            const double r_d = static_cast<double>(r_t);
            const double inv_var = mix.inv_var(j);
            const double a_d = inv_var / r_d;
            at(0, j) = mu_hi;
            at(1, j) = r_t;
            at(2, j) = static_cast<T>(mu_lo * r_d);
            at(3, j) =
                static_cast<T>(log2e * (mix.log_pi(j) - half_log_2pi - 0.5 * mix.log_var[j]));
            at(4, j) = static_cast<T>(std::min(a_d, t_max));
            // T holds the component iff every constant is finite and r and a are
            // normal numbers (c may be -inf: then pi_j = 0 and gamma_ij = 0).
            const bool holds = std::isfinite(mu_hi) && std::isnormal(r_t) &&
                               std::isfinite(at(2, j)) &&
                               at(3, j) < std::numeric_limits<T>::infinity() &&
                               std::isnormal(inv_var) && a_d <= t_max && std::isnormal(at(4, j));
            if (!holds && first_bad < 0) first_bad = j;
        }
    }
    Components(const double* mu_in, const double* log_var, const double* logit, std::int64_t m_in)
        : Components(MixtureF64(mu_in, log_var, logit, m_in)) {}
    T& at(int row, std::int64_t j) { return data[static_cast<std::size_t>(row * m + j)]; }
    ComponentsView<T> view() const {
        const T* p = data.data();
        return {p, p + m, p + 2 * m, p + 3 * m, p + 4 * m, m};
    }
    // Whether T holds every component's constants: finite, r and a normal.
    bool exact() const { return first_bad < 0; }

    std::int64_t m;
    std::vector<T> data;          // rows: mu, r, r_lo, c, a (see ComponentsView)
    std::int64_t first_bad = -1;  // the first component T does not hold
};

// The error for a component whose float64 constants are not normal numbers
// (python/softshare's Mixture rejects such a log_var first; this guards the raw
// contract): a ValueError through pybind11.
inline std::domain_error component_error(std::int64_t j, const double* log_var) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "log_var[%lld] = %.17g is outside the range the kernel supports: "
                  "exp(log_var) and exp(-log_var) must be normal float64 numbers",
                  static_cast<long long>(j), log_var[j]);
    return std::domain_error(buf);
}

}  // namespace kernel
}  // namespace softshare
