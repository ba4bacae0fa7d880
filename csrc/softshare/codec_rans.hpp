// Format version 4's coder of a large part's cells (docs/format.md, "Fast parts"):
// interleaved rANS over one static frequency table per part. Python-free;
// codec_layers.hpp codes the table (in the part's adaptive stream) and calls it.
//
// Each cell of the part's live rows and columns is its index, a symbol of the
// table (frequencies summing to 2^15); the j-th live cell of a row uses state
// j % 8 of eight interleaved rANS states (64-bit, renormalised 32 bits at a
// time), so that eight decodes overlap on one core with no table lookup in a
// dependency chain of more than one state. A part's stream is its eight final
// states, then the words the encoder emitted, last first: exactly what the
// decoder reads. The decoder never reads outside its buffer (past its end it
// reads zeros) and maps any bytes to indices with a non-zero frequency.
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

// ---- the table in the part's adaptive stream ---------------------------------------------------

// A fast part's models in its segment's adaptive stream (fresh for each segment).
struct FastModels {
    Bit row_flags, col_flags;  // whether the part flags its rows, its columns
    Tree length{17};           // bit length of a frequency, 0 (absent) to 16
};

template <class IO>
int code_flag(IO& io, Bit& m, bool y) {
    const int got = io.code(y ? 1 : 0, m.p12());
    m.update(got);
    return got;
}

// log2(x) for x >= 1 in 1/256 bits, by integer arithmetic (the same on every machine).
inline std::int64_t log2_fixed(std::uint64_t x) {
    const int e = bit_length(x) - 1;
    std::uint64_t m = e >= 31 ? x >> (e - 31) : x << (31 - e);  // x / 2^e in 1.31 fixed point
    std::int64_t r = static_cast<std::int64_t>(e) << 8;
    for (int i = 7; i >= 0; --i) {  // the fraction's bits: squaring doubles the log
        m = (m * m) >> 31;
        if (m >= (std::uint64_t{1} << 32)) {
            m >>= 1;
            r += std::int64_t{1} << i;
        }
    }
    return r;
}

// n log2 n in 1/256 bits (0 for n = 0).
inline std::int64_t nlog2n(std::int64_t n) { return n > 0 ? n * log2_fixed(static_cast<std::uint64_t>(n)) : 0; }

// The encoder's choice for a fast part of r x c cells (tally: how many hold
// each value; row_live, col_live: the rows and columns that hold another
// value than b): whether to flag its rows, and (where col_flags came in
// true) its columns, by the order-0 entropy of the cells then coded plus
// that of the flags; the first of (rows and columns, rows, columns, neither)
// that costs least.
inline void fast_flags(const std::vector<std::int64_t>& tally, std::uint64_t b,
                       const std::vector<std::uint8_t>& row_live,
                       const std::vector<std::uint8_t>& col_live, bool& row_flags,
                       bool& col_flags) {
    const auto r = static_cast<std::int64_t>(row_live.size());
    const auto c = static_cast<std::int64_t>(col_live.size());
    std::int64_t ar = 0, ac = 0;
    for (const std::uint8_t f : row_live) ar += f;
    for (const std::uint8_t f : col_live) ac += f;
    const auto flags_cost = [](std::int64_t n, std::int64_t a) {
        return nlog2n(n) - nlog2n(a) - nlog2n(n - a);
    };
    std::int64_t others = 0, others_nlogn = 0;
    for (std::size_t v = 0; v < tally.size(); ++v) {
        if (v == b) continue;
        others += tally[v];
        others_nlogn += nlog2n(tally[v]);
    }
    const auto cost = [&](bool rows, bool cols) {
        const std::int64_t live = (rows ? ar : r) * (cols ? ac : c);
        const std::int64_t background = live - others;
        std::int64_t total = nlog2n(live) - others_nlogn - nlog2n(background);
        if (rows) total += flags_cost(r, ar);
        if (cols) total += flags_cost(c, ac);
        return total;
    };
    const bool may_flag_cols = col_flags;
    bool best_rows = true, best_cols = may_flag_cols;
    std::int64_t best = cost(true, may_flag_cols);
    for (const auto& [rows, cols] : {std::pair<bool, bool>{true, false}, {false, true}, {false, false}}) {
        if (cols && !may_flag_cols) continue;
        const std::int64_t here = cost(rows, cols);
        if (here < best) {
            best = here;
            best_rows = rows;
            best_cols = cols;
        }
    }
    row_flags = best_rows;
    col_flags = best_cols;
}

// Codes the frequency of every value but the background b (encoding when kEncode,
// else decoding into freq): its bit length L (a symbol of 17), then for L >= 2
// its L - 1 bits below the leading one, raw. The background's is 2^15 minus the
// others'. Decoding throws std::invalid_argument when they sum to more.
template <bool kEncode, class IO>
void code_table(IO& io, FastModels& fm, std::uint32_t* freq, std::size_t k, std::uint64_t b) {
    std::uint64_t others = 0;
    for (std::size_t v = 0; v < k; ++v) {
        if (v == b) continue;
        const std::uint64_t f = kEncode ? freq[v] : 0;
        const auto length = static_cast<int>(walk_tree(17, static_cast<std::uint64_t>(bit_length(f)),
                                                       [&](std::size_t node, int y) {
            Bit& m = fm.length.node[node];
            y = io.code(y, m.p12());
            m.update(y);
            return y;
        }));
        std::uint64_t got = length == 0 ? 0 : std::uint64_t{1} << (length - 1);
        for (int i = length - 2; i >= 0; --i) {
            got |= static_cast<std::uint64_t>(io.code(static_cast<int>((f >> i) & 1), 2048)) << i;
        }
        if (!kEncode) freq[v] = static_cast<std::uint32_t>(got);
        others += got;
    }
    if (!kEncode) {
        if (others > kRansTotal) {
            throw std::invalid_argument("a fast part's frequency table sums to more than 2^15");
        }
        freq[b] = static_cast<std::uint32_t>(kRansTotal - others);
    }
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

// Appends the rANS stream of one part's live cells to out.
class RansEncoder {
public:
    template <class Index>
    void encode(const LiveCells<Index>& cells, const std::uint32_t* freq, std::size_t k,
                std::vector<std::uint8_t>& out) {
        Symbol sym[kFastCodebook];
        std::uint32_t cum = 0;
        for (std::size_t v = 0; v < k; ++v) {
            if (freq[v] > 0) sym[v] = symbol(cum, freq[v]);
            cum += freq[v];
        }
        words_.clear();
        std::uint64_t x[kRansStates];
        for (std::uint64_t& st : x) st = kRansLow;
        const std::size_t n = cells.all_cols ? static_cast<std::size_t>(cells.c) : cells.cols.size();
        const std::size_t tail = n % kRansStates;
        for (std::size_t ri = cells.rows.size(); ri-- > 0;) {  // last cell first
            const Index* row = cells.idx + cells.rows[ri] * cells.c;
            const auto value = [&](std::size_t j) { return row[cells.all_cols ? j : cells.cols[j]]; };
            const std::size_t body = n - tail;
            each_state([&](auto st) {  // the row's last cells, states tail - 1 down to 0
                constexpr std::size_t s = kRansStates - 1 - decltype(st)::value;
                if (s < tail) put(x[s], sym[value(body + s)]);
            });
            for (std::size_t j = body; j > 0; j -= kRansStates) {
                each_state([&](auto st) {
                    constexpr std::size_t s = kRansStates - 1 - decltype(st)::value;
                    put(x[s], sym[value(j - kRansStates + s)]);
                });
            }
        }
        const std::size_t at = out.size();
        out.resize(at + 8 * kRansStates + 4 * words_.size());
        std::uint8_t* p = out.data() + at;
        for (const std::uint64_t s : x) {
            store32(p, static_cast<std::uint32_t>(s));
            store32(p + 4, static_cast<std::uint32_t>(s >> 32));
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

    // Decodes one part's live cells into cells.idx; with counts, adds how many
    // cells hold each value. Throws std::invalid_argument when the stream ends
    // before its last value or its states do not end where an encoder starts.
    template <class Index>
    void decode(const LiveCells<Index>& cells, const std::uint32_t* freq, std::size_t k,
                std::int64_t* counts) {
        Slot fc[kFastCodebook] = {};
        slots_.resize(kRansTotal);
        std::uint32_t at = 0;
        for (std::size_t v = 0; v < k; ++v) {  // the table sums to 2^15 (code_table checked)
            fc[v] = Slot{freq[v], at};
            std::memset(slots_.data() + at, static_cast<int>(v), freq[v]);
            at += freq[v];
        }
        std::uint64_t x[kRansStates];
        for (std::uint64_t& s : x) s = next() | (static_cast<std::uint64_t>(next()) << 32);
        if (counts == nullptr) {
            run<false>(cells, x, fc, nullptr);
        } else {
            std::vector<std::int64_t> tally(kRansStates * kFastCodebook);
            run<true>(cells, x, fc, tally.data());
            for (std::size_t i = 0; i < tally.size(); ++i) counts[i % kFastCodebook] += tally[i];
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
    template <bool kCount, class Index>
    void run(const LiveCells<Index>& cells, std::uint64_t* x, const Slot* fc, std::int64_t* tally) {
        // Locals, not members: a store of an index (a char type) could alias a member.
        const std::uint8_t* slots = slots_.data();
        const std::uint8_t* const data = data_;
        const std::size_t words = words_;
        std::size_t pos = pos_;
        const std::size_t n = cells.all_cols ? static_cast<std::size_t>(cells.c) : cells.cols.size();
        const auto step = [&](std::uint64_t& s, Index* out, std::size_t state) {
            const auto slot = static_cast<std::uint32_t>(s & (kRansTotal - 1));
            const std::uint8_t v = slots[slot];
            *out = static_cast<Index>(v);
            if (kCount) ++tally[state * kFastCodebook + v];
            s = fc[v].f * (s >> kRansBits) + slot - fc[v].cum;
            if (s < kRansLow) s = (s << 32) | word(data, words, pos);
        };
        const std::size_t tail = n % kRansStates, body = n - tail;
        std::uint64_t xs[kRansStates];  // local: the compiler keeps them in registers
        for (std::size_t i = 0; i < kRansStates; ++i) xs[i] = x[i];
        for (const std::int64_t r : cells.rows) {
            Index* row = cells.idx + r * cells.c;
            if (cells.all_cols) {
                for (std::size_t j = 0; j < body; j += kRansStates) {
                    each_state([&](auto st) { step(xs[st], row + j + st, st); });
                }
                each_state([&](auto st) {
                    if (st < tail) step(xs[st], row + body + st, st);
                });
            } else {
                const std::size_t* col = cells.cols.data();
                for (std::size_t j = 0; j < body; j += kRansStates) {
                    each_state([&](auto st) { step(xs[st], row + col[j + st], st); });
                }
                each_state([&](auto st) {
                    if (st < tail) step(xs[st], row + col[body + st], st);
                });
            }
        }
        for (std::size_t i = 0; i < kRansStates; ++i) x[i] = xs[i];
        pos_ = pos;
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
