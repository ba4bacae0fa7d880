// softshare._core's penalty_raw: the fused pass over raw addresses (softshare.torch's tensors).
//
// Registered by bindings.cpp's module through register_raw; softshare.torch
// calls it. Its shared checks and the pass without the GIL: bind_pass.hpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <tuple>
#include <vector>

#include "bind_pass.hpp"
#include "softshare/driver.hpp"
#include "softshare/finish.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;

namespace softshare {
namespace bind {
namespace {

// For adapters whose tensors are not NumPy arrays (softshare.torch), the whole
// step without Python in between. Each segment is (weights address, gradient
// address, n, float64?), the mixture (mu, log_var, logit addresses, M,
// float64?) and out (grad_mu, grad_log_var, grad_logit addresses of M
// outputs each, float64?): live, contiguous
// buffers the caller keeps alive for the call. Python passes only addresses it
// got from such tensors.
//
// accumulate: empty, or one flag per segment: whether its gradient is added
// to what its gradient address holds (runner.hpp, Runner::block).
//
// Returns None, before any work, for a mixture python/softshare's Mixture
// refuses (not finite, |log_var| > kMaxAbsLogVar): the caller raises its error.
// Otherwise (value, sum_L, check, stats (3, M)): value is None when the caller
// must finish in Python (a weight or output not finite, or the value
// overflowed: the errors of softshare.penalty); else out holds the mixture
// gradients (gradients.hpp), and for lam = 0 every output
// is exactly 0 (0 times an infinite sum would be NaN).
constexpr double kMaxAbsLogVar = 708.0;  // python/softshare/_mixture.py MAX_ABS_LOG_VAR

template <class T>
void copy_mixture(std::uintptr_t mu, std::uintptr_t log_var, std::uintptr_t logit, std::int64_t m,
                  std::vector<double>& rows) {
    const std::uintptr_t addr[3] = {mu, log_var, logit};
    for (int r = 0; r < 3; ++r) {
        const T* p = reinterpret_cast<const T*>(addr[r]);
        for (std::int64_t j = 0; j < m; ++j) rows[static_cast<std::size_t>(r * m + j)] = p[j];
    }
}

py::object penalty_raw(
    const std::vector<std::tuple<std::uintptr_t, std::uintptr_t, std::int64_t, bool>>& raw,
    const std::tuple<std::uintptr_t, std::uintptr_t, std::uintptr_t, std::int64_t, bool>& mixture,
    double lam, int n_threads,
    const std::tuple<std::uintptr_t, std::uintptr_t, std::uintptr_t, bool>& out,
    const std::vector<bool>& accumulate) {
    const auto [mu_at, log_var_at, logit_at, m, mix64] = mixture;
    if (!accumulate.empty() && accumulate.size() != raw.size()) {
        throw std::invalid_argument("penalty_raw: accumulate needs one flag per segment");
    }
    const auto [g_mu_at, g_log_var_at, g_logit_at, out64] = out;
    if (m < 1 || mu_at == 0 || log_var_at == 0 || logit_at == 0 || g_mu_at == 0 ||
        g_log_var_at == 0 || g_logit_at == 0) {
        throw std::invalid_argument("penalty_raw: the mixture needs M >= 1 and six addresses");
    }
    std::vector<double> rows(static_cast<std::size_t>(3 * m));
    if (mix64) {
        copy_mixture<double>(mu_at, log_var_at, logit_at, m, rows);
    } else {
        copy_mixture<float>(mu_at, log_var_at, logit_at, m, rows);
    }
    for (std::int64_t k = 0; k < 3 * m; ++k) {
        const double x = rows[static_cast<std::size_t>(k)];
        if (!std::isfinite(x) || (k / m == 1 && std::fabs(x) > kMaxAbsLogVar)) return py::none();
    }
    std::vector<sk::Segment> segments;
    segments.reserve(raw.size());
    for (const auto& [w, g, n, is64] : raw) {
        if (n < 0 || (n > 0 && (w == 0 || g == 0))) {
            throw std::invalid_argument("penalty_raw: a segment needs two addresses and n >= 0");
        }
        const bool add = !accumulate.empty() && accumulate[segments.size()];
        segments.push_back({is64 ? sk::DType::f64 : sk::DType::f32,
                            reinterpret_cast<const void*>(w), reinterpret_cast<void*>(g), nullptr,
                            n, add});
    }
    check_no_overlap(segments);
    const sk::MixtureF64 mix(rows.data(), rows.data() + m, rows.data() + 2 * m, m);
    const sk::Totals totals = run_totals(segments, mix, lam, n_threads);
    std::vector<double> grads(static_cast<std::size_t>(4 * m));
    double* const grad_rows[4] = {grads.data(), grads.data() + m, grads.data() + 2 * m,
                                  grads.data() + 3 * m};
    const auto value = native_totals(totals, segments, mix, lam, grad_rows);
    if (!value) {
        return py::make_tuple(py::none(), totals.sum_l, totals.check, stats_array(totals, m));
    }
    const std::uintptr_t out_at[3] = {g_mu_at, g_log_var_at, g_logit_at};
    for (int r = 0; r < 3; ++r) {
        const double* row = grad_rows[r];
        if (out64) {
            std::copy(row, row + m, reinterpret_cast<double*>(out_at[r]));
        } else {
            auto* o = reinterpret_cast<float*>(out_at[r]);
            for (std::int64_t j = 0; j < m; ++j) o[j] = static_cast<float>(row[j]);
        }
    }
    return py::make_tuple(*value, totals.sum_l, totals.check, stats_array(totals, m));
}

}  // namespace
}  // namespace bind
}  // namespace softshare

void register_raw(py::module_& mod) {
    namespace sb = softshare::bind;
    mod.def("penalty_raw", &sb::penalty_raw, py::arg("segments"), py::arg("mixture"),
            py::arg("lam"), py::arg("n_threads"), py::arg("out"),
            py::arg("accumulate") = std::vector<bool>(),
            "Fused pass over raw (weights address, grad address, n, float64?) segments and a "
            "raw mixture (mu, log_var, logit addresses, M, float64?): None for a mixture "
            "Mixture refuses, else (value or None, sum_L, check, stats (3, M)), the mixture "
            "gradients written to out (three addresses, float64?) when value is not None. "
            "accumulate: empty, or per segment whether grad_w is added to its buffer.");
}
