// softshare's XLA FFI handler: the fused penalty pass inside a jitted JAX
// program (python/softshare/jax). Python-free: XLA calls it on its own
// threads, possibly while Python runs elsewhere (JAX dispatches CPU work
// asynchronously), so it reads and writes buffers only and reports every
// failure as an ffi::Error. Its own translation unit: the FFI headers (those
// of the oldest jaxlib supported, third_party/xla_ffi) are a SYSTEM include
// compiled without -Wpedantic (CMakeLists.txt); no pybind11 here.
//
// Call (python/softshare/jax/_ffi.py builds it):
//   arguments  lam (B...), mu, log_var, logit (B..., M), then one weights
//              array per leaf (B..., n_k): float32 or float64 each
//   results    value, sum_l (B...); grad_mu, grad_log_var, grad_logit
//              (B..., M); then one grad_w per leaf (B..., n_k), of the leaf's dtype
//   attributes n_threads (softshare.penalty's request), names (the leaves'
//              names for messages, one a line)
// B... are vmap's batch dimensions (vmap_method="expand_dims"): the results'
// are the call's, and an argument's batch dimensions must each equal the
// call's or be 1 (broadcast), else the call fails; every batch element is one
// pass of the kernel, with softshare.penalty's numbers and errors.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "softshare/dispatch.hpp"
#include "softshare/driver.hpp"
#include "softshare/finish.hpp"
#include "softshare/types.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
namespace sk = softshare::kernel;

namespace {

constexpr double kMaxAbsLogVar = 708.0;  // python/softshare/_mixture.py MAX_ABS_LOG_VAR

std::string number(double x) {
    if (std::isnan(x)) return "nan";
    if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", x);
    return buf;
}

ffi::Error invalid(const std::string& what) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "softshare.jax.penalty: " + what);
}

// One buffer of the call as batch dimensions over a core of `core` elements
// (its last core_rank dimensions).
struct Batched {
    char* data = nullptr;
    bool f64 = false;
    std::int64_t core = 1;
    std::vector<std::int64_t> step;  // per batch dimension of the call: elements, 0 if broadcast

    std::size_t bytes() const { return f64 ? sizeof(double) : sizeof(float); }
    // Address of batch element b's core (the call's batch index, row-major).
    char* at(const std::vector<std::int64_t>& index) const {
        std::int64_t offset = 0;
        for (std::size_t d = 0; d < step.size(); ++d) offset += index[d] * step[d];
        return data + static_cast<std::size_t>(offset) * bytes();
    }
    double get(const std::vector<std::int64_t>& index, std::int64_t j) const {
        const char* p = at(index);
        return f64 ? reinterpret_cast<const double*>(p)[j]
                   : static_cast<double>(reinterpret_cast<const float*>(p)[j]);
    }
    void put(const std::vector<std::int64_t>& index, std::int64_t j, double x) const {
        char* p = at(index);
        if (f64) {
            reinterpret_cast<double*>(p)[j] = x;
        } else {
            reinterpret_cast<float*>(p)[j] = static_cast<float>(x);
        }
    }
};

// The buffer as a Batched over the call's batch dimensions `batch`, with a
// core of core_rank dimensions; an empty string, or what is wrong.
std::string view(const ffi::AnyBuffer& buf, std::size_t core_rank,
                 const std::vector<std::int64_t>& batch, bool exact, const std::string& name,
                 Batched& out) {
    const ffi::DataType t = buf.element_type();
    if (t != ffi::DataType::F32 && t != ffi::DataType::F64) {
        return name + " must be float32 or float64";
    }
    const auto dims = buf.dimensions();
    const std::size_t rank = dims.size();
    if (rank < core_rank || rank - core_rank > batch.size()) {
        return name + " has " + std::to_string(rank) + " dimensions, expected " +
               std::to_string(core_rank) + " and at most " + std::to_string(batch.size()) +
               " batch dimensions";
    }
    out.data = static_cast<char*>(buf.untyped_data());
    out.f64 = t == ffi::DataType::F64;
    out.core = 1;
    for (std::size_t d = rank - core_rank; d < rank; ++d) out.core *= dims[d];
    out.step.assign(batch.size(), 0);
    const std::size_t own = rank - core_rank;  // right-aligned against the call's
    if (exact && own != batch.size()) return name + " does not have the call's batch dimensions";
    std::int64_t stride = out.core;
    for (std::size_t k = own; k-- > 0;) {
        const std::size_t d = batch.size() - own + k;
        if (dims[k] == batch[d]) {
            out.step[d] = batch[d] == 1 ? 0 : stride;
        } else if (dims[k] != 1 || exact) {
            return "batch dimensions do not match: " + name + " has size " +
                   std::to_string(dims[k]) + " where the call's batch has " +
                   std::to_string(batch[d]) + " (vmap over arrays of different batch sizes)";
        }
        stride *= dims[k];
    }
    return {};
}

// The name of leaf k for messages (names holds one a line).
std::string leaf_name(std::string_view names, std::size_t k) {
    std::size_t start = 0;
    for (std::size_t i = 0; i < k; ++i) {
        const std::size_t nl = names.find('\n', start);
        if (nl == std::string_view::npos) return "weights[" + std::to_string(k) + "]";
        start = nl + 1;
    }
    const std::size_t end = names.find('\n', start);
    std::string_view name = names.substr(start, end == std::string_view::npos ? end : end - start);
    return name.empty() ? "weights[" + std::to_string(k) + "]" : std::string(name);
}

template <class T>
std::int64_t first_not(const void* p, std::int64_t n, bool (*ok)(double)) {
    const T* x = static_cast<const T*>(p);
    for (std::int64_t i = 0; i < n; ++i) {
        if (!ok(static_cast<double>(x[i]))) return i;
    }
    return -1;
}

bool finite(double x) { return std::isfinite(x); }
bool not_nan(double x) { return !std::isnan(x); }

// The first bad value (per ok) of the segments' weights (grads false) or
// gradients: its message, or an empty string.
std::string find_bad(const std::vector<sk::Segment>& segments, std::string_view names, bool grads,
                     bool (*ok)(double)) {
    for (std::size_t k = 0; k < segments.size(); ++k) {
        const sk::Segment& s = segments[k];
        const void* p = grads ? s.grad_w : s.w;
        const bool f32 = s.dtype == sk::DType::f32;
        const std::int64_t i = f32 ? first_not<float>(p, s.n, ok) : first_not<double>(p, s.n, ok);
        if (i < 0) continue;
        const double x = f32 ? static_cast<double>(static_cast<const float*>(p)[i])
                             : static_cast<const double*>(p)[i];
        if (grads) {
            return "the penalty overflowed: its gradient for " + leaf_name(names, k) +
                   " at flat index " + std::to_string(i) + " is NaN";
        }
        return leaf_name(names, k) + " must be finite: found " + number(x) + " at flat index " +
               std::to_string(i);
    }
    return {};
}

// What softshare.penalty raises for these sums (python/softshare/_result.py,
// checked_totals), or an empty string when the pass is fine.
std::string check_totals(const sk::Totals& totals, const std::vector<sk::Segment>& segments,
                         const sk::MixtureF64& mix, double lam, std::string_view names) {
    const bool flagged = !std::isfinite(totals.check);
    if (flagged) {
        std::string bad = find_bad(segments, names, false, finite);
        if (!bad.empty()) return bad;
    }
    const double value = -lam * totals.sum_l;
    if (lam != 0.0 && !std::isfinite(value)) {
        return "the penalty overflowed: some weight is too far from every mixture component for "
               "its log-density to be represented (value = " +
               number(value) + "); rescale the weights or widen the components";
    }
    if (!flagged) return {};
    if (lam != 0.0) {
        std::string bad = find_bad(segments, names, true, not_nan);
        if (!bad.empty()) return bad;
    }
    for (std::size_t k = 0; k < totals.stats.size(); ++k) {
        if (!std::isnan(totals.stats[k])) continue;
        const auto m = static_cast<std::size_t>(mix.m);
        const std::size_t row = k / m, j = k % m;
        return "the penalty overflowed: the sum S" + std::to_string(row) + " of component " +
               std::to_string(j) + " (mu[" + std::to_string(j) + "] = " + number(mix.mu[j]) +
               ", log_var[" + std::to_string(j) + "] = " + number(mix.log_var[j]) +
               ") adds terms of both signs beyond float64's range; rescale the weights and the "
               "mixture";
    }
    return {};
}

// The mixture of one batch element as float64 rows (mu, log_var, logit), with
// softshare.Mixture's checks: an empty string, or what is wrong.
std::string read_mixture(const Batched* params, const std::vector<std::int64_t>& index,
                         std::int64_t m, std::vector<double>& rows) {
    static const char* const kNames[3] = {"mu", "log_var", "logit"};
    for (int r = 0; r < 3; ++r) {
        for (std::int64_t j = 0; j < m; ++j) {
            const double x = params[r].get(index, j);
            rows[static_cast<std::size_t>(r * m + j)] = x;
            if (std::isfinite(x) && (r != 1 || std::fabs(x) <= kMaxAbsLogVar)) continue;
            const std::string at = std::string(kNames[r]) + "[" + std::to_string(j) + "]";
            if (!std::isfinite(x)) {
                return std::string(kNames[r]) + " must be finite: " + at + " = " + number(x);
            }
            return at + " = " + number(x) +
                   " is outside the range [-708.0, 708.0]: sigma^2 = exp(log_var) and its "
                   "inverse must be normal float64 numbers";
        }
    }
    return {};
}

// Increments a row-major index over `shape`; false once past the end.
bool next(std::vector<std::int64_t>& index, const std::vector<std::int64_t>& shape) {
    for (std::size_t d = index.size(); d-- > 0;) {
        if (++index[d] < shape[d]) return true;
        index[d] = 0;
    }
    return false;
}

ffi::Error penalty_impl(ffi::AnyBuffer lam, ffi::AnyBuffer mu, ffi::AnyBuffer log_var,
                        ffi::AnyBuffer logit, ffi::RemainingArgs weights,
                        ffi::Result<ffi::AnyBuffer> value, ffi::Result<ffi::AnyBuffer> sum_l,
                        ffi::Result<ffi::AnyBuffer> grad_mu,
                        ffi::Result<ffi::AnyBuffer> grad_log_var,
                        ffi::Result<ffi::AnyBuffer> grad_logit, ffi::RemainingRets grads,
                        std::int64_t n_threads, std::string_view names) {
    const auto value_dims = value->dimensions();
    const std::vector<std::int64_t> batch(value_dims.begin(), value_dims.end());
    const std::size_t n_leaves = weights.size();
    if (grads.size() != n_leaves) return invalid("one grad_w result per weights array is needed");
    const auto mu_dims = mu.dimensions();
    if (mu_dims.size() == 0) return invalid("mu must be 1-D (one value per component)");
    const std::int64_t m = mu_dims[mu_dims.size() - 1];
    if (m < 1) return invalid("a mixture needs at least one component (M >= 1), got M = 0");

    // Every buffer as a Batched: inputs may broadcast (size-1 batch dimensions).
    Batched lam_b, sum_b, value_b, params[3], outs[3];
    std::string err = view(lam, 0, batch, false, "lam", lam_b);
    const ffi::AnyBuffer in_params[3] = {mu, log_var, logit};
    const char* const param_names[3] = {"mu", "log_var", "logit"};
    for (int r = 0; r < 3 && err.empty(); ++r) {
        err = view(in_params[r], 1, batch, false, param_names[r], params[r]);
        if (err.empty() && params[r].core != m) {
            err = "mu, log_var and logit must have the same length M";
        }
    }
    ffi::Result<ffi::AnyBuffer>* const rets[3] = {&grad_mu, &grad_log_var, &grad_logit};
    if (err.empty()) err = view(*value, 0, batch, true, "value", value_b);
    if (err.empty()) err = view(*sum_l, 0, batch, true, "sum_l", sum_b);
    for (int r = 0; r < 3 && err.empty(); ++r) {
        err = view(**rets[r], 1, batch, true, "a mixture gradient", outs[r]);
        if (err.empty() && outs[r].core != m) err = "a mixture gradient has the wrong length";
    }
    std::vector<Batched> w(n_leaves), g(n_leaves);
    for (std::size_t k = 0; k < n_leaves && err.empty(); ++k) {
        auto arg = weights.get<ffi::AnyBuffer>(k);
        auto ret = grads.get<ffi::AnyBuffer>(k);
        if (!arg.has_value() || !ret.has_value()) return invalid("a weights array is missing");
        const std::string name = leaf_name(names, k);
        err = view(*arg, 1, batch, false, name, w[k]);
        if (err.empty()) err = view(**ret, 1, batch, true, "the gradient of " + name, g[k]);
        if (err.empty() && (g[k].core != w[k].core || g[k].f64 != w[k].f64)) {
            err = "the gradient of " + name + " must have its length and dtype";
        }
    }
    if (!err.empty()) return invalid(err);

    std::vector<std::int64_t> index(batch.size(), 0);
    for (const std::int64_t d : batch) {
        if (d == 0) return ffi::Error::Success();  // an empty batch: nothing to compute
    }
    std::vector<double> rows(static_cast<std::size_t>(3 * m));
    std::vector<double> grad_rows(static_cast<std::size_t>(4 * m));
    double* const out_rows[4] = {grad_rows.data(), grad_rows.data() + m,
                                 grad_rows.data() + 2 * m, grad_rows.data() + 3 * m};
    std::vector<sk::Segment> segments(n_leaves);
    const sk::KernelTable table = sk::active_table();
    do {
        const double lam_x = lam_b.get(index, 0);
        if (!std::isfinite(lam_x) || lam_x < 0.0) {
            return invalid("lam must be finite and >= 0, got " + number(lam_x));
        }
        err = read_mixture(params, index, m, rows);
        if (!err.empty()) return invalid(err);
        for (std::size_t k = 0; k < n_leaves; ++k) {
            segments[k] = {w[k].f64 ? sk::DType::f64 : sk::DType::f32, w[k].at(index),
                           g[k].at(index), nullptr, w[k].core, false};
        }
        const sk::MixtureF64 mix(rows.data(), rows.data() + m, rows.data() + 2 * m, m);
        try {
            const sk::Totals totals =
                sk::run_penalty(table, mix.mu, mix.log_var, mix.logit, m, lam_x, segments,
                                static_cast<int>(n_threads), &mix);
            err = check_totals(totals, segments, mix, lam_x, names);
            if (!err.empty()) return invalid(err);
            const double v = sk::finish_totals(totals, segments, mix, lam_x, out_rows);
            value_b.put(index, 0, v);
            sum_b.put(index, 0, totals.sum_l);
        } catch (const std::bad_alloc&) {
            return ffi::Error(ffi::ErrorCode::kResourceExhausted,
                              "softshare.jax.penalty: not enough memory for the kernel's working "
                              "buffers (about 1 to 1.5 KB per component and thread)");
        } catch (const std::exception& e) {
            return invalid(e.what());
        }
        for (int r = 0; r < 3; ++r) {
            for (std::int64_t j = 0; j < m; ++j) outs[r].put(index, j, out_rows[r][j]);
        }
    } while (next(index, batch));
    return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(softshare_jax_penalty, penalty_impl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()  // lam
                                  .Arg<ffi::AnyBuffer>()  // mu
                                  .Arg<ffi::AnyBuffer>()  // log_var
                                  .Arg<ffi::AnyBuffer>()  // logit
                                  .RemainingArgs()        // weights, one per leaf
                                  .Ret<ffi::AnyBuffer>()  // value
                                  .Ret<ffi::AnyBuffer>()  // sum_l
                                  .Ret<ffi::AnyBuffer>()  // grad_mu
                                  .Ret<ffi::AnyBuffer>()  // grad_log_var
                                  .Ret<ffi::AnyBuffer>()  // grad_logit
                                  .RemainingRets()        // grad_w, one per leaf
                                  .Attr<std::int64_t>("n_threads")
                                  .Attr<std::string_view>("names"));

// The handler's address, for the capsule bind_jax.cpp hands to Python.
void* softshare_jax_penalty_handler() { return reinterpret_cast<void*>(&softshare_jax_penalty); }
