// The value and the mixture gradients of one pass's Totals, finished natively:
// for the pybind11 bindings (bind_pass.hpp) and the XLA FFI handler
// (jax_ffi.cpp) alike. Python-free; baseline translation units only (it
// includes driver.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "softshare/driver.hpp"
#include "softshare/gradients.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// Bytes of one weight (or gradient) of a segment.
inline std::size_t item_size(const Segment& seg) {
    return seg.dtype == DType::f32 ? sizeof(float) : sizeof(double);
}

// The value -lam * sum_l (never -0.0), with the mixture gradients written to
// rows[0..3] (grad_mu, grad_log_var, grad_logit, grad_sigma, M each;
// gradients.hpp). For lam = 0 every output is exactly 0, grad_w included
// (0 times an infinite sum would be NaN; accumulating segments added +0,
// driver.hpp). Whatever the sums hold: native_totals decides whether to.
inline double finish_totals(const Totals& totals, const std::vector<Segment>& segments,
                            const MixtureF64& mix, double lam, double* const rows[4]) {
    const double value = -lam * totals.sum_l + 0.0;  // + 0.0: never -0.0
    const std::int64_t m = mix.m;
    if (lam == 0.0) {
        for (const Segment& seg : segments) {
            if (!seg.accumulate)
                std::fill_n(static_cast<char*>(seg.grad_w), seg.n * item_size(seg), 0);
        }
        for (int r = 0; r < 4; ++r) std::fill_n(rows[r], m, 0.0);
        return value;
    }
    std::int64_t n_total = 0;
    for (const Segment& seg : segments) n_total += seg.n;
    mixture_gradients(mix.log_var, mix.logit, m, mix.top, mix.log_sum, totals.stats.data(), n_total,
                      lam, rows[0], rows[1], rows[2], rows[3]);
    return value;
}

// finish_totals' value, with rows written, when the pass needs none of the
// caller's checks: every weight and output finite, a finite value. Otherwise
// nothing, and nothing written: the caller finishes with softshare.penalty's
// errors (python/softshare/_result.py, checked_totals).
inline std::optional<double> native_totals(const Totals& totals,
                                           const std::vector<Segment>& segments,
                                           const MixtureF64& mix, double lam,
                                           double* const rows[4]) {
    const double value = -lam * totals.sum_l + 0.0;
    if (!std::isfinite(totals.check) || !std::isfinite(value)) return std::nullopt;
    return finish_totals(totals, segments, mix, lam, rows);
}

}  // namespace kernel
}  // namespace softshare
