// The value and the mixture gradients from one pass's sums, for callers that
// want the whole step without Python in between (softshare.torch).
//
// The same formulas as python/softshare/_formulas.py (mixture_gradients) and
// _mixture.py (log_pi, var), stated in docs/math.md: with pi = softmax(logit)
// and var = exp(log_var),
//   value        = -lam * sum_l
//   grad_mu      = -lam * S1 / var
//   grad_log_var = lam / 2 * (S0 - S2 / var)
//   grad_logit   = lam * (n * pi - S0)
//   grad_sigma   = lam * (S0 - S2 / var) / sigma       (_formulas.grad_sigma).
// Python-free; plain double arithmetic (tests hold it to the NumPy totals).
#pragma once

#include <cmath>
#include <cstdint>

namespace softshare {
namespace kernel {

// Gradients of lam * Omega for the M components into four rows of M: grad_mu,
// grad_log_var, grad_logit, grad_sigma. stats is (3, M): S0, S1, S2; top is
// max_j logit_j and log_sum ln sum_j exp(logit_j - top) (MixtureF64 in
// driver.hpp has both). A gradient beyond float64's range is +-inf (var is a
// normal number: no NaN).
inline void mixture_gradients(const double* log_var, const double* logit, std::int64_t m,
                              double top, double log_sum, const double* stats, std::int64_t n,
                              double lam, double* grad_mu, double* grad_log_var, double* grad_logit,
                              double* grad_sigma) {
    // ln pi as Mixture.log_pi: the top logit first; past |logit| = 64 the
    // difference to the top comes first (it would round away otherwise).
    double abs_max = std::fabs(logit[0]);
    for (std::int64_t j = 1; j < m; ++j) {
        abs_max = std::fabs(logit[j]) > abs_max ? std::fabs(logit[j]) : abs_max;
    }
    const double* s0 = stats;
    const double* s1 = s0 + m;
    const double* s2 = s1 + m;
    const auto nd = static_cast<double>(n);
    for (std::int64_t j = 0; j < m; ++j) {
        const double log_pi =
            abs_max <= 64.0 ? logit[j] - (top + log_sum) : (logit[j] - top) - log_sum;
        const double pi = std::exp(log_pi);
        const double var = std::exp(log_var[j]);
        grad_mu[j] = -lam * s1[j] / var;
        grad_log_var[j] = 0.5 * lam * (s0[j] - s2[j] / var);
        grad_logit[j] = lam * (nd * pi - s0[j]);
        grad_sigma[j] = lam * ((s0[j] - s2[j] / var) / std::exp(0.5 * log_var[j]));
    }
}

}  // namespace kernel
}  // namespace softshare
