// softshare._core: the thin pybind11 layer over the Python-free kernel.
//
// Inputs are checked and outputs allocated with the GIL held; the fused pass
// itself runs with the GIL released, and its exceptions become Python's here:
// std::bad_alloc a MemoryError, std::domain_error and std::invalid_argument a
// ValueError. The public, friendlier checks (dtypes, shapes, finiteness,
// n_threads) live in python/softshare; the checks here only guard the
// raw-pointer contract.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "softshare/dispatch.hpp"
#include "softshare/driver.hpp"
#include "softshare/runtime.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;
namespace sk = softshare::kernel;

namespace {

using Params = py::array_t<double, py::array::c_style | py::array::forcecast>;

sk::DType dtype_of(const py::array& a, std::size_t index) {
    if (a.dtype().equal(py::dtype::of<float>())) return sk::DType::f32;
    if (a.dtype().equal(py::dtype::of<double>())) return sk::DType::f64;
    throw py::type_error("weights[" + std::to_string(index) +
                         "]: the kernel takes native-byte-order float32 or float64, got " +
                         py::str(a.dtype()).cast<std::string>());
}

py::tuple penalty(const std::vector<py::array>& weights, const Params& mu, const Params& log_var,
                  const Params& logit, double lam, int n_threads, bool responsibilities) {
    if (mu.ndim() != 1 || log_var.ndim() != 1 || logit.ndim() != 1) {
        throw std::invalid_argument("mu, log_var and logit must be 1-D");
    }
    const std::int64_t m = mu.shape(0);
    if (m < 1) throw std::invalid_argument("the mixture needs at least one component (M >= 1)");
    if (log_var.shape(0) != m || logit.shape(0) != m) {
        throw std::invalid_argument("mu, log_var and logit must have the same length");
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
        py::array grad(w.dtype(), std::vector<py::ssize_t>{n});
        void* gamma_ptr = nullptr;
        if (responsibilities) {
            py::array gamma(w.dtype(), std::vector<py::ssize_t>{n, m});
            gamma_ptr = gamma.mutable_data();
            gammas.append(gamma);
        }
        segments.push_back({dt, w.data(), grad.mutable_data(), gamma_ptr, n});
        grads.append(grad);
    }

    const sk::KernelTable table = sk::active_table();
    sk::Totals totals;
    try {
        py::gil_scoped_release release;
        totals = sk::run_penalty(table, mu.data(), log_var.data(), logit.data(), m, lam, segments,
                                 n_threads);
    } catch (const std::bad_alloc&) {
        // The GIL is held again (release's destructor): a MemoryError that says what.
        const std::string msg =
            "softshare.penalty: not enough memory for the kernel's working buffers (M = " +
            std::to_string(m) + " components, up to " + std::to_string(n_threads) +
            " threads; about 1 to 1.5 KB per component and thread): fewer threads (n_threads) "
            "or fewer components need less";
        PyErr_SetString(PyExc_MemoryError, msg.c_str());
        throw py::error_already_set();
    }
    py::array_t<double> stats({static_cast<py::ssize_t>(3), static_cast<py::ssize_t>(m)});
    std::copy(totals.stats.begin(), totals.stats.end(), stats.mutable_data());
    py::object gamma_out = responsibilities ? py::object(gammas) : py::object(py::none());
    return py::make_tuple(totals.sum_l, totals.check, stats, grads, gamma_out);
}

// The kernel's vectorised 2^x (x <= 0) or log (x >= 1) on one target, for tests.
py::array vmath(const std::string& fn, const py::array& x, const std::string& target) {
    const sk::KernelTable table = sk::table_for(target);
    const sk::DType dt = dtype_of(x, 0);
    if (x.ndim() != 1 || (x.shape(0) > 1 && x.strides(0) != x.itemsize())) {
        throw std::invalid_argument("x must be 1-D and contiguous");
    }
    if (fn != "exp2" && fn != "log") throw std::invalid_argument("fn must be 'exp2' or 'log'");
    const std::int64_t n = x.shape(0);
    py::array y(x.dtype(), std::vector<py::ssize_t>{n});
    if (dt == sk::DType::f32) {
        auto f = fn == "exp2" ? table.exp2_f32 : table.log_f32;
        f(static_cast<const float*>(x.data()), static_cast<float*>(y.mutable_data()), n);
    } else {
        auto f = fn == "exp2" ? table.exp2_f64 : table.log_f64;
        f(static_cast<const double*>(x.data()), static_cast<double*>(y.mutable_data()), n);
    }
    return y;
}

}  // namespace

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "softshare's compiled kernel (private: use the softshare package).";
    // Processes forked from here on run the pass on one thread (runtime.hpp).
    sk::install_fork_guard();
    mod.def("penalty", &penalty, py::arg("weights"), py::arg("mu"), py::arg("log_var"),
            py::arg("logit"), py::arg("lam"), py::arg("n_threads"), py::arg("responsibilities"),
            "Fused pass: returns (sum_L, check, stats (3, M), grads, gammas or None).");
    mod.def("has_openmp", &sk::has_openmp, "Whether the kernel was built with OpenMP.");
    mod.def("default_threads", &sk::default_threads,
            "Threads OpenMP uses by default (OMP_NUM_THREADS), 1 without OpenMP.");
    mod.def(
        "simd_target", [] { return std::string(sk::active_table().name); },
        "The instruction set of the kernels in use.");
    mod.def("simd_targets", &sk::supported_targets,
            "The instruction sets this build has and this CPU runs, lowest first.");
    mod.def("set_simd_target", &sk::set_target, py::arg("name"),
            "Use the kernels of one supported instruction set (ValueError otherwise).");
    mod.def("_vmath", &vmath, py::arg("fn"), py::arg("x"), py::arg("target"),
            "Testing hook: the kernel's 2^x (x <= 0) or log (x >= 1) on one SIMD target.");
    mod.attr("block_size") = sk::kBlockSize;
}
