// One block of the fused pass: its dtype's fast kernel, then slower paths where that overflows.
//
// Python-free; compiled with baseline flags only (included through driver.hpp,
// never by kernel_isa.cpp). A float32 block goes to the float64 kernel when
// float32 cannot hold the mixture or its sums, and a block still not finite to
// the scalar float64 path (robust.hpp); what the block writes last is what the
// caller gets (added into the caller's gradient for an accumulating segment).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "softshare/grouping.hpp"
#include "softshare/robust.hpp"
#include "softshare/types.hpp"
#include "softshare/workspace.hpp"

namespace softshare {
namespace kernel {
namespace detail {

struct Block {
    std::int64_t segment;
    std::int64_t begin;
    std::int64_t n;
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
            if (seg.accumulate) prefetch(out, b.n);
            double* g = seg.accumulate ? block_buffer(ts.add64) : out;
            block_f64(seg, b, g, partial, ts);
            if (seg.accumulate) add_into(table.add_f64, out, g, b.n);
            return;
        }
        float* out = static_cast<float*>(seg.grad_w) + b.begin;
        if (seg.accumulate) prefetch(out, b.n);
        float* g = seg.accumulate ? block_buffer(ts.add32) : out;
        block_f32(seg, b, g, partial, ts);
        if (seg.accumulate) add_into(table.add_f32, out, g, b.n);
    }

    // The caller's gradient that the addition after the block's pass reads,
    // asked for (into L2) before the pass computes: a .grad fresh from the
    // backward pass is rarely in cache, and the addition, a phase of its own,
    // would otherwise wait on memory for every block (measured in a LeNet-5
    // training step, 1 thread: the accumulating pass 95 -> 77 us above the
    // pass writing a fresh array, of 1.3 ms). A read hint: baseline x86-64
    // has no write prefetch.
    template <class T>
    static void prefetch(const T* out, std::int64_t n) {
#if defined(__GNUC__)
        const char* p = reinterpret_cast<const char*>(out);
        const std::int64_t bytes = n * static_cast<std::int64_t>(sizeof(T));
        for (std::int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(p + at, 0, 2);
#else
        (void)out;
        (void)n;
#endif
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

}  // namespace detail
}  // namespace kernel
}  // namespace softshare
