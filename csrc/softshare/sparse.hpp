// The statistics of Han et al.'s relative-index sparse stream of one layer's
// codebook indices (python/softshare/_codes.py's sparse_entries, which lists
// the entries themselves): which values occur, how many entries are stored,
// and the histograms of the stored entries' gaps and symbols.
//
// Python-free; baseline flags only (bind_recipe.cpp). The stream: every entry
// whose index is not zero_index is stored, with its gap d >= 1 to the
// previously stored one (the first's to position -1); a gap above
// 2^index_bits is bridged by filler entries (symbol zero_index, gap
// 2^index_bits) until at most 2^index_bits remains. zero_index = k stores
// every entry.
//
// Blocks in parallel, each with its own first and last stored position; the
// gaps across block boundaries are added afterwards, in block order. Every
// result is an integer count, exact whatever the order or the threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "softshare/recipe.hpp"

namespace softshare {
namespace kernel {

struct SparseCounts {
    std::vector<std::int64_t> values;   // k: every entry's index, stored or not
    std::int64_t nonzero = 0;           // entries whose index is not zero_index
    std::vector<std::int64_t> gaps;     // 2^index_bits: gap d counted at d - 1, fillers included
    std::vector<std::int64_t> symbols;  // k: the stored entries' indices, fillers included
    std::optional<BadIndex> bad;        // the first index not below k (the rest then unset)
};

namespace sparse_detail {

// The weights of one thread: counts of the stored entries' values
// (kCountCopies x k), of their gaps within blocks (2^bits; gaps of 1 apart,
// in `ones`, which dense layers have at every entry) and of fillers.
struct Tally {
    std::vector<std::int64_t> values, gaps;
    std::int64_t ones = 0, fillers = 0;

    void gap(std::int64_t d, int bits) {
        if (d == 1) {
            ++ones;
            return;
        }
        const std::int64_t fill = (d - 1) >> bits;  // fillers before the entry itself
        fillers += fill;
        ++gaps[static_cast<std::size_t>(d - (fill << bits) - 1)];
    }
};

struct BlockEnds {
    std::int64_t first = -1, last = -1;  // stored positions, -1 if none
};

// One block [begin, begin + n) of idx; returns the position of the first
// index not below k, or -1.
template <class I>
std::int64_t sparse_block(const I* idx, std::int64_t begin, std::int64_t n, std::uint64_t k,
                          std::uint64_t zero, int bits, Tally& tally, BlockEnds& ends) {
    constexpr std::int64_t kChunk = 16;
    const bool skips = zero < k;  // with zero_index = k every entry is stored
    std::int64_t prev = -1;
    for (std::int64_t c0 = begin; c0 < begin + n; c0 += kChunk) {
        const std::int64_t c1 = std::min(c0 + kChunk, begin + n);
        if (skips) {
            bool any = false;  // a vectorised test for the common chunk of zero_index only
            for (std::int64_t i = c0; i < c1; ++i) any |= static_cast<std::uint64_t>(idx[i]) != zero;
            if (!any) continue;
        }
        for (std::int64_t i = c0; i < c1; ++i) {
            const auto v = static_cast<std::uint64_t>(idx[i]);
            if (v == zero && skips) continue;
            if (v >= k) return i;
            ++tally.values[static_cast<std::size_t>((i % kCountCopies) * static_cast<std::int64_t>(k)) + v];
            if (prev >= 0) {
                tally.gap(i - prev, bits);
            } else {
                ends.first = i;
            }
            prev = i;
        }
    }
    ends.last = prev;
    return -1;
}

}  // namespace sparse_detail

// The stream's statistics for n indices of idx_type below k (k >= 1 when
// n > 0), 0 <= zero_index <= k, 1 <= index_bits <= 30 (python/softshare checks
// the public 1 .. 16).
inline SparseCounts run_sparse_counts(const void* idx, IndexType idx_type, std::int64_t n,
                                      std::int64_t k, std::int64_t zero_index, int index_bits,
                                      int n_threads) {
    const std::vector<RecipeSegment> one{{DType::f64, nullptr, idx_type,
                                          const_cast<void*>(idx), nullptr, n}};
    const recipe_detail::BlockMap map(one, 4 * kBlockSize);
    const std::int64_t n_blocks = map.blocks();
    const int threads = pass_threads(n_threads, n_blocks, n);
    const auto uk = static_cast<std::size_t>(k);
    const std::size_t max_gap = std::size_t{1} << index_bits;
    std::vector<sparse_detail::Tally> tally(static_cast<std::size_t>(threads));
    std::vector<sparse_detail::BlockEnds> ends(static_cast<std::size_t>(n_blocks));
    std::vector<recipe_detail::FirstBad> found(static_cast<std::size_t>(threads));
    recipe_detail::parallel_blocks(0, n_blocks, threads, [&](int t, std::int64_t b) {
        sparse_detail::Tally& ta = tally[static_cast<std::size_t>(t)];
        if (ta.gaps.empty()) {
            ta.values.assign(kCountCopies * uk, 0);
            ta.gaps.assign(max_gap, 0);
        }
        const auto at = map.at(b);
        const auto run = [&](const auto* p) {
            return sparse_detail::sparse_block(p, at.begin, at.n, uk, zero_index, index_bits, ta,
                                               ends[static_cast<std::size_t>(b)]);
        };
        std::int64_t bad = -1;
        switch (idx_type) {
            case IndexType::u8: bad = run(static_cast<const std::uint8_t*>(idx)); break;
            case IndexType::u16: bad = run(static_cast<const std::uint16_t*>(idx)); break;
            case IndexType::u32: bad = run(static_cast<const std::uint32_t*>(idx)); break;
            case IndexType::i64: bad = run(static_cast<const std::int64_t*>(idx)); break;
        }
        if (bad >= 0) {
            found[static_cast<std::size_t>(t)].note(b, {0, bad, index_at(idx, idx_type, bad)});
        }
    });
    SparseCounts out;
    out.bad = recipe_detail::first_of(found);
    if (out.bad) return out;
    sparse_detail::Tally total;  // the gaps across block boundaries, in block order
    total.gaps.assign(max_gap, 0);
    std::int64_t prev = -1;
    for (const sparse_detail::BlockEnds& e : ends) {
        if (e.first < 0) continue;
        total.gap(e.first - prev, index_bits);
        prev = e.last;
    }
    out.values.assign(uk, 0);
    for (const sparse_detail::Tally& ta : tally) {
        for (std::size_t v = 0; v < ta.values.size(); ++v) out.values[v % uk] += ta.values[v];
        for (std::size_t d = 0; d < max_gap; ++d) total.gaps[d] += ta.gaps.empty() ? 0 : ta.gaps[d];
        total.ones += ta.ones;
        total.fillers += ta.fillers;
    }
    out.symbols = out.values;  // the stored entries' indices, then the fillers'
    for (const std::int64_t c : out.values) out.nonzero += c;
    if (zero_index < k) {
        out.values[static_cast<std::size_t>(zero_index)] += n - out.nonzero;
        out.symbols[static_cast<std::size_t>(zero_index)] += total.fillers;
    }
    total.gaps[0] += total.ones;
    total.gaps[max_gap - 1] += total.fillers;
    out.gaps = std::move(total.gaps);
    return out;
}

}  // namespace kernel
}  // namespace softshare
