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
#include <cstring>
#include <limits>
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

// The counts of one thread: the stored entries' indices (kCountCopies x k;
// the entries of zero_index only in `zeros`), their gaps within blocks
// (2^bits; the runs of stored entries' gaps of 1 also in `ones`) and the
// fillers.
struct Tally {
    std::vector<std::int64_t> values, gaps;
    std::int64_t zeros = 0, ones = 0, fillers = 0;

    void gap(std::int64_t d, int bits) {  // one stored entry's gap, fillers included
        if (d == 1) {
            ++ones;
            return;
        }
        const std::int64_t fill = (d - 1) >> bits;
        fillers += fill;
        ++gaps[static_cast<std::size_t>(d - (fill << bits) - 1)];
    }
};

struct BlockEnds {
    std::int64_t first = -1, last = -1;  // stored positions, -1 if none
};

// The position of the lowest set bit of a non-zero mask. On x86, bsf itself:
// GCC's __builtin_ctz (and the de Bruijn idiom, which it recognises) emits
// tzcnt, beyond baseline x86-64 (tools/check_isa.py).
inline int lowest_bit(std::uint32_t mask) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    // pos is an input too (bsf leaves it for a zero mask): zeroed here, it does
    // not chain one bsf to the register's last value.
    std::uint32_t pos = 0;
    __asm__("bsf %1, %0" : "+r"(pos) : "rm"(mask) : "cc");
    return static_cast<int>(pos);
#else
    return __builtin_ctz(mask);
#endif
}

// Bit q set for each of the len <= 16 entries at p that is stored (not zero,
// or keep_all). uint8 indices 8 at a time in a 64-bit word: a byte's high bit
// after ((y & 0x7f) + 0x7f) | y is set iff y != 0, and one multiplication
// gathers the 8 high bits (each lands alone in the top byte).
template <class I>
std::uint32_t stored_mask(const I* p, int len, std::uint64_t zero, std::uint32_t keep_all) {
    if (keep_all != 0) return (1u << len) - 1;
    std::uint32_t mask = 0;
    int q = 0;
    if constexpr (sizeof(I) == 1) {
        constexpr std::uint64_t kLow = 0x7f7f7f7f7f7f7f7full, kHigh = 0x8080808080808080ull;
        const std::uint64_t zeros = zero * 0x0101010101010101ull;
        for (; q + 8 <= len; q += 8) {
            std::uint64_t word;
            std::memcpy(&word, p + q, 8);
            const std::uint64_t y = word ^ zeros;
            const std::uint64_t high = (((y & kLow) + kLow) | y) & kHigh;
            mask |= static_cast<std::uint32_t>(((high >> 7) * 0x0102040810204080ull) >> 56) << q;
        }
    }
    for (; q < len; ++q) mask |= static_cast<std::uint32_t>(p[q] != static_cast<I>(zero)) << q;
    return mask;
}

// The set bits of a 16-bit mask (baseline x86-64 has no popcnt either).
inline int bit_count(std::uint32_t x) {
    x -= (x >> 1) & 0x5555u;
    x = (x & 0x3333u) + ((x >> 2) & 0x3333u);
    x = (x + (x >> 4)) & 0x0f0fu;
    return static_cast<int>((x + (x >> 8)) & 0x1fu);
}

// One block [begin, end) of idx; returns the position of the first index not
// below k, or -1. Chunk by chunk of 16 entries: a mask of the stored ones;
// a chunk of zero_index alone is only counted, a chunk stored throughout has
// gaps of 1 but for its first, and the stored entries of the others are
// visited bit by bit (no branch per entry: a layer of mixed indices would
// mispredict every other one).
template <class I>
std::int64_t sparse_block(const I* idx, std::int64_t begin, std::int64_t end, std::uint64_t k,
                          std::uint64_t zero, int bits, Tally& tally, BlockEnds& ends) {
    constexpr int kChunk = 16;
    // zero_index = k, or beyond what I holds: every entry stored
    const bool fits = zero <= static_cast<std::uint64_t>(std::numeric_limits<I>::max());
    const std::uint32_t keep_all = zero < k && fits ? 0u : 1u;
    const auto sk = static_cast<std::int64_t>(k);
    std::int64_t* values = tally.values.data();
    std::int64_t* gaps = tally.gaps.data();
    std::uint64_t bad = 0;
    std::int64_t prev = -1, first = -1, zeros = 0, ones = 0, fillers = 0, seen = 0;
    const std::int64_t spare = std::int64_t{1} << bits;
    const auto gap = [&](std::int64_t p) {  // the stored entry at p, after the block's first
        const std::int64_t d = p - prev;
        const std::int64_t fill = (d - 1) >> bits;
        const auto one = static_cast<std::int64_t>(d == 1);  // in `ones`, and a spare slot:
        ones += one;  // no chain of additions to gaps[0] along a run
        fillers += fill;
        ++gaps[d - (fill << bits) - 1 + one * (spare + (seen & (kCountCopies - 1)))];
    };
    const auto count = [&](std::int64_t p) {  // its index, noted if not below k
        const auto v = static_cast<std::uint64_t>(idx[p]);
        const auto over = static_cast<std::uint64_t>(v >= k);
        bad |= over;
        ++values[(seen++ & (kCountCopies - 1)) * sk + static_cast<std::int64_t>(v & (over - 1))];
    };
    for (std::int64_t c0 = begin; c0 < end; c0 += kChunk) {
        const int len = end - c0 < kChunk ? static_cast<int>(end - c0) : kChunk;
        std::uint32_t mask = stored_mask(idx + c0, len, zero, keep_all);
        if (mask == 0) {
            zeros += len;
            continue;
        }
        if (mask == (1u << len) - 1) {  // every entry stored: gaps of 1 after the first
            for (int q = 0; q < len; ++q) count(c0 + q);
            if (prev >= 0) {
                gap(c0);
            } else {
                first = c0;
            }
            ones += len - 1;
            prev = c0 + len - 1;
            continue;
        }
        zeros += len - bit_count(mask);
        if (prev < 0) {
            const std::int64_t p = c0 + lowest_bit(mask);
            mask &= mask - 1;
            count(p);
            first = prev = p;
        }
        while (mask != 0) {
            const std::int64_t p = c0 + lowest_bit(mask);
            mask &= mask - 1;
            count(p);
            gap(p);
            prev = p;
        }
    }
    tally.zeros += zeros;
    tally.ones += ones;
    tally.fillers += fillers;
    ends.first = first;
    ends.last = prev;
    if (bad == 0) return -1;
    for (std::int64_t t = begin; t < end; ++t) {
        if (static_cast<std::uint64_t>(idx[t]) >= k) return t;
    }
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
            ta.values.assign(kCountCopies * std::max<std::size_t>(uk, 1), 0);
            ta.gaps.assign(max_gap + kCountCopies, 0);
        }
        const auto at = map.at(b);
        const auto run = [&](const auto* p) {
            return sparse_detail::sparse_block(p, at.begin, at.begin + at.n, uk, zero_index,
                                               index_bits, ta, ends[static_cast<std::size_t>(b)]);
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
    sparse_detail::Tally total;  // the threads' counts, and the gaps across blocks in order
    total.gaps.assign(max_gap, 0);
    std::int64_t prev = -1;
    for (const sparse_detail::BlockEnds& e : ends) {
        if (e.first < 0) continue;
        total.gap(e.first - prev, index_bits);
        prev = e.last;
    }
    out.values.assign(uk, 0);
    for (const sparse_detail::Tally& ta : tally) {
        if (ta.gaps.empty()) continue;  // a thread without a block
        for (std::size_t v = 0; v < kCountCopies * uk; ++v) out.values[v % uk] += ta.values[v];
        for (std::size_t d = 0; d < max_gap; ++d) total.gaps[d] += ta.gaps[d];
        total.zeros += ta.zeros;
        total.ones += ta.ones;
        total.fillers += ta.fillers;
    }
    out.nonzero = n;
    if (zero_index < k) {
        const auto z = static_cast<std::size_t>(zero_index);
        out.values[z] += total.zeros;
        out.nonzero -= out.values[z];
        out.symbols = out.values;  // the stored entries' indices, and the fillers'
        out.symbols[z] = total.fillers;
    } else {
        out.symbols = out.values;  // every entry stored, no filler
    }
    total.gaps[0] += total.ones;
    total.gaps[max_gap - 1] += total.fillers;
    out.gaps = std::move(total.gaps);
    return out;
}

}  // namespace kernel
}  // namespace softshare
