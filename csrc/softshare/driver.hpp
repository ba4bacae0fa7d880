// The driver of the fused pass: blocks, threads and the fixed-order reduction.
//
// Python-free; compiled with baseline flags only (included by the bindings
// and jax_ffi.cpp, never by kernel_isa.cpp), so it may use the standard library freely. Its
// parts: the mixture's constants (mixture.hpp), the threads' scratch
// (workspace.hpp) and one block's pass with its slow paths (runner.hpp).
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
#include <exception>
#include <limits>
#include <optional>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "softshare/grouping.hpp"
#include "softshare/mixture.hpp"
#include "softshare/runner.hpp"
#include "softshare/runtime.hpp"
#include "softshare/types.hpp"
#include "softshare/workspace.hpp"

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

namespace detail {

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
// Preconditions, checked by the callers (bind_pass.hpp; python/softshare for
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
