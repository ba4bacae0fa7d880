// The driver of the fused pass: blocks, threads and the fixed-order reduction.
//
// Python-free; compiled with baseline flags only (included by bindings.cpp,
// never by kernel_isa.cpp), so it may use the standard library freely.
//
// The weights arrive as segments (one per array of the caller's list), each
// float32 or float64, contiguous. Every segment is cut into blocks of
// kBlockSize weights; blocks are processed in parallel in rounds of at most
// kRoundBytes of partial sums (or one block per thread) and the partials are
// folded into the totals strictly in block order, so the result does not
// depend on the number of threads or on the schedule, and the extra memory is
// bounded whatever N is.
//
// Never silently wrong: a block whose partial sums come out NaN or infinite
// (inputs beyond what the fast kernels' precision holds: a float32 mixture
// constant that overflows, w - mu or (w - mu) / sigma beyond the float32 range,
// a far component's 0 * inf, ...) is computed again by a slower path, and
// float32 blocks go straight to the float64 kernel when the mixture's float32
// constants cannot hold it. What is still not finite after that is a real
// overflow: +-inf for a gradient or a sum beyond its type's range (its correctly
// rounded value), sum L = -inf for a weight whose log-density is not
// representable (the caller raises "the penalty overflowed",
// python/softshare/_result.py). All these choices depend on the data only,
// never on the threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "softshare/grouping.hpp"
#include "softshare/robust.hpp"
#include "softshare/runtime.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// The result of one pass (its inputs, DType and Segment, are in types.hpp).
// Not in types.hpp because it owns a std::vector: types.hpp is also included by
// kernel_isa.cpp, compiled with AVX flags, and must stay plain data.
struct Totals {
    double sum_l = 0.0;         // sum_i L_i (Omega = -sum_l)
    double check = 0.0;         // NaN: some weight not finite, or some output NaN
    std::vector<double> stats;  // (3, M) row-major: S0, S1, S2
};

// Bytes of block partials kept at once: a round holds as many blocks as fit
// (thousands for small M), so memory stays bounded whatever N and M are.
constexpr std::int64_t kRoundBytes = std::int64_t(1) << 20;

inline std::int64_t round_blocks(std::int64_t psize) {
    const std::int64_t fit = kRoundBytes / (psize * static_cast<std::int64_t>(sizeof(double)));
    return fit > 1 ? fit : 1;
}

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

// Allocates on cache-line (64-byte) boundaries: the kernels' vectors of up to
// 64 bytes in scratch then never straddle two lines, wherever malloc would have
// put the buffers.
template <class T>
struct CacheLineAllocator {
    using value_type = T;
    static constexpr std::align_val_t kAlign{64};
    CacheLineAllocator() = default;
    template <class U>
    CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kAlign); }
    template <class U>
    bool operator==(const CacheLineAllocator<U>&) const noexcept {
        return true;
    }
    template <class U>
    bool operator!=(const CacheLineAllocator<U>&) const noexcept {
        return false;
    }
};

template <class T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// Owns one thread's scratch for the block kernels of one precision, sized for
// vectors of `lanes` lanes (the instruction set in use), and for the grouped
// kernel's sort when `cells` > 0 (about 12 bytes per weight of a block). The
// kernels initialise what they read of it (block-inl.hpp), so a larger
// workspace, or one used before, serves as well as a fresh one (the cached
// workspace of the one-thread pass, run_penalty).
template <class T>
struct Workspace {
    Workspace(std::int64_t m, int lanes, std::int64_t cells)
        : buf(static_cast<std::size_t>(scratch_buf_size(m, lanes))),
          sub(static_cast<std::size_t>(scratch_sub_size(m, lanes))),
          acc(static_cast<std::size_t>(scratch_acc_size(m, lanes))),
          ws(static_cast<std::size_t>(cells > 0 ? kBlockSize : 0)),
          idx(ws.size()),
          cell(ws.size()),
          count(static_cast<std::size_t>(cells)) {}
    Scratch<T> scratch() {
        return {buf.data(), sub.data(),  acc.data(),  ws.data(),
                idx.data(), cell.data(), count.data()};
    }
    // Whether every buffer is at least as large as Workspace(m, lanes, cells)'s.
    bool fits(std::int64_t m, int lanes, std::int64_t cells) const {
        const auto at_least = [](std::size_t have, std::int64_t need) {
            return have >= static_cast<std::size_t>(need);
        };
        return at_least(buf.size(), scratch_buf_size(m, lanes)) &&
               at_least(sub.size(), scratch_sub_size(m, lanes)) &&
               at_least(acc.size(), scratch_acc_size(m, lanes)) &&
               at_least(ws.size(), cells > 0 ? kBlockSize : 0) && at_least(count.size(), cells);
    }
    std::size_t bytes() const {
        return (buf.size() + sub.size() + ws.size()) * sizeof(T) + acc.size() * sizeof(double) +
               (idx.size() + cell.size() + count.size()) * sizeof(std::int32_t);
    }

    AlignedVector<T> buf;
    AlignedVector<T> sub;
    AlignedVector<double> acc;
    AlignedVector<T> ws;
    std::vector<std::int32_t> idx, cell, count;
};

namespace detail {

struct Block {
    std::int64_t segment;
    std::int64_t begin;
    std::int64_t n;
};

// One thread's buffers, each made on first use (Runner::prepare: the ones a
// call is known to need, before the thread's first block) or grown when a
// call needs more than a cached one holds (one_thread_scratch).
struct ThreadScratch {
    std::unique_ptr<Workspace<float>> ws32;
    std::unique_ptr<Workspace<double>> ws64;
    // A float32 block computed by the float64 kernel, chunk by chunk.
    std::vector<double> w64, g64, gamma64, chunk_partial;
    // One block's partial sums (the one-thread pass).
    std::vector<double> partial;
    // A block's grad_w before it is added to an accumulating segment's.
    AlignedVector<float> add32;
    AlignedVector<double> add64;

    std::size_t bytes() const {
        const std::size_t doubles = w64.capacity() + g64.capacity() + gamma64.capacity() +
                                    chunk_partial.capacity() + partial.capacity() +
                                    add64.capacity();
        return (ws32 ? ws32->bytes() : 0) + (ws64 ? ws64->bytes() : 0) + doubles * sizeof(double) +
               add32.capacity() * sizeof(float);
    }
};

// The most bytes of scratch the one-thread pass keeps between calls.
constexpr std::size_t kCachedScratchBytes = std::size_t(1) << 20;

// The scratch of the one-thread pass (every call over fewer than 2 blocks, and
// every call with n_threads = 1): one per thread, kept between calls, so that a
// small call allocates and zero-fills nothing (that was about a fifth of a call
// over 10 weights). It grows to what a call needs and is released after a call
// that left it above kCachedScratchBytes: each thread that ever ran such a pass
// (the callers' threads, not OpenMP's workers) retains at most 1 MiB, in
// practice M x 1 to 1.5 KB (M components; about 50 KB more after a grouped
// pass) until it exits. Results do not depend on it (Workspace).
inline ThreadScratch& one_thread_scratch() {
    static thread_local ThreadScratch cached;
    return cached;
}

// Releases the cached scratch if it holds more than kCachedScratchBytes (on
// every exit of the one-thread pass, exceptions included).
struct TrimOnExit {
    ThreadScratch& ts;
    TrimOnExit(const TrimOnExit&) = delete;
    TrimOnExit& operator=(const TrimOnExit&) = delete;
    ~TrimOnExit() {
        if (ts.bytes() > kCachedScratchBytes) ts = ThreadScratch{};
    }
};

struct Runner {
    const KernelTable& table;
    const std::vector<Segment>& segments;
    ComponentsView<float> comp32;
    ComponentsView<double> comp64;
    double lam;
    bool f32_fast;  // float32 holds the mixture's constants and lam: the float32 kernel
    bool gamma;     // responsibilities are asked for
    const Grouping<float>& group32;  // the grouped kernels' plans (grouping.hpp)
    const Grouping<double>& group64;

    std::int64_t m() const { return comp64.m; }

    // Weights per chunk of a float32 block in the float64 kernel: the whole
    // block, or at most 1 MiB of float64 responsibilities.
    std::int64_t upcast_chunk() const {
        if (!gamma) return kBlockSize;
        const std::int64_t fit = (std::int64_t(1) << 17) / m() / kMaxTileLanes * kMaxTileLanes;
        return std::max<std::int64_t>(kMaxTileLanes, std::min(kBlockSize, fit));
    }

    Workspace<float>& ws32(ThreadScratch& ts) const {
        const std::int64_t cells = group32.active ? group32.view().cells : 0;
        if (!ts.ws32 || !ts.ws32->fits(m(), table.lanes_f32, cells)) {
            ts.ws32.reset();  // the old one first: at most one is held at a time
            ts.ws32 = std::make_unique<Workspace<float>>(m(), table.lanes_f32, cells);
        }
        return *ts.ws32;
    }
    Workspace<double>& ws64(ThreadScratch& ts) const {
        const std::int64_t cells = group64.active ? group64.view().cells : 0;
        if (!ts.ws64 || !ts.ws64->fits(m(), table.lanes_f64, cells)) {
            ts.ws64.reset();
            ts.ws64 = std::make_unique<Workspace<double>>(m(), table.lanes_f64, cells);
        }
        return *ts.ws64;
    }
    // Each buffer checked on its own: a cached ThreadScratch may come from a
    // call with another M, or without responsibilities.
    void upcast_buffers(ThreadScratch& ts) const {
        const auto chunk = static_cast<std::size_t>(upcast_chunk());
        const auto grow = [](std::vector<double>& v, std::size_t n) {
            if (v.size() < n) v.resize(n);
        };
        grow(ts.w64, chunk);
        grow(ts.g64, chunk);
        if (gamma) grow(ts.gamma64, chunk * static_cast<std::size_t>(m()));
        grow(ts.chunk_partial, static_cast<std::size_t>(partial_size(m())));
    }

    // Makes the buffers a call with these dtypes needs (the slow paths' others
    // are made on first use).
    void prepare(ThreadScratch& ts, bool any32, bool any64) const {
        if (any32 && f32_fast) ws32(ts);
        if (any64 || (any32 && !f32_fast)) ws64(ts);
        if (any32 && !f32_fast) upcast_buffers(ts);
    }

    // One block: its grad_w into the segment's outputs or, for a segment that
    // accumulates, into the thread's block buffer first and then added to
    // them. The block's fast pass may be computed again by a slow path (below)
    // that overwrites what it wrote, so only the block's final grad_w may meet
    // the caller's: out[i] + g_i with g_i exactly the value written without
    // accumulate (+0 for lam = 0, as the bindings' native_totals writes it),
    // added in the dtype. The buffer is L1-resident: the addition (table.add_*,
    // the widest vectors) costs about a percent of the block's pass.
    void block(const Block& b, double* partial, ThreadScratch& ts) const {
        const Segment& seg = segments[static_cast<std::size_t>(b.segment)];
        if (seg.dtype == DType::f64) {
            double* out = static_cast<double*>(seg.grad_w) + b.begin;
            double* g = seg.accumulate ? block_buffer(ts.add64) : out;
            block_f64(seg, b, g, partial, ts);
            if (seg.accumulate) add_into(table.add_f64, out, g, b.n);
            return;
        }
        float* out = static_cast<float*>(seg.grad_w) + b.begin;
        float* g = seg.accumulate ? block_buffer(ts.add32) : out;
        block_f32(seg, b, g, partial, ts);
        if (seg.accumulate) add_into(table.add_f32, out, g, b.n);
    }

    template <class T>
    static T* block_buffer(AlignedVector<T>& buf) {
        if (buf.size() < static_cast<std::size_t>(kBlockSize)) {
            buf.resize(static_cast<std::size_t>(kBlockSize));
        }
        return buf.data();
    }

    // out += g by the instruction set's vectors (add); for lam = 0, out += +0.
    template <class T>
    void add_into(ArrayFn<T> add, T* out, T* g, std::int64_t n) const {
        if (lam == 0.0) std::fill(g, g + n, T(0));
        add(g, out, n);
    }

    void block_f64(const Segment& seg, const Block& b, double* g, double* partial,
                   ThreadScratch& ts) const {
        const double* w = static_cast<const double*>(seg.w) + b.begin;
        double* gam = seg.gamma ? static_cast<double*>(seg.gamma) + b.begin * m() : nullptr;
        const Scratch<double> scratch = ws64(ts).scratch();
        if (!group64.active || !table.f64_grouped(group64.comp(), group64.view(), w, g, gam, b.n,
                                                  lam, partial, scratch)) {
            table.f64(comp64, w, g, gam, b.n, lam, partial, scratch);
        }
        if (!all_finite(partial, partial_size(m()))) {
            robust_block<double>(comp64, w, g, gam, b.n, lam, partial);
        }
    }

    void block_f32(const Segment& seg, const Block& b, float* g, double* partial,
                   ThreadScratch& ts) const {
        const std::int64_t psize = partial_size(m());
        const float* w = static_cast<const float*>(seg.w) + b.begin;
        float* gam = seg.gamma ? static_cast<float*>(seg.gamma) + b.begin * m() : nullptr;
        if (f32_fast) {
            const Scratch<float> scratch = ws32(ts).scratch();
            const auto lam32 = static_cast<float>(lam);
            if (!group32.active || !table.f32_grouped(group32.comp(), group32.view(), w, g, gam,
                                                      b.n, lam32, partial, scratch)) {
                table.f32(comp32, w, g, gam, b.n, lam32, partial, scratch);
            }
            if (all_finite(partial, psize)) return;
        }
        upcast(w, g, gam, b.n, partial, ts);
        if (!all_finite(partial, psize)) robust_block<float>(comp64, w, g, gam, b.n, lam, partial);
    }

    // A float32 block through the float64 kernel, chunk by chunk; outputs cast
    // back to float32 (a gradient beyond float32's range is +-inf, its rounding).
    void upcast(const float* w, float* g, float* gam, std::int64_t n, double* partial,
                ThreadScratch& ts) const {
        upcast_buffers(ts);
        Workspace<double>& ws = ws64(ts);
        const std::int64_t chunk = upcast_chunk();
        const std::int64_t psize = partial_size(m());
        double* cp = ts.chunk_partial.data();
        std::fill(partial, partial + psize, 0.0);
        for (std::int64_t c0 = 0; c0 < n; c0 += chunk) {
            const std::int64_t cn = std::min(chunk, n - c0);
            for (std::int64_t i = 0; i < cn; ++i) ts.w64[static_cast<std::size_t>(i)] = w[c0 + i];
            table.f64(comp64, ts.w64.data(), ts.g64.data(), gam ? ts.gamma64.data() : nullptr, cn,
                      lam, cp, ws.scratch());
            for (std::int64_t i = 0; i < cn; ++i) {
                g[c0 + i] = static_cast<float>(ts.g64[static_cast<std::size_t>(i)]);
            }
            if (gam != nullptr) {
                for (std::int64_t k = 0; k < cn * m(); ++k) {
                    gam[c0 * m() + k] = static_cast<float>(ts.gamma64[static_cast<std::size_t>(k)]);
                }
            }
            for (std::int64_t k = 0; k < psize; ++k) partial[k] += cp[k];
        }
    }
};

inline void fold(Totals& totals, const double* partial, std::int64_t m) {
    totals.sum_l += partial[0];
    totals.check += partial[1];
    for (std::int64_t k = 0; k < 3 * m; ++k) {
        totals.stats[static_cast<std::size_t>(k)] += partial[2 + k];
    }
}

// A sum can only be NaN as inf - inf of two blocks' sums beyond float64 (S1):
// flagged in check, which the caller reads on every call.
inline void flag_nan_sums(Totals& totals) {
    for (const double x : totals.stats) {
        if (std::isnan(x)) totals.check = std::numeric_limits<double>::quiet_NaN();
    }
}

}  // namespace detail

// The threads a request n_threads stands for: 0 OpenMP's default, -1 every
// core, k > 0 k threads; more than one, at most the cores of this process's
// affinity (cpu_count, a system call). As python/softshare's as_n_threads.
inline int requested_threads(int n_threads) {
    const int k = n_threads == -1 ? cpu_count() : n_threads > 0 ? n_threads : default_threads();
    return k <= 1 ? 1 : std::min(k, cpu_count());
}

// The threads of a pass over n_blocks blocks of n_total weights in all:
// requested_threads(n_threads), but at most one per block and per kBlockSize
// weights (many short segments, a network's biases, make many small blocks:
// not enough work to share), and one without OpenMP and in a fork()ed child
// (runtime.hpp). A pass with work for one thread asks the system nothing.
inline int pass_threads(int n_threads, std::int64_t n_blocks, std::int64_t n_total) {
    const std::int64_t work = std::min(n_blocks, (n_total + kBlockSize - 1) / kBlockSize);
    if (work <= 1 || !has_openmp() || in_forked_child()) return 1;
    return static_cast<int>(std::min<std::int64_t>(requested_threads(n_threads), work));
}

// One fused pass over all segments, on pass_threads(n_threads, ...) threads.
// Preconditions, checked by the callers (bindings.cpp; python/softshare for
// finiteness): M >= 1, a finite mixture, lam finite and >= 0, and segments with
// outputs of their length, no output overlapping any weights or, where one
// accumulates, any other output. A mixture whose float64 constants are not
// normal numbers (|log_var| beyond about 708) raises std::domain_error.
//
// Memory: the scratch of the precisions the segments use, per thread, sized
// for the instruction set in use (about M x 1,088 bytes per thread for float32 on
// AVX-512, some 50 KB more for the grouped kernel's sort, and one block's
// gradient, 16 or 32 KB, for accumulating segments); a pass on one
// thread uses, and keeps, its thread's cached scratch (one_thread_scratch). An
// allocation failure is a std::bad_alloc from this function: nothing may throw
// out of the parallel region, so what a block throws (its thread's scratch,
// made on its first block, or a slow path's buffer) is kept and rethrown here
// after the region.
inline Totals run_penalty(const KernelTable& table, const double* mu, const double* log_var,
                          const double* logit, std::int64_t m, double lam,
                          const std::vector<Segment>& segments, int n_threads,
                          const MixtureF64* mixture = nullptr) {
    bool any32 = false, any64 = false, gamma = false;
    std::int64_t n32 = 0, n64 = 0, n_blocks = 0;
    for (const Segment& seg : segments) {
        n_blocks += (seg.n + kBlockSize - 1) / kBlockSize;
        if (seg.n == 0) continue;
        (seg.dtype == DType::f32 ? any32 : any64) = true;
        (seg.dtype == DType::f32 ? n32 : n64) += seg.n;
        gamma = gamma || seg.gamma != nullptr;
    }
    // The float64 intermediates once for both precisions (the caller's, when it
    // made them for the mixture gradients too).
    std::optional<MixtureF64> own;
    if (mixture == nullptr) mixture = &own.emplace(mu, log_var, logit, m);
    const Components<float> comp32(*mixture);
    const Components<double> comp64(*mixture);
    if (!comp64.exact()) throw component_error(comp64.first_bad, log_var);
    // float32 holds lam unless it is a subnormal or beyond float32's range.
    const float lam32 = static_cast<float>(lam);
    const bool f32_fast = comp32.exact() && (lam == 0.0 || std::isnormal(lam32));
    // Narrow mixtures of many components: the grouped kernels (grouping.hpp),
    // planned from the mixture and the weights' count only.
    const Grouping<float> group32 =
        f32_fast ? plan_grouping(comp32.view(), n32) : Grouping<float>{};
    const Grouping<double> group64 = plan_grouping(comp64.view(), n64);
    const detail::Runner runner{table,    segments, comp32.view(), comp64.view(), lam,
                                f32_fast, gamma,    group32,       group64};
    const std::int64_t psize = partial_size(m);

    Totals totals;
    totals.stats.assign(static_cast<std::size_t>(3 * m), 0.0);
    if (n_blocks == 0) return totals;

    const std::int64_t n_total = n32 + n64;
    const int threads = pass_threads(n_threads, n_blocks, n_total);
    if (threads <= 1) {
        // Small inputs, one thread or a forked child: no parallel region at
        // all, and the blocks in order, segment by segment.
        detail::ThreadScratch& scratch = detail::one_thread_scratch();
        const detail::TrimOnExit trim{scratch};
        runner.prepare(scratch, any32, any64);
        if (scratch.partial.size() < static_cast<std::size_t>(psize)) {
            scratch.partial.resize(static_cast<std::size_t>(psize));
        }
        double* partial = scratch.partial.data();
        for (std::size_t s = 0; s < segments.size(); ++s) {
            for (std::int64_t begin = 0; begin < segments[s].n; begin += kBlockSize) {
                const detail::Block b{static_cast<std::int64_t>(s), begin,
                                      std::min(kBlockSize, segments[s].n - begin)};
                runner.block(b, partial, scratch);
                detail::fold(totals, partial, m);
            }
        }
        detail::flag_nan_sums(totals);
        return totals;
    }

#ifdef _OPENMP
    // Block b of the whole problem lies in the segment s with
    // first_block[s] <= b < first_block[s + 1]: O(segments) memory, not O(N).
    std::vector<std::int64_t> first_block(segments.size() + 1, 0);
    for (std::size_t s = 0; s < segments.size(); ++s) {
        first_block[s + 1] = first_block[s] + (segments[s].n + kBlockSize - 1) / kBlockSize;
    }
    const auto block_at = [&](std::int64_t b) {
        const auto it = std::upper_bound(first_block.begin(), first_block.end(), b);
        const auto s = static_cast<std::size_t>(it - first_block.begin()) - 1;
        const std::int64_t begin = (b - first_block[s]) * kBlockSize;
        return detail::Block{static_cast<std::int64_t>(s), begin,
                             std::min(kBlockSize, segments[s].n - begin)};
    };

    // One fork-join per round (usually one round per call): the blocks of the
    // round in parallel, then their partials folded here in block order. A
    // round holds at least one block per thread.
    const std::int64_t round_len =
        std::min(std::max<std::int64_t>(round_blocks(psize), threads), n_blocks);
    std::vector<double> partials(static_cast<std::size_t>(round_len * psize));
    // Each thread makes its own scratch on its first block (memory it alone
    // touches, allocated from its own arena: made here by the calling thread,
    // the two threads' buffers end up adjacent and the pass runs 5-10% slower).
    std::vector<detail::ThreadScratch> scratch(static_cast<std::size_t>(threads));
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    for (std::int64_t r0 = 0; r0 < n_blocks; r0 += round_len) {
        const std::int64_t r1 = std::min(n_blocks, r0 + round_len);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::int64_t b = r0; b < r1; ++b) {
            const auto t = static_cast<std::size_t>(omp_get_thread_num());
            if (errors[t]) continue;
            try {
                runner.prepare(scratch[t], any32, any64);
                runner.block(block_at(b), partials.data() + (b - r0) * psize, scratch[t]);
            } catch (...) {
                errors[t] = std::current_exception();
            }
        }
        for (const std::exception_ptr& e : errors) {
            if (e) std::rethrow_exception(e);
        }
        for (std::int64_t b = r0; b < r1; ++b) {
            detail::fold(totals, partials.data() + (b - r0) * psize, m);
        }
    }
    detail::flag_nan_sums(totals);
#endif
    return totals;
}

}  // namespace kernel
}  // namespace softshare
