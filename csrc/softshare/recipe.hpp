// The driver of the compression recipe's per-weight passes over one or several
// arrays (segments), cut into blocks whose boundaries depend only on the
// arrays' lengths (and, for offset_sums, on the codebook's size), never on the
// threads: the blocks and threads shared by all of them, dequantize and
// offset_sums here, assign in assign.hpp, sparse_counts in sparse.hpp.
//
// Python-free; compiled with baseline flags only (included by bind_recipe.cpp,
// never by recipe_isa.cpp), so it may use the standard library freely. The
// per-target kernels are recipe-inl.hpp's.
//
// Determinism: counts are integers, summed exactly whatever the order, so
// each thread keeps its own and they are added up after the pass. The float64
// sums of offset_sums are made per block, in position order, and folded into
// the totals strictly in block order, as the penalty's (driver.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "softshare/driver.hpp"
#include "softshare/recipe_types.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

inline std::size_t index_bytes(IndexType t) {
    switch (t) {
        case IndexType::u8: return 1;
        case IndexType::u16: return 2;
        case IndexType::u32: return 4;
        case IndexType::i64: return 8;
    }
    return 8;
}

inline std::size_t value_bytes(DType t) { return t == DType::f32 ? 4 : 8; }

// The index at position i of an index array, as read (an int64 may be negative).
inline std::int64_t index_at(const void* p, IndexType t, std::int64_t i) {
    switch (t) {
        case IndexType::u8: return static_cast<const std::uint8_t*>(p)[i];
        case IndexType::u16: return static_cast<const std::uint16_t*>(p)[i];
        case IndexType::u32: return static_cast<const std::uint32_t*>(p)[i];
        case IndexType::i64: return static_cast<const std::int64_t*>(p)[i];
    }
    return 0;
}

// One array of the caller's list: n weights (or none), n indices (or none) and
// n outputs (or none), as the pass reads and writes them.
struct RecipeSegment {
    DType dtype;         // of w (assign, offset_sums) or of out (dequantize)
    const void* w;       // n weights, or nullptr
    IndexType idx_type;  // of idx
    void* idx;           // n indices: assign's output, the others' input
    void* out;           // dequantize's n values, else nullptr
    std::int64_t n;
};

// An index not below the codebook's size: its array, position and value.
struct BadIndex {
    std::size_t segment;
    std::int64_t position;
    std::int64_t value;
};

namespace recipe_detail {

// Block b of segments cut into blocks of block_len: O(segments) memory.
struct BlockMap {
    struct At {
        std::size_t segment;
        std::int64_t begin;
        std::int64_t n;
    };
    BlockMap(const std::vector<RecipeSegment>& segments, std::int64_t len)
        : block_len(len), first(segments.size() + 1, 0), lengths(segments.size()) {
        for (std::size_t s = 0; s < segments.size(); ++s) {
            lengths[s] = segments[s].n;
            first[s + 1] = first[s] + (segments[s].n + len - 1) / len;
            total += segments[s].n;
        }
    }
    std::int64_t blocks() const { return first.back(); }
    At at(std::int64_t b) const {
        const auto it = std::upper_bound(first.begin(), first.end(), b);
        const auto s = static_cast<std::size_t>(it - first.begin()) - 1;
        const std::int64_t begin = (b - first[s]) * block_len;
        return {s, begin, std::min(block_len, lengths[s] - begin)};
    }
    std::int64_t block_len;
    std::vector<std::int64_t> first;  // first[s]: the first block of segment s
    std::vector<std::int64_t> lengths;
    std::int64_t total = 0;
};

// body(thread, b) for the blocks b0 <= b < b1 on `threads` threads (statically
// scheduled); what a block throws is kept and rethrown after the region
// (nothing may leave it), the first thread's first.
template <class Body>
void parallel_blocks(std::int64_t b0, std::int64_t b1, int threads, const Body& body) {
#ifdef _OPENMP
    if (threads > 1) {
        std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
#pragma omp parallel for num_threads(threads) schedule(static)
        for (std::int64_t b = b0; b < b1; ++b) {
            const int t = omp_get_thread_num();
            if (errors[static_cast<std::size_t>(t)]) continue;
            try {
                body(t, b);
            } catch (...) {
                errors[static_cast<std::size_t>(t)] = std::current_exception();
            }
        }
        for (const std::exception_ptr& e : errors) {
            if (e) std::rethrow_exception(e);
        }
        return;
    }
#endif
    for (std::int64_t b = b0; b < b1; ++b) body(0, b);
}

// The first bad index a thread met: its block (the smallest) and place.
struct FirstBad {
    std::int64_t block = -1;
    BadIndex bad{};
    void note(std::int64_t b, const BadIndex& at) {
        if (block < 0 || b < block) {
            block = b;
            bad = at;
        }
    }
};

inline std::optional<BadIndex> first_of(const std::vector<FirstBad>& found) {
    const FirstBad* first = nullptr;
    for (const FirstBad& f : found) {
        if (f.block >= 0 && (first == nullptr || f.block < first->block)) first = &f;
    }
    if (first == nullptr) return std::nullopt;
    return first->bad;
}

// Adds each thread's copies of M counts (kCountCopies x M each) into M totals.
inline std::vector<std::int64_t> sum_counts(const std::vector<std::vector<std::int64_t>>& per,
                                            std::int64_t m) {
    std::vector<std::int64_t> total(static_cast<std::size_t>(m), 0);
    for (const auto& c : per) {
        for (std::size_t k = 0; k < c.size(); ++k) total[k % total.size()] += c[k];
    }
    return total;
}

}  // namespace recipe_detail

// out[i] = book[idx[i]] (segments: idx, idx_type, out, dtype = the book's, n).
// Returns the first index not below k, if any: its out[i], and any of its
// block's, may then have been written (with book[0]); nothing is written out
// of bounds.
inline std::optional<BadIndex> run_dequantize(const RecipeTable& table, const void* book,
                                              std::int64_t k,
                                              const std::vector<RecipeSegment>& segments,
                                              int n_threads) {
    const recipe_detail::BlockMap map(segments, kBlockSize);
    const int threads = pass_threads(n_threads, map.blocks(), map.total);
    std::vector<recipe_detail::FirstBad> found(static_cast<std::size_t>(threads));
    recipe_detail::parallel_blocks(0, map.blocks(), threads, [&](int t, std::int64_t b) {
        const auto at = map.at(b);
        const RecipeSegment& seg = segments[at.segment];
        const void* idx = static_cast<const char*>(seg.idx) + at.begin * index_bytes(seg.idx_type);
        void* out = static_cast<char*>(seg.out) + at.begin * value_bytes(seg.dtype);
        const std::int64_t bad = table.dequantize(idx, seg.idx_type, book, seg.dtype, k, out, at.n);
        if (bad >= 0) {
            const std::int64_t pos = at.begin + bad;
            found[static_cast<std::size_t>(t)].note(
                b, {at.segment, pos, index_at(seg.idx, seg.idx_type, pos)});
        }
    });
    return recipe_detail::first_of(found);
}

// How offset_sums cuts the weights, for a codebook of k values: blocks of
// block_len weights (kBlockSize, more for large codebooks, so that folding a
// block's k sums stays cheap next to its weights), each summed in `copies`
// interleaved runs (position modulo copies: a run of equal indices is then
// not one chain of dependent additions), added up in run order. Depends on k
// only; python/softshare/reference.py's offset_sums follows the same layout.
struct OffsetLayout {
    std::int64_t block_len;
    std::int64_t copies;
};

inline OffsetLayout offset_layout(std::int64_t k) {
    const std::int64_t per = 1024;  // codebook values per kBlockSize weights
    return {kBlockSize * std::max<std::int64_t>(1, (k + per - 1) / per), k <= per ? 4 : 1};
}

struct OffsetTotals {
    std::vector<double> sums;         // k: sum of double(w - book[idx]) per index
    std::vector<std::int64_t> counts;  // k
    std::optional<BadIndex> bad;      // the first index not below k (the rest unset)
};

namespace recipe_detail {

// One block: c[(i mod copies) k + v] += double(w[i] - book[v]), n[...] += 1,
// v = idx[i], in position order; returns the position of the first index not
// below k (the block's sums then unfinished), or -1.
template <class T, class I>
std::int64_t offset_block(const T* w, const I* idx, const T* book, std::int64_t k, std::int64_t n,
                          std::int64_t copies, double* c, std::int64_t* cnt) {
    const auto uk = static_cast<std::uint64_t>(k);
    for (std::int64_t i = 0; i < n; ++i) {
        const auto v = static_cast<std::uint64_t>(idx[i]);
        if (v >= uk) return i;
        const T diff = w[i] - book[v];  // in the weights' dtype
        const std::int64_t at = (i & (copies - 1)) * k + static_cast<std::int64_t>(v);
        c[at] += static_cast<double>(diff);
        ++cnt[at];
    }
    return -1;
}

template <class T>
std::int64_t offset_block_any(const RecipeSegment& seg, std::int64_t begin, const T* book,
                              std::int64_t k, std::int64_t n, std::int64_t copies, double* c,
                              std::int64_t* cnt) {
    const T* w = static_cast<const T*>(seg.w) + begin;
    const void* p = seg.idx;
    switch (seg.idx_type) {
        case IndexType::u8:
            return offset_block(w, static_cast<const std::uint8_t*>(p) + begin, book, k, n, copies,
                                c, cnt);
        case IndexType::u16:
            return offset_block(w, static_cast<const std::uint16_t*>(p) + begin, book, k, n,
                                copies, c, cnt);
        case IndexType::u32:
            return offset_block(w, static_cast<const std::uint32_t*>(p) + begin, book, k, n,
                                copies, c, cnt);
        case IndexType::i64:
            return offset_block(w, static_cast<const std::int64_t*>(p) + begin, book, k, n,
                                copies, c, cnt);
    }
    return -1;
}

}  // namespace recipe_detail

// Per codebook index v < k: the float64 sum of (w_i - book[v]) (the difference
// in the weights' dtype, every segment's dtype the book's) over the weights
// with idx_i = v, and their count. Blocks of offset_layout(k); each block's
// sums are folded into the totals in block order, in rounds of at most
// kRoundBytes of block sums (at least one block per thread).
inline OffsetTotals run_offset_sums(const void* book, DType dtype, std::int64_t k,
                                    const std::vector<RecipeSegment>& segments, int n_threads) {
    const OffsetLayout lay = offset_layout(k);
    const recipe_detail::BlockMap map(segments, lay.block_len);
    const std::int64_t n_blocks = map.blocks();
    const int threads = pass_threads(n_threads, n_blocks, map.total);
    const auto uk = static_cast<std::size_t>(k);
    OffsetTotals totals{std::vector<double>(uk, 0.0), std::vector<std::int64_t>(uk, 0), {}};
    if (n_blocks == 0) return totals;
    const std::int64_t round_len = std::min(
        n_blocks, std::max<std::int64_t>(threads, round_blocks(std::max<std::int64_t>(k, 1))));
    std::vector<double> partials(static_cast<std::size_t>(round_len) * uk);
    struct State {
        std::vector<double> sums;          // copies x k
        std::vector<std::int64_t> counts;  // copies x k, every block of the thread
    };
    std::vector<State> state(static_cast<std::size_t>(threads));
    std::vector<recipe_detail::FirstBad> found(static_cast<std::size_t>(threads));
    const auto copies = static_cast<std::size_t>(lay.copies);
    for (std::int64_t r0 = 0; r0 < n_blocks; r0 += round_len) {
        const std::int64_t r1 = std::min(n_blocks, r0 + round_len);
        recipe_detail::parallel_blocks(r0, r1, threads, [&](int t, std::int64_t b) {
            State& st = state[static_cast<std::size_t>(t)];
            if (st.counts.empty()) st.counts.assign(copies * uk, 0);
            st.sums.assign(copies * uk, 0.0);
            const auto at = map.at(b);
            const RecipeSegment& seg = segments[at.segment];
            const std::int64_t bad =
                dtype == DType::f32
                    ? recipe_detail::offset_block_any(seg, at.begin, static_cast<const float*>(book),
                                                      k, at.n, lay.copies, st.sums.data(),
                                                      st.counts.data())
                    : recipe_detail::offset_block_any(seg, at.begin,
                                                      static_cast<const double*>(book), k, at.n,
                                                      lay.copies, st.sums.data(), st.counts.data());
            if (bad >= 0) {
                const std::int64_t pos = at.begin + bad;
                found[static_cast<std::size_t>(t)].note(
                    b, {at.segment, pos, index_at(seg.idx, seg.idx_type, pos)});
            }
            double* part = partials.data() + static_cast<std::size_t>(b - r0) * uk;
            for (std::size_t v = 0; v < uk; ++v) {  // ((c0 + c1) + c2) + c3
                double s = st.sums[v];
                for (std::size_t r = 1; r < copies; ++r) s += st.sums[r * uk + v];
                part[v] = s;
            }
        });
        totals.bad = recipe_detail::first_of(found);
        if (totals.bad) return totals;
        for (std::int64_t b = r0; b < r1; ++b) {
            const double* part = partials.data() + static_cast<std::size_t>(b - r0) * uk;
            for (std::size_t v = 0; v < uk; ++v) totals.sums[v] += part[v];
        }
    }
    std::vector<std::vector<std::int64_t>> counts;
    for (State& st : state) counts.push_back(std::move(st.counts));
    totals.counts = recipe_detail::sum_counts(counts, k);
    return totals;
}

}  // namespace kernel
}  // namespace softshare
