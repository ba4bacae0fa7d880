// softshare._core's penalty and penalty_array: the fused pass over NumPy arrays.
//
// The thin pybind11 layer over the Python-free kernel (driver.hpp), registered
// by bindings.cpp's module through register_penalty. Their shared checks and
// the pass without the GIL: bind_pass.hpp; grad_w's memory: gradient_buffer.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bind_pass.hpp"
#include "frozen_instance.hpp"
#include "gradient_buffer.hpp"
#include "softshare/driver.hpp"
#include "softshare/finish.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;

namespace softshare {
namespace bind {
namespace {

// grads_out: None, or one writeable array per weight (same dtype, 1-D,
// contiguous, same length) that receives grad_w instead of a fresh array, or
// with accumulate has it added (runner.hpp, Runner::block).
// n_threads is a request: 0 OpenMP's default, -1 every core, k > 0 k threads.
py::tuple penalty(const std::vector<py::array>& weights, const Params& mu, const Params& log_var,
                  const Params& logit, double lam, int n_threads, bool responsibilities,
                  const py::object& grads_out, bool accumulate) {
    const sk::MixtureF64 mix = mixture_of(mu, log_var, logit);
    const std::int64_t m = mix.m;
    std::vector<py::array> outs;
    if (accumulate && grads_out.is_none()) {
        throw std::invalid_argument("accumulate needs grads_out: the arrays to add into");
    }
    if (!grads_out.is_none()) {
        outs = grads_out.cast<std::vector<py::array>>();
        if (outs.size() != weights.size()) {
            throw std::invalid_argument("grads_out must hold one array per weights array");
        }
    }
    std::vector<sk::Segment> segments;
    py::list grads, gammas;
    segments.reserve(weights.size());
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const py::array& w = weights[i];
        const sk::DType dt = dtype_of(w, i);
        if (w.ndim() != 1 || (w.shape(0) > 1 && w.strides(0) != w.itemsize())) {
            throw std::invalid_argument("weights[" + std::to_string(i) +
                                        "] must be 1-D and contiguous");
        }
        const std::int64_t n = w.shape(0);
        py::array grad;
        if (outs.empty()) {
            grad = gradient_array(w.dtype(), {n});
        } else {
            grad = outs[i];
            if (!grad.dtype().equal(w.dtype()) || grad.ndim() != 1 || grad.shape(0) != n ||
                (n > 1 && grad.strides(0) != grad.itemsize()) || !grad.writeable()) {
                throw std::invalid_argument(
                    "grads_out[" + std::to_string(i) +
                    "] must be a writeable, contiguous 1-D array of the weights' dtype and length");
            }
        }
        void* gamma_ptr = nullptr;
        if (responsibilities) {
            py::array gamma(w.dtype(), std::vector<py::ssize_t>{n, m});
            gamma_ptr = gamma.mutable_data();
            gammas.append(gamma);
        }
        segments.push_back({dt, w.data(), grad.mutable_data(), gamma_ptr, n, accumulate});
        grads.append(grad);
    }
    if (!outs.empty()) check_no_overlap(segments);
    const sk::Totals totals = run_totals(segments, mix, lam, n_threads);
    GradientRows rows(m);
    py::object finished = py::none();  // (value, grad_mu, grad_sigma, grad_log_var, grad_logit)
    if (const auto value = native_totals(totals, segments, mix, lam, rows.data)) {
        finished =
            py::make_tuple(*value, rows.arrays[0], rows.arrays[3], rows.arrays[1], rows.arrays[2]);
    }
    return pass_tuple(totals, m, grads, gammas, responsibilities, finished);
}

// softshare.penalty for one ndarray: w native float32 or float64 and
// C-contiguous, of any shape (else None: the caller takes the general path);
// mu, log_var and logit float64, 1-D, contiguous (a Mixture's). The pass as
// penalty's, with grad_w shaped like w (out itself when given: an ndarray of
// w's dtype and shape, C-contiguous and writeable, else None; with accumulate
// grad_w is added to it) and gamma (w.size, M); when the kernel finishes the
// totals itself (native_totals), the result_type (PenaltyResult) made here,
// else penalty's tuple for the caller to finish, with the flat grad_w.
py::object penalty_array(const py::handle& w_in, const py::array& mu, const py::array& log_var,
                         const py::array& logit, double lam, int n_threads, bool responsibilities,
                         const py::handle& result_type, const py::handle& out, bool accumulate) {
    PyTypeObject* const result_class = plain_class(result_type);
    if (accumulate && out.is_none()) {
        throw std::invalid_argument("accumulate needs out: the array to add into");
    }
    if (!py::isinstance<py::array>(w_in) || !(out.is_none() || py::isinstance<py::array>(out))) {
        return py::none();
    }
    const auto w = py::reinterpret_borrow<py::array>(w_in);
    sk::DType dt = sk::DType::f64;
    if (!kernel_dtype(w, dt) || (w.flags() & py::array::c_style) == 0) return py::none();
    if (!out.is_none()) {
        const auto o = py::reinterpret_borrow<py::array>(out);
        const bool fits = o.dtype().equal(w.dtype()) && o.ndim() == w.ndim() &&
                          std::equal(w.shape(), w.shape() + w.ndim(), o.shape()) &&
                          (o.flags() & py::array::c_style) != 0 && o.writeable();
        if (!fits) return py::none();
    }
    for (const py::array* p : {&mu, &log_var, &logit}) {
        sk::DType pdt = sk::DType::f32;
        if (!kernel_dtype(*p, pdt) || pdt != sk::DType::f64 || p->ndim() != 1 ||
            (p->flags() & py::array::c_style) == 0) {
            throw std::invalid_argument("mu, log_var and logit must be 1-D contiguous float64");
        }
    }
    const std::int64_t m = mixture_size(mu, log_var, logit);
    const sk::MixtureF64 mix(static_cast<const double*>(mu.data()),
                             static_cast<const double*>(log_var.data()),
                             static_cast<const double*>(logit.data()), m);
    const auto n = static_cast<std::int64_t>(w.size());
    py::array grad =
        out.is_none()
            ? gradient_array(w.dtype(), std::vector<py::ssize_t>(w.shape(), w.shape() + w.ndim()))
            : py::reinterpret_borrow<py::array>(out);
    py::object gamma = py::none();
    void* gamma_ptr = nullptr;
    if (responsibilities) {
        py::array g(w.dtype(), std::vector<py::ssize_t>{n, m});
        gamma_ptr = g.mutable_data();
        gamma = std::move(g);
    }
    const std::vector<sk::Segment> segments{
        {dt, w.data(), grad.mutable_data(), gamma_ptr, n, accumulate}};
    if (!out.is_none()) check_no_overlap(segments);
    const sk::Totals totals = run_totals(segments, mix, lam, n_threads);
    GradientRows rows(m);
    const auto value = native_totals(totals, segments, mix, lam, rows.data);
    if (!value) {
        py::list grads, gammas;
        grads.append(grad.reshape({n}));
        if (responsibilities) gammas.append(gamma);
        return pass_tuple(totals, m, grads, gammas, responsibilities, py::none());
    }
    // PenaltyResult's fields in its order, interned once (tests/kernel/test_small_calls.py
    // holds the two to one list).
    static PyObject* const* const kFields = [] {
        static PyObject* names[10];
        const char* const text[10] = {"value",        "grad_w",         "grad_mu", "grad_sigma",
                                      "grad_log_var", "grad_logit",     "stats",   "n",
                                      "gamma",        "sum_log_density"};
        for (int k = 0; k < 10; ++k) {
            names[k] = PyUnicode_InternFromString(text[k]);
            if (names[k] == nullptr) throw py::error_already_set();
        }
        return names;
    }();
    const py::object values[] = {py::float_(*value),      std::move(grad), rows.arrays[0],
                                 rows.arrays[3],          rows.arrays[1],  rows.arrays[2],
                                 stats_array(totals, m),  py::int_(n),     std::move(gamma),
                                 py::float_(totals.sum_l)};
    return frozen_instance(result_class, kFields, values, std::size(values));
}

}  // namespace
}  // namespace bind
}  // namespace softshare

void register_penalty(py::module_& mod) {
    namespace sb = softshare::bind;
    mod.def("penalty", &sb::penalty, py::arg("weights"), py::arg("mu"), py::arg("log_var"),
            py::arg("logit"), py::arg("lam"), py::arg("n_threads"), py::arg("responsibilities"),
            py::arg("grads_out") = py::none(), py::arg("accumulate") = false,
            "Fused pass: returns (sum_L, check, stats (3, M), grads, gammas or None, totals); "
            "grad_w goes into grads_out's arrays when given (added to them with accumulate); "
            "totals is (value, grad_mu, grad_sigma, grad_log_var, grad_logit) or None when "
            "Python must finish. n_threads: "
            "0 OpenMP's default, -1 every core, k > 0 k threads (at most the cores and one per "
            "block_size weights).");
    mod.def("penalty_array", &sb::penalty_array, py::arg("weights"), py::arg("mu"),
            py::arg("log_var"), py::arg("logit"), py::arg("lam"), py::arg("n_threads"),
            py::arg("responsibilities"), py::arg("result_type"), py::arg("out") = py::none(),
            py::arg("accumulate") = false,
            "penalty for one native float32/float64 C-contiguous ndarray of any shape and an out "
            "of its dtype and shape, C-contiguous and writeable, or None (else None): a "
            "result_type instance when the kernel finishes the totals, else penalty's tuple "
            "(flat grad_w).");
}
