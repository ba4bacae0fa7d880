// The penalty bindings' shared steps: the raw contract's checks, and the pass without the GIL.
//
// For bind_penalty.cpp, bind_raw.cpp and bind_hooks.cpp. Inputs are checked
// and outputs allocated with the GIL held; the fused pass itself runs with the
// GIL released, and its exceptions become Python's: std::bad_alloc a
// MemoryError (run_totals says what), std::domain_error and
// std::invalid_argument a ValueError (pybind11). The public, friendlier checks
// (dtypes, shapes, finiteness, n_threads) live in python/softshare; the checks
// here only guard the raw-pointer contract.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "softshare/dispatch.hpp"
#include "softshare/driver.hpp"
#include "softshare/finish.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace bind {

namespace py = pybind11;
namespace sk = softshare::kernel;
using sk::item_size;
using sk::native_totals;

using Params = py::array_t<double, py::array::c_style | py::array::forcecast>;

inline sk::DType dtype_of(const py::array& a, std::size_t index) {
    if (a.dtype().equal(py::dtype::of<float>())) return sk::DType::f32;
    if (a.dtype().equal(py::dtype::of<double>())) return sk::DType::f64;
    throw py::type_error("weights[" + std::to_string(index) +
                         "]: the kernel takes native-byte-order float32 or float64, got " +
                         py::str(a.dtype()).cast<std::string>());
}

// The mixture's length M, with its shape checks (penalty's float64-converted
// arrays, penalty_array's checked ones).
inline std::int64_t mixture_size(const py::array& mu, const py::array& log_var,
                                 const py::array& logit) {
    if (mu.ndim() != 1 || log_var.ndim() != 1 || logit.ndim() != 1) {
        throw std::invalid_argument("mu, log_var and logit must be 1-D");
    }
    const std::int64_t m = mu.shape(0);
    if (m < 1) throw std::invalid_argument("the mixture needs at least one component (M >= 1)");
    if (log_var.shape(0) != m || logit.shape(0) != m) {
        throw std::invalid_argument("mu, log_var and logit must have the same length");
    }
    return m;
}

// The kernel reads the weights while it writes the gradients: no gradient
// may overlap any weights array, nor any other gradient (one would overwrite
// what the other received; where they accumulate, threads would add into
// each other's).
inline void check_no_overlap(const std::vector<sk::Segment>& segments) {
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const auto* g = static_cast<const char*>(segments[i].grad_w);
        const std::size_t g_bytes =
            static_cast<std::size_t>(segments[i].n) * item_size(segments[i]);
        for (std::size_t j = 0; j < segments.size(); ++j) {
            const auto* w = static_cast<const char*>(segments[j].w);
            const std::size_t w_bytes =
                static_cast<std::size_t>(segments[j].n) * item_size(segments[j]);
            if (g_bytes > 0 && w_bytes > 0 && g < w + w_bytes && w < g + g_bytes) {
                throw std::invalid_argument("out[" + std::to_string(i) + "] overlaps weights[" +
                                            std::to_string(j) +
                                            "]: the gradient needs its own memory");
            }
        }
    }
    std::vector<std::pair<const char*, std::size_t>> outs;  // (start, segment), sorted
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (segments[i].n > 0) outs.emplace_back(static_cast<const char*>(segments[i].grad_w), i);
    }
    std::sort(outs.begin(), outs.end());
    for (std::size_t k = 1; k < outs.size(); ++k) {
        const sk::Segment& prev = segments[outs[k - 1].second];
        const char* prev_end =
            outs[k - 1].first + static_cast<std::size_t>(prev.n) * item_size(prev);
        if (outs[k].first < prev_end) {
            throw std::invalid_argument("out[" + std::to_string(outs[k].second) +
                                        "] overlaps out[" + std::to_string(outs[k - 1].second) +
                                        "]: each gradient needs memory of its own");
        }
    }
}

// The fused pass with the GIL released; n_threads is a request (run_penalty).
inline sk::Totals run_totals(const std::vector<sk::Segment>& segments, const sk::MixtureF64& mix,
                             double lam, int n_threads) {
    const sk::KernelTable table = sk::active_table();
    try {
        py::gil_scoped_release release;
        return sk::run_penalty(table, mix.mu, mix.log_var, mix.logit, mix.m, lam, segments,
                               n_threads, &mix);
    } catch (const std::bad_alloc&) {
        // The GIL is held again (release's destructor): a MemoryError that says what.
        const std::string msg =
            "softshare.penalty: not enough memory for the kernel's working buffers (M = " +
            std::to_string(mix.m) + " components, up to " +
            std::to_string(sk::requested_threads(n_threads)) +
            " threads; about 1 to 1.5 KB per component and thread): fewer threads (n_threads) "
            "or fewer components need less";
        PyErr_SetString(PyExc_MemoryError, msg.c_str());
        throw py::error_already_set();
    }
}

// The sums S0, S1, S2 as a (3, M) array.
inline py::array_t<double> stats_array(const sk::Totals& totals, std::int64_t m) {
    py::array_t<double> stats({static_cast<py::ssize_t>(3), static_cast<py::ssize_t>(m)});
    std::copy(totals.stats.begin(), totals.stats.end(), stats.mutable_data());
    return stats;
}

// penalty's tuple (_core.pyi PassTuple): (sum_L, check, stats (3, M), grads,
// gammas when responsibilities were asked for else None, finished: the
// kernel's (value, grad_mu, grad_sigma, grad_log_var, grad_logit) or None).
inline py::tuple pass_tuple(const sk::Totals& totals, std::int64_t m, const py::list& grads,
                            const py::list& gammas, bool responsibilities,
                            const py::object& finished) {
    return py::make_tuple(totals.sum_l, totals.check, stats_array(totals, m), grads,
                          responsibilities ? py::object(gammas) : py::object(py::none()), finished);
}

// Four float64 arrays of M for the mixture gradients, and their data.
struct GradientRows {
    explicit GradientRows(std::int64_t m) {
        for (int r = 0; r < 4; ++r) {
            arrays[r] = py::array_t<double>(static_cast<py::ssize_t>(m));
            data[r] = arrays[r].mutable_data();
        }
    }
    py::array_t<double> arrays[4];  // grad_mu, grad_log_var, grad_logit, grad_sigma
    double* data[4];
};

// The raw contract of penalty's mu, log_var and logit: three 1-D arrays of one
// length M >= 1 (converted to float64 by pybind11 where they are not).
inline sk::MixtureF64 mixture_of(const Params& mu, const Params& log_var, const Params& logit) {
    return {mu.data(), log_var.data(), logit.data(), mixture_size(mu, log_var, logit)};
}

// Whether a is a native-byte-order float32 or float64 array (the kernel's dtypes).
inline bool kernel_dtype(const py::array& a, sk::DType& dt) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    constexpr char kSwapped = '<';
#else
    constexpr char kSwapped = '>';
#endif
    using api = py::detail::npy_api;
    const py::dtype d = a.dtype();
    const int num = d.num();
    if (d.byteorder() == kSwapped || (num != api::NPY_FLOAT_ && num != api::NPY_DOUBLE_)) {
        return false;
    }
    dt = num == api::NPY_FLOAT_ ? sk::DType::f32 : sk::DType::f64;
    return true;
}

}  // namespace bind
}  // namespace softshare
