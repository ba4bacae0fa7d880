// softshare._core's testing hooks: one target's vectorised math, and the grouped kernel's plan.
//
// Registered by bindings.cpp's module through register_hooks; the tests call
// them (tests/kernel/test_vmath.py, the grouping tests), the package never does.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "bind_pass.hpp"
#include "softshare/dispatch.hpp"
#include "softshare/driver.hpp"
#include "softshare/grouping.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;

namespace softshare {
namespace bind {
namespace {

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

// Testing hook: whether a pass over n_weights weights (float64 or float32)
// with this mixture uses the grouped kernel (grouping.hpp), and its plan's
// average window and cell count.
py::tuple grouping(const Params& mu, const Params& log_var, const Params& logit,
                   std::int64_t n_weights, bool f64) {
    const std::int64_t m = mixture_size(mu, log_var, logit);
    const auto describe = [&](const auto& comp) {
        const auto plan = sk::plan_grouping(comp.view(), comp.exact() ? n_weights : 0);
        return py::make_tuple(plan.active, plan.mean_window, plan.j_lo.size());
    };
    if (f64) return describe(sk::Components<double>(mu.data(), log_var.data(), logit.data(), m));
    return describe(sk::Components<float>(mu.data(), log_var.data(), logit.data(), m));
}

}  // namespace
}  // namespace bind
}  // namespace softshare

void register_hooks(py::module_& mod) {
    namespace sb = softshare::bind;
    mod.def("_vmath", &sb::vmath, py::arg("fn"), py::arg("x"), py::arg("target"),
            "Testing hook: the kernel's 2^x (x <= 0) or log (x >= 1) on one SIMD target.");
    mod.def("_grouping", &sb::grouping, py::arg("mu"), py::arg("log_var"), py::arg("logit"),
            py::arg("n_weights"), py::arg("f64"),
            "Testing hook: (grouped?, mean window, cells) of the plan for such a pass.");
}
