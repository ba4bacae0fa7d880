// Format version 4's coder of a large part's cells (docs/format.md, "Fast parts"):
// interleaved rANS with static probabilities (a FastTable per part, which
// codec_fast.hpp makes and codes in the part's adaptive stream). Python-free.
//
// Each cell of the part's live rows and columns is coded as whether it is the
// background (its probability set by its row's and its column's class), then,
// when not, its index (one frequency table); the j-th live cell of a row uses
// state j % 8 of eight interleaved rANS states (64-bit, renormalised 32 bits
// at a time), so that eight decodes overlap on one core. A part's stream is
// its eight final states, then the words the encoder emitted, last first:
// exactly what the decoder reads. The decoder never reads outside its buffer
// (past its end it reads zeros) and maps any bytes to indices below k.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(_MSC_VER) && defined(_M_X64) && !defined(__clang__)
#include <intrin.h>
#endif

#include "softshare/codec_coder.hpp"

namespace softshare {
namespace codec {

constexpr int kRansBits = 15;                       // a table's frequencies sum to 2^15
constexpr std::uint32_t kRansTotal = 1u << kRansBits;
constexpr int kRansStates = 8;                      // cell j of a row: state j % 8
constexpr std::uint64_t kRansLow = std::uint64_t{1} << 31;  // states lie in [2^31, 2^63)
constexpr std::uint64_t kFastCodebook = 256;        // fast parts: codebooks of 2 to 256 values

inline std::uint64_t mul_hi(std::uint64_t a, std::uint64_t b) {
#if defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 wide;  // __extension__: no -Wpedantic warning
    return static_cast<std::uint64_t>((static_cast<wide>(a) * b) >> 64);
#elif defined(_MSC_VER) && defined(_M_X64) && !defined(__clang__)
    return __umulh(a, b);
#else
    const std::uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    const std::uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    const std::uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
#endif
}

// A table for counts[0..k) of a part's live cells (total > 0): every value
// that occurs gets at least 1, the rest in proportion (rounded down); the
// largest frequency (the first on a tie) takes what rounding left over, or
// gives back what the minimum of 1 took. The writer's choice, not the
// format's: a reader takes any table that sums to 2^15.
inline std::vector<std::uint32_t> normalise(const std::int64_t* counts, std::size_t k) {
    std::uint64_t total = 0;
    for (std::size_t v = 0; v < k; ++v) total += static_cast<std::uint64_t>(counts[v]);
    int shift = 0;  // keeps count * 2^15 within 64 bits
    while ((total >> shift) >= (std::uint64_t{1} << 40)) ++shift;
    const std::uint64_t scaled_total = std::max<std::uint64_t>(total >> shift, 1);
    std::vector<std::uint32_t> freq(k);
    std::int64_t sum = 0;
    for (std::size_t v = 0; v < k; ++v) {
        if (counts[v] == 0) continue;
        const std::uint64_t c = static_cast<std::uint64_t>(counts[v]) >> shift;
        freq[v] = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, c * kRansTotal / scaled_total));
        sum += freq[v];
    }
    while (sum != kRansTotal) {
        const auto top = static_cast<std::size_t>(
            std::max_element(freq.begin(), freq.end()) - freq.begin());
        if (sum < kRansTotal) {
            freq[top] += static_cast<std::uint32_t>(kRansTotal - sum);
            sum = kRansTotal;
        } else {
            const std::int64_t take = std::min<std::int64_t>(freq[top] - 1, sum - kRansTotal);
            freq[top] -= static_cast<std::uint32_t>(take);
            sum -= take;
        }
    }
    return freq;
}

// ---- the cells ---------------------------------------------------------------------------------

// f(integral_constant<size_t, 0>), ..., f(integral_constant<size_t, kRansStates - 1>):
// every state by a constant index, so that the states stay in registers.
template <class F, std::size_t... S>
SOFTSHARE_CODEC_HOT void each_state_(F&& f, std::index_sequence<S...>) {
    (f(std::integral_constant<std::size_t, S>{}), ...);
}
template <class F>
SOFTSHARE_CODEC_HOT void each_state(F&& f) {
    each_state_(f, std::make_index_sequence<kRansStates>{});
}

// The live cells of one part: rows (their indices), cols (when not every column
// is live), in a layer of c columns at idx.
template <class Index>
struct LiveCells {
    Index* idx;
    std::int64_t c;
    const std::vector<std::int64_t>& rows;
    const std::vector<std::size_t>& cols;
    bool all_cols;  // cols is 0, 1, ..., c - 1
};

// How a fast part's cells are coded: each live row and column has a class
// (0 to kClasses - 1); a cell is the background b with probability
// 1 - other[row class][column class] / 2^15, and another value v with
// freq[v] / 2^15 of the rest (freq[b] = 0; the frequencies sum to 2^15).
constexpr int kClasses = 4;
struct FastTable {
    std::vector<std::uint32_t> freq;
    std::uint32_t other[kClasses][kClasses] = {};
    std::vector<std::uint8_t> row_class, col_class;  // of the live rows, the live columns
};

// Appends the rANS stream of one part's live cells to out.
class RansEncoder {
public:
    template <class Index>
    void encode(const LiveCells<Index>& cells, const FastTable& t, std::uint64_t b,
                std::vector<std::uint8_t>& out) {
        Symbol value[kFastCodebook];
        std::uint32_t cum = 0;
        for (std::size_t v = 0; v < t.freq.size(); ++v) {
            if (t.freq[v] > 0) value[v] = symbol(cum, t.freq[v]);
            cum += t.freq[v];
        }
        Symbol flag[kClasses][kClasses][2];  // [.][.][0]: b, [.][.][1]: another value
        for (int i = 0; i < kClasses; ++i) {
            for (int j = 0; j < kClasses; ++j) {
                const std::uint32_t other = t.other[i][j], same = kRansTotal - other;
                if (same > 0) flag[i][j][0] = symbol(0, same);
                if (other > 0) flag[i][j][1] = symbol(same, other);
            }
        }
        words_.clear();
        std::uint64_t x[kRansStates];
        for (std::uint64_t& st : x) st = kRansLow;
        const std::size_t n = cells.all_cols ? static_cast<std::size_t>(cells.c) : cells.cols.size();
        const std::size_t tail = n % kRansStates;
        const std::uint8_t* col_class = t.col_class.data();
        for (std::size_t ri = cells.rows.size(); ri-- > 0;) {  // last cell first
            const Index* row = cells.idx + cells.rows[ri] * cells.c;
            const auto& row_flag = flag[t.row_class[ri]];
            const auto put_cell = [&](std::uint64_t& st, std::size_t j) {
                const Index v = row[cells.all_cols ? j : cells.cols[j]];
                const auto& f = row_flag[col_class[j]];
                if (v != b) {  // the value, then (decoded first) that it is not b
                    put(st, value[v]);
                    put(st, f[1]);
                } else {
                    put(st, f[0]);
                }
            };
            const std::size_t body = n - tail;
            each_state([&](auto st) {  // the row's last cells, states tail - 1 down to 0
                constexpr std::size_t s = kRansStates - 1 - decltype(st)::value;
                if (s < tail) put_cell(x[s], body + s);
            });
            for (std::size_t j = body; j > 0; j -= kRansStates) {
                each_state([&](auto st) {
                    constexpr std::size_t s = kRansStates - 1 - decltype(st)::value;
                    put_cell(x[s], j - kRansStates + s);
                });
            }
        }
        const std::size_t at = out.size();
        out.resize(at + 8 * kRansStates + 4 * words_.size());
        std::uint8_t* p = out.data() + at;
        for (const std::uint64_t st : x) {
            store32(p, static_cast<std::uint32_t>(st));
            store32(p + 4, static_cast<std::uint32_t>(st >> 32));
            p += 8;
        }
        for (std::size_t w = words_.size(); w-- > 0; p += 4) store32(p, words_[w]);
    }

private:
    struct Symbol {
        std::uint64_t rcp = 0, xmax = 0;
        std::uint32_t bias = 0, cmpl = 0, shift = 0;
    };
    // x -> (x / f) * 2^15 + x % f + cum by a reciprocal (exact for x < 2^63; ryg's rans64).
    static Symbol symbol(std::uint32_t cum, std::uint32_t f) {
        Symbol s;
        s.xmax = ((kRansLow >> kRansBits) << 32) * f;
        s.cmpl = kRansTotal - f;
        if (f < 2) {
            s.rcp = ~std::uint64_t{0};
            s.shift = 0;
            s.bias = cum + kRansTotal - 1;
        } else {
            std::uint32_t shift = 0;
            while (f > (1u << shift)) ++shift;
            std::uint64_t x0 = f - 1;
            const std::uint64_t x1 = std::uint64_t{1} << (shift + 31);
            const std::uint64_t t1 = x1 / f;
            x0 += (x1 % f) << 32;
            const std::uint64_t t0 = x0 / f;
            s.rcp = t0 + (t1 << 32);
            s.shift = shift - 1;
            s.bias = cum;
        }
        return s;
    }
    SOFTSHARE_CODEC_HOT void put(std::uint64_t& x, const Symbol& s) {
        if (x >= s.xmax) {
            words_.push_back(static_cast<std::uint32_t>(x));
            x >>= 32;
        }
        const std::uint64_t q = mul_hi(x, s.rcp) >> s.shift;
        x += s.bias + q * s.cmpl;
    }
    static void store32(std::uint8_t* p, std::uint32_t w) {
        for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(w >> (8 * i));
    }
    std::vector<std::uint32_t> words_;
};

// Reads the fast parts' rANS streams of one segment, one after another.
class RansDecoder {
public:
    RansDecoder(const std::uint8_t* data, std::size_t size) : data_(data), words_(size / 4) {}

    // Decodes one part's live cells into cells.idx (t: checked by its decoder);
    // with counts, adds how many cells hold each value. Throws
    // std::invalid_argument when the stream ends before its last value or its
    // states do not end where an encoder starts.
    template <class Index>
    void decode(const LiveCells<Index>& cells, const FastTable& t, std::uint64_t b,
                std::int64_t* counts) {
        Slot fc[kFastCodebook] = {};
        slots_.resize(kRansTotal);
        std::uint32_t at = 0;
        for (std::size_t v = 0; v < t.freq.size(); ++v) {  // they sum to 2^15
            fc[v] = Slot{t.freq[v], at};
            std::memset(slots_.data() + at, static_cast<int>(v), t.freq[v]);
            at += t.freq[v];
        }
        std::uint64_t x[kRansStates];
        for (std::uint64_t& s : x) s = next() | (static_cast<std::uint64_t>(next()) << 32);
        std::vector<std::int64_t> tally(counts != nullptr ? kFastCodebook : 0);
        if (counts == nullptr) {
            run<false>(cells, t, x, fc, nullptr);
        } else {
            const std::int64_t others = run<true>(cells, t, x, fc, tally.data());
            for (std::size_t v = 0; v < t.freq.size(); ++v) counts[v] += tally[v];
            const auto live = static_cast<std::int64_t>(cells.rows.size()) *
                              static_cast<std::int64_t>(cells.all_cols ? static_cast<std::size_t>(cells.c)
                                                                       : cells.cols.size());
            counts[b] += live - others;
        }
        if (pos_ > words_) throw std::invalid_argument("a fast part ends before its last value");
        for (const std::uint64_t s : x) {
            if (s != kRansLow) throw std::invalid_argument("a fast part's states do not end where they start");
        }
    }
    // Bytes read so far.
    std::size_t position() const { return 4 * pos_; }
    bool finished() const { return pos_ == words_; }

private:
    struct Slot {  // a value's frequency and first slot
        std::uint32_t f, cum;
    };
    // Decodes the cells; returns how many are not b (counted only with kCount).
    template <bool kCount, class Index>
    std::int64_t run(const LiveCells<Index>& cells, const FastTable& t, std::uint64_t* x,
                     const Slot* fc, std::int64_t* tally) {
        // Locals, not members: a store of an index (a char type) could alias a member.
        const std::uint8_t* slots = slots_.data();
        const std::uint8_t* const data = data_;
        const std::size_t words = words_;
        std::size_t pos = pos_;
        std::int64_t others = 0;
        std::uint32_t same[kClasses][kClasses];
        for (int i = 0; i < kClasses; ++i) {
            for (int j = 0; j < kClasses; ++j) same[i][j] = kRansTotal - t.other[i][j];
        }
        const std::uint8_t* col_class = t.col_class.data();
        const std::size_t n = cells.all_cols ? static_cast<std::size_t>(cells.c) : cells.cols.size();
        const auto renorm = [&](std::uint64_t& s) {
            if (s < kRansLow) s = (s << 32) | word(data, words, pos);
        };
        const std::size_t tail = n % kRansStates, body = n - tail;
        std::uint64_t xs[kRansStates];  // local: the compiler keeps them in registers
        for (std::size_t i = 0; i < kRansStates; ++i) xs[i] = x[i];
        for (std::size_t ri = 0; ri < cells.rows.size(); ++ri) {
            Index* row = cells.idx + cells.rows[ri] * cells.c;
            const std::uint32_t* row_same = same[t.row_class[ri]];
            const auto step = [&](std::uint64_t& s, std::size_t j) {
                const std::uint32_t f0 = row_same[col_class[j]];
                auto slot = static_cast<std::uint32_t>(s & (kRansTotal - 1));
                if (slot < f0) {  // b (the cell holds it already)
                    s = f0 * (s >> kRansBits) + slot;
                } else {
                    s = (kRansTotal - f0) * (s >> kRansBits) + slot - f0;
                    renorm(s);
                    slot = static_cast<std::uint32_t>(s & (kRansTotal - 1));
                    const std::uint8_t v = slots[slot];
                    row[cells.all_cols ? j : cells.cols[j]] = static_cast<Index>(v);
                    if (kCount) {
                        ++tally[v];
                        ++others;
                    }
                    s = fc[v].f * (s >> kRansBits) + slot - fc[v].cum;
                }
                renorm(s);
            };
            for (std::size_t j = 0; j < body; j += kRansStates) {
                each_state([&](auto st) { step(xs[st], j + st); });
            }
            each_state([&](auto st) {
                if (st < tail) step(xs[st], body + st);
            });
        }
        for (std::size_t i = 0; i < kRansStates; ++i) x[i] = xs[i];
        pos_ = pos;
        return others;
    }
    // Word pos (advancing pos) of data's words, little-endian, or 0 past the end.
    static std::uint32_t word(const std::uint8_t* data, std::size_t words, std::size_t& pos) {
        if (pos >= words) {
            ++pos;
            return 0;
        }
        const std::uint8_t* p = data + 4 * pos++;
        return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
               (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
    }
    std::uint32_t next() { return word(data_, words_, pos_); }
    const std::uint8_t* data_;
    std::size_t words_;
    std::size_t pos_ = 0;
    std::vector<std::uint8_t> slots_;  // the value of each of the 2^15 slots
};

}  // namespace codec
}  // namespace softshare
