// The pass's memory: aligned scratch per thread, and the one-thread pass's cache of it.
//
// Python-free; compiled with baseline flags only (included through driver.hpp,
// never by kernel_isa.cpp). The kernels initialise what they read of their
// scratch (block-inl.hpp, grouped-inl.hpp), so what is cached here never
// changes a result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

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
// kernels initialise what they read of it (block-inl.hpp, grouped-inl.hpp), so
// a larger workspace, or one used before, serves as well as a fresh one (the
// cached workspace of the one-thread pass, run_penalty).
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

}  // namespace detail
}  // namespace kernel
}  // namespace softshare
