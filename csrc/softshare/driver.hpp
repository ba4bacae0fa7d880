// The driver of the fused pass: blocks, threads and the fixed-order reduction.
//
// Python-free; compiled with baseline flags only (included by bindings.cpp,
// never by kernel_isa.cpp), so it may use the standard library freely.
//
// The weights arrive as segments (one per array of the caller's list), each
// float32 or float64, contiguous. Every segment is cut into blocks of
// kBlockSize weights; blocks are processed in parallel in rounds of at most
// kRoundBytes of partial sums and the partials are folded into the totals
// strictly in block order, so the result does not depend on the number of
// threads or on the schedule, and the extra memory is bounded whatever N is.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "softshare/runtime.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// The result of one pass (its inputs, DType and Segment, are in types.hpp).
// Not in types.hpp because it owns a std::vector: types.hpp is also included by
// kernel_isa.cpp, compiled with AVX flags, and must stay plain data.
struct Totals {
    double sum_l = 0.0;         // sum_i L_i (Omega = -sum_l)
    double check = 0.0;         // NaN when some weight is not finite
    std::vector<double> stats;  // (3, M) row-major: S0, S1, S2
};

// Bytes of block partials kept at once: a round holds as many blocks as fit
// (thousands for small M), so memory stays bounded whatever N and M are.
constexpr std::int64_t kRoundBytes = std::int64_t(1) << 20;

inline std::int64_t round_blocks(std::int64_t psize) {
    const std::int64_t fit = kRoundBytes / (psize * static_cast<std::int64_t>(sizeof(double)));
    return fit > 1 ? fit : 1;
}

// The mixture precomputed once per call in float64 and rounded to T.
template <class T>
struct Components {
    Components(const double* mu_in, const double* log_var, const double* logit, std::int64_t m_in)
        : m(m_in), data(static_cast<std::size_t>(5 * m_in)) {
        double mx = logit[0];
        for (std::int64_t j = 1; j < m; ++j) mx = logit[j] > mx ? logit[j] : mx;
        double sum = 0.0;
        for (std::int64_t j = 0; j < m; ++j) sum += std::exp(logit[j] - mx);
        const double log_norm = mx + std::log(sum);
        const double half_log_2pi = 0.9189385332046728;  // 0.5 * ln(2 pi)
        const double log2e = 1.4426950408889634;
        const double t_max = static_cast<double>(std::numeric_limits<T>::max());
        for (std::int64_t j = 0; j < m; ++j) {
            const T mu_hi = static_cast<T>(mu_in[j]);
            const double mu_lo = mu_in[j] - static_cast<double>(mu_hi);
            const T r_t = static_cast<T>(std::sqrt(0.5 * log2e) * std::exp(-0.5 * log_var[j]));
            const double r_d = static_cast<double>(r_t);
            at(0, j) = mu_hi;
            at(1, j) = r_t;
            at(2, j) = static_cast<T>(mu_lo * r_d);
            at(3, j) =
                static_cast<T>(log2e * (logit[j] - log_norm - half_log_2pi - 0.5 * log_var[j]));
            at(4, j) = static_cast<T>(std::min(std::exp(-log_var[j]) / r_d, t_max));
        }
    }
    T& at(int row, std::int64_t j) { return data[static_cast<std::size_t>(row * m + j)]; }
    ComponentsView<T> view() const {
        const T* p = data.data();
        return {p, p + m, p + 2 * m, p + 3 * m, p + 4 * m, m};
    }

    std::int64_t m;
    std::vector<T> data;  // rows: mu, r, r_lo, c, a (see ComponentsView)
};

// Owns one thread's scratch for the block kernels.
template <class T>
struct Workspace {
    explicit Workspace(std::int64_t m)
        : buf(static_cast<std::size_t>(m * kMaxTileLanes)),
          sub(static_cast<std::size_t>(3 * m * kMaxTileLanes)),
          acc(static_cast<std::size_t>(3 * m * kMaxTileLanes)) {}
    Scratch<T> scratch() { return {buf.data(), sub.data(), acc.data()}; }

    std::vector<T> buf;
    std::vector<T> sub;
    std::vector<double> acc;
};

namespace detail {

struct Block {
    std::int64_t segment;
    std::int64_t begin;
    std::int64_t n;
};

template <class T>
void run_block(BlockFn<T> fn, const ComponentsView<T>& comp, const Segment& seg, const Block& b,
               T lam, double* partial, const Scratch<T>& scratch) {
    const T* w = static_cast<const T*>(seg.w) + b.begin;
    T* grad_w = static_cast<T*>(seg.grad_w) + b.begin;
    T* gamma = seg.gamma == nullptr ? nullptr : static_cast<T*>(seg.gamma) + b.begin * comp.m;
    fn(comp, w, grad_w, gamma, b.n, lam, partial, scratch);
}

struct Runner {
    const KernelTable& table;
    const std::vector<Segment>& segments;
    ComponentsView<float> comp32;
    ComponentsView<double> comp64;
    double lam;

    // One thread's scratch for both precisions.
    struct ThreadScratch {
        explicit ThreadScratch(std::int64_t m) : ws32(m), ws64(m) {}
        Workspace<float> ws32;
        Workspace<double> ws64;
    };

    void block(const Block& b, double* partial, ThreadScratch& ts) const {
        const Segment& seg = segments[static_cast<std::size_t>(b.segment)];
        if (seg.dtype == DType::f32) {
            run_block<float>(table.f32, comp32, seg, b, static_cast<float>(lam), partial,
                             ts.ws32.scratch());
        } else {
            run_block<double>(table.f64, comp64, seg, b, lam, partial, ts.ws64.scratch());
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

}  // namespace detail

// One fused pass over all segments. n_threads <= 0 means OpenMP's default.
// Preconditions, checked by the callers (bindings.cpp; python/softshare for
// finiteness): M >= 1, a finite mixture, and segments with outputs of their
// length.
inline Totals run_penalty(const KernelTable& table, const double* mu, const double* log_var,
                          const double* logit, std::int64_t m, double lam,
                          const std::vector<Segment>& segments, int n_threads) {
    const Components<float> comp32(mu, log_var, logit, m);
    const Components<double> comp64(mu, log_var, logit, m);
    const detail::Runner runner{table, segments, comp32.view(), comp64.view(), lam};

    // Block b of the whole problem lies in the segment s with
    // first_block[s] <= b < first_block[s + 1]: O(segments) memory, not O(N).
    std::vector<std::int64_t> first_block(segments.size() + 1, 0);
    for (std::size_t s = 0; s < segments.size(); ++s) {
        first_block[s + 1] = first_block[s] + (segments[s].n + kBlockSize - 1) / kBlockSize;
    }
    const std::int64_t n_blocks = first_block.back();
    const auto block_at = [&](std::int64_t b) {
        const auto it = std::upper_bound(first_block.begin(), first_block.end(), b);
        const auto s = static_cast<std::size_t>(it - first_block.begin()) - 1;
        const std::int64_t begin = (b - first_block[s]) * kBlockSize;
        return detail::Block{static_cast<std::int64_t>(s), begin,
                             std::min(kBlockSize, segments[s].n - begin)};
    };
    const std::int64_t psize = partial_size(m);

    Totals totals;
    totals.stats.assign(static_cast<std::size_t>(3 * m), 0.0);

    // Without OpenMP, default_threads() is 1 and n_threads is ignored.
    int threads = has_openmp() && n_threads > 0 ? n_threads : default_threads();
    threads = static_cast<int>(std::min<std::int64_t>(threads, n_blocks));

    if (threads <= 1) {
        // Small inputs or one thread: no parallel region at all.
        detail::Runner::ThreadScratch scratch(m);
        std::vector<double> partial(static_cast<std::size_t>(psize));
        for (std::int64_t b = 0; b < n_blocks; ++b) {
            runner.block(block_at(b), partial.data(), scratch);
            detail::fold(totals, partial.data(), m);
        }
        return totals;
    }

#ifdef _OPENMP
    // One fork-join per round (usually one round per call): the blocks of the
    // round in parallel, then their partials folded here in block order.
    const std::int64_t round_len = std::min(round_blocks(psize), n_blocks);
    std::vector<double> partials(static_cast<std::size_t>(round_len * psize));
    std::vector<std::unique_ptr<detail::Runner::ThreadScratch>> scratch(
        static_cast<std::size_t>(threads));
    for (std::int64_t r0 = 0; r0 < n_blocks; r0 += round_len) {
        const std::int64_t r1 = std::min(n_blocks, r0 + round_len);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::int64_t b = r0; b < r1; ++b) {
            auto& ts = scratch[static_cast<std::size_t>(omp_get_thread_num())];
            if (!ts) ts = std::make_unique<detail::Runner::ThreadScratch>(m);
            runner.block(block_at(b), partials.data() + (b - r0) * psize, *ts);
        }
        for (std::int64_t b = r0; b < r1; ++b) {
            detail::fold(totals, partials.data() + (b - r0) * psize, m);
        }
    }
#endif
    return totals;
}

}  // namespace kernel
}  // namespace softshare
