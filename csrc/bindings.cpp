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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "softshare/dispatch.hpp"
#include "softshare/driver.hpp"
#include "softshare/finish.hpp"
#include "softshare/runtime.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;
namespace sk = softshare::kernel;
using sk::item_size;
using sk::native_totals;

namespace {

using Params = py::array_t<double, py::array::c_style | py::array::forcecast>;

sk::DType dtype_of(const py::array& a, std::size_t index) {
    if (a.dtype().equal(py::dtype::of<float>())) return sk::DType::f32;
    if (a.dtype().equal(py::dtype::of<double>())) return sk::DType::f64;
    throw py::type_error("weights[" + std::to_string(index) +
                         "]: the kernel takes native-byte-order float32 or float64, got " +
                         py::str(a.dtype()).cast<std::string>());
}

// The mixture's length M, with its shape checks (penalty's float64-converted
// arrays, penalty_array's checked ones).
std::int64_t mixture_size(const py::array& mu, const py::array& log_var, const py::array& logit) {
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
void check_no_overlap(const std::vector<sk::Segment>& segments) {
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const auto* g = static_cast<const char*>(segments[i].grad_w);
        const std::size_t g_bytes = static_cast<std::size_t>(segments[i].n) * item_size(segments[i]);
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
sk::Totals run_totals(const std::vector<sk::Segment>& segments, const sk::MixtureF64& mix,
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
py::array_t<double> stats_array(const sk::Totals& totals, std::int64_t m) {
    py::array_t<double> stats({static_cast<py::ssize_t>(3), static_cast<py::ssize_t>(m)});
    std::copy(totals.stats.begin(), totals.stats.end(), stats.mutable_data());
    return stats;
}

// grad_w's memory, when it is large. A fresh large array costs the system's
// zeroing of each page on first touch: at 1e7 float32 weights (40 MB) some
// 5-10 ms, as much as the whole pass at small M. So from kSpareMinBytes on,
// grad_w is a view of a NumPy byte array held by a capsule (the view's base);
// when the view and every view of it are gone, the capsule's destructor keeps
// that byte array as the spare, replacing (and so freeing) the previous one,
// and the next request of the same size takes it. A loop that rebinds its
// result (r = penalty(...)) frees the previous gradient after the next call
// made its own, so one spare is enough for it to alternate between two
// buffers. Every access holds the GIL (array deallocation included).
constexpr std::size_t kSpareMinBytes = std::size_t{1} << 20;
PyObject* g_spare_gradient = nullptr;  // a strong reference, or none

// A fresh, uninitialised array of dtype and shape for grad_w (the spare's
// memory when it has the size).
py::array gradient_array(const py::dtype& dtype, std::vector<py::ssize_t> shape) {
    py::ssize_t bytes = dtype.itemsize();
    for (const py::ssize_t d : shape) bytes *= d;
    if (static_cast<std::size_t>(bytes) < kSpareMinBytes) {
        return py::array(dtype, std::move(shape));
    }
    py::array buffer;
    if (g_spare_gradient != nullptr &&
        py::reinterpret_borrow<py::array>(g_spare_gradient).nbytes() == bytes) {
        buffer = py::reinterpret_steal<py::array>(std::exchange(g_spare_gradient, nullptr));
    } else {
        buffer = py::array(py::dtype::of<std::uint8_t>(), std::vector<py::ssize_t>{bytes});
    }
    void* const data = buffer.mutable_data();
    static constexpr char kName[] = "softshare gradient buffer";
    PyObject* const cap = PyCapsule_New(buffer.ptr(), kName, [](PyObject* self) {
        PyObject* const spare = static_cast<PyObject*>(PyCapsule_GetPointer(self, kName));
        Py_XDECREF(std::exchange(g_spare_gradient, spare));
    });
    if (cap == nullptr) throw py::error_already_set();
    const auto owner = py::reinterpret_steal<py::object>(cap);
    buffer.release();  // the capsule holds the reference now
    return py::array(dtype, std::move(shape), data, owner);
}

// penalty's tuple (_core.pyi PassTuple): (sum_L, check, stats (3, M), grads,
// gammas when responsibilities were asked for else None, finished: the
// kernel's (value, grad_mu, grad_sigma, grad_log_var, grad_logit) or None).
py::tuple pass_tuple(const sk::Totals& totals, std::int64_t m, const py::list& grads,
                     const py::list& gammas, bool responsibilities, const py::object& finished) {
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
sk::MixtureF64 mixture_of(const Params& mu, const Params& log_var, const Params& logit) {
    return {mu.data(), log_var.data(), logit.data(), mixture_size(mu, log_var, logit)};
}

// Whether a is a native-byte-order float32 or float64 array (the kernel's dtypes).
bool kernel_dtype(const py::array& a, sk::DType& dt) {
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

// grads_out: None, or one writeable array per weight (same dtype, 1-D,
// contiguous, same length) that receives grad_w instead of a fresh array, or
// with accumulate has it added (driver.hpp, Runner::block).
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

// cls as a type object.__new__ may make (a Python class that does not override
// __new__), else TypeError.
PyTypeObject* plain_class(const py::handle& cls) {
    auto* type = PyType_Check(cls.ptr()) ? reinterpret_cast<PyTypeObject*>(cls.ptr()) : nullptr;
    if (type == nullptr || (type->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0 ||
        type->tp_new != PyBaseObject_Type.tp_new) {
        throw py::type_error("result_type must be a class object.__new__ makes");
    }
    return type;
}

// An instance of the frozen dataclass type with these fields, as
// python/softshare/_result.py's _frozen makes it: object.__new__(type), then
// each field set as object.__setattr__ does, in the class's field order.
py::object frozen_instance(PyTypeObject* type, PyObject* const* names, const py::object* values,
                           std::size_t count) {
    const py::tuple no_args(0);
    py::object obj =
        py::reinterpret_steal<py::object>(PyBaseObject_Type.tp_new(type, no_args.ptr(), nullptr));
    if (!obj) throw py::error_already_set();
    for (std::size_t k = 0; k < count; ++k) {
        if (PyObject_GenericSetAttr(obj.ptr(), names[k], values[k].ptr()) != 0) {
            throw py::error_already_set();
        }
    }
    return obj;
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
    // PenaltyResult's fields in its order, interned once (tests/test_small_calls.py
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

// For adapters whose tensors are not NumPy arrays (softshare.torch), the whole
// step without Python in between. Each segment is (weights address, gradient
// address, n, float64?), the mixture (mu, log_var, logit addresses, M,
// float64?) and out (grad_mu, grad_log_var, grad_logit addresses of M
// outputs each, float64?): live, contiguous
// buffers the caller keeps alive for the call. Python passes only addresses it
// got from such tensors.
//
// accumulate: empty, or one flag per segment: whether its gradient is added
// to what its gradient address holds (driver.hpp, Runner::block).
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

// The compression recipe's functions (bind_recipe.cpp).
void register_recipe(py::module_& mod);
// The compressed model file's entropy coder (bind_codec.cpp).
void register_codec(py::module_& mod);
// The XLA FFI handler's capsule for softshare.jax (bind_jax.cpp).
void register_jax(py::module_& mod);

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "softshare's compiled kernel (private: use the softshare package).";
    // Processes forked from here on run the pass on one thread (runtime.hpp).
    sk::install_fork_guard();
    mod.def("penalty", &penalty, py::arg("weights"), py::arg("mu"), py::arg("log_var"),
            py::arg("logit"), py::arg("lam"), py::arg("n_threads"), py::arg("responsibilities"),
            py::arg("grads_out") = py::none(), py::arg("accumulate") = false,
            "Fused pass: returns (sum_L, check, stats (3, M), grads, gammas or None, totals); "
            "grad_w goes into grads_out's arrays when given (added to them with accumulate); "
            "totals is (value, grad_mu, grad_sigma, grad_log_var, grad_logit) or None when "
            "Python must finish. n_threads: "
            "0 OpenMP's default, -1 every core, k > 0 k threads (at most the cores and one per "
            "block_size weights).");
    mod.def("penalty_array", &penalty_array, py::arg("weights"), py::arg("mu"), py::arg("log_var"),
            py::arg("logit"), py::arg("lam"), py::arg("n_threads"), py::arg("responsibilities"),
            py::arg("result_type"), py::arg("out") = py::none(), py::arg("accumulate") = false,
            "penalty for one native float32/float64 C-contiguous ndarray of any shape and an out "
            "of its dtype and shape, C-contiguous and writeable, or None (else None): a "
            "result_type instance when the kernel finishes the totals, else penalty's tuple "
            "(flat grad_w).");
    mod.def("penalty_raw", &penalty_raw, py::arg("segments"), py::arg("mixture"), py::arg("lam"),
            py::arg("n_threads"), py::arg("out"), py::arg("accumulate") = std::vector<bool>(),
            "Fused pass over raw (weights address, grad address, n, float64?) segments and a "
            "raw mixture (mu, log_var, logit addresses, M, float64?): None for a mixture "
            "Mixture refuses, else (value or None, sum_L, check, stats (3, M)), the mixture "
            "gradients written to out (three addresses, float64?) when value is not None. "
            "accumulate: empty, or per segment whether grad_w is added to its buffer.");
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
    mod.def("_grouping", &grouping, py::arg("mu"), py::arg("log_var"), py::arg("logit"),
            py::arg("n_weights"), py::arg("f64"),
            "Testing hook: (grouped?, mean window, cells) of the plan for such a pass.");
    mod.attr("block_size") = sk::kBlockSize;

    register_codec(mod);
    register_recipe(mod);
    register_jax(mod);
}
