// Format version 4's fast parts (docs/format.md, "Fast parts"): what the
// segment's adaptive stream holds of one — whether its rows and columns are
// flagged, its FastTable (index frequencies, row and column classes, the
// probability of another value than the background by class) — and the
// writer's choices of both. codec_rans.hpp codes its cells. Python-free.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

#include "softshare/codec_coder.hpp"
#include "softshare/codec_rans.hpp"

namespace softshare {
namespace codec {

// A segment's models of its fast parts' side information (fresh for each segment).
struct FastModels {
    Bit row_flags, col_flags;  // whether the part flags its rows, its columns
    Tree length{17};           // bit length of a frequency, 0 to 16
    Tree other_length{17};     // bit length of a probability of another value, 0 to 16
    Tree row_class[kClasses] = {Tree(kClasses), Tree(kClasses), Tree(kClasses), Tree(kClasses)};
    Tree col_class[kClasses] = {Tree(kClasses), Tree(kClasses), Tree(kClasses), Tree(kClasses)};
};

template <class IO>
int code_flag(IO& io, Bit& m, bool y) {
    const int got = io.code(y ? 1 : 0, m.p12());
    m.update(got);
    return got;
}

// A symbol of [0, n) with the plain bit models of tree t.
template <class IO>
std::uint64_t code_symbol(IO& io, Tree& t, std::uint64_t n, std::uint64_t value) {
    return walk_tree(n, value, [&](std::size_t node, int y) {
        Bit& m = t.node[node];
        y = io.code(y, m.p12());
        m.update(y);
        return y;
    });
}

// A number below 2^16: its bit length L (a symbol of 17 with tree t), then for
// L >= 2 its L - 1 bits below the leading one, raw, most significant first.
template <class IO>
std::uint32_t code_count(IO& io, Tree& t, std::uint32_t value) {
    const auto length = static_cast<int>(code_symbol(io, t, 17, static_cast<std::uint64_t>(bit_length(value))));
    std::uint32_t got = length == 0 ? 0 : 1u << (length - 1);
    for (int i = length - 2; i >= 0; --i) {
        got |= static_cast<std::uint32_t>(io.code(static_cast<int>((value >> i) & 1), 2048)) << i;
    }
    return got;
}

// Codes a fast part's table (encoding when kEncode, else decoding into t) for
// `rows` live rows and `cols` live columns, background b, codebook k: the
// frequency of every value but b (freq[b] = 0), the classes of the rows and
// of the columns (each with the previous one's as context), then other[i][j]
// for every pair of classes that some row and some column have. Decoding
// throws std::invalid_argument for frequencies that do not sum to 2^15 and
// a probability over 2^15.
template <bool kEncode, class IO>
void code_fast_table(IO& io, FastModels& m, FastTable& t, std::size_t k, std::uint64_t b,
                     std::size_t rows, std::size_t cols) {
    if (!kEncode) {
        t.freq.assign(k, 0);
        t.row_class.assign(rows, 0);
        t.col_class.assign(cols, 0);
    }
    std::uint64_t sum = 0;
    for (std::size_t v = 0; v < k; ++v) {
        if (v != b) t.freq[v] = code_count(io, m.length, t.freq[v]);
        sum += t.freq[v];
    }
    if (sum != kRansTotal) {
        throw std::invalid_argument("a fast part's frequency table does not sum to 2^15");
    }
    bool row_has[kClasses] = {}, col_has[kClasses] = {};
    for (const auto& [classes, tree, has] : {std::make_tuple(&t.row_class, m.row_class, row_has),
                                             std::make_tuple(&t.col_class, m.col_class, col_has)}) {
        std::uint64_t prev = 0;
        for (std::uint8_t& cls : *classes) {
            cls = static_cast<std::uint8_t>(code_symbol(io, tree[prev], kClasses, cls));
            has[cls] = true;
            prev = cls;
        }
    }
    for (int i = 0; i < kClasses; ++i) {
        for (int j = 0; j < kClasses; ++j) {
            if (!row_has[i] || !col_has[j]) continue;
            t.other[i][j] = code_count(io, m.other_length, t.other[i][j]);
            if (t.other[i][j] > kRansTotal) {
                throw std::invalid_argument("a fast part's probability is over 2^15");
            }
        }
    }
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
inline std::int64_t nlog2n(std::int64_t n) {
    return n > 0 ? n * log2_fixed(static_cast<std::uint64_t>(n)) : 0;
}

// The order-0 entropy of a of n being one thing and n - a another, in 1/256 bits.
inline std::int64_t split_bits(std::int64_t n, std::int64_t a) {
    return nlog2n(n) - nlog2n(a) - nlog2n(n - a);
}

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
    std::int64_t others = 0, others_nlogn = 0;
    for (std::size_t v = 0; v < tally.size(); ++v) {
        if (v == b) continue;
        others += tally[v];
        others_nlogn += nlog2n(tally[v]);
    }
    const auto cost = [&](bool rows, bool cols) {
        const std::int64_t live = (rows ? ar : r) * (cols ? ac : c);
        std::int64_t total = nlog2n(live) - others_nlogn - nlog2n(live - others);
        if (rows) total += split_bits(r, ar);
        if (cols) total += split_bits(c, ac);
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

// A line's class by its share of the cells that are not b against the part's:
// below 1/2 of it 0, below 1 1, below 2 2, else 3 (exact integer comparisons).
inline std::uint8_t line_class(std::uint64_t line_others, std::uint64_t lines,
                               std::uint64_t all_others) {
    const std::uint64_t x = line_others * lines;  // the line's share times all_others
    if (2 * x < all_others) return 0;
    if (x < all_others) return 1;
    if (x < 2 * all_others) return 2;
    return 3;
}

// The order-0 entropy of n lines' classes (count[i] in class i), in 1/256 bits.
inline std::int64_t classes_bits(const std::int64_t* count, std::int64_t n) {
    std::int64_t bits = nlog2n(n);
    for (int i = 0; i < kClasses; ++i) bits -= nlog2n(count[i]);
    return bits;
}

// other / n of 2^15, rounded; 1 to 2^15 - 1 where 0 < other < n.
inline std::uint32_t share(std::uint64_t other, std::uint64_t n) {
    if (other == 0) return 0;
    if (other == n) return kRansTotal;
    int shift = 0;  // keeps other * 2^15 within 64 bits
    while ((n >> shift) >= (std::uint64_t{1} << 40)) ++shift;
    const std::uint64_t q = ((other >> shift) * kRansTotal + ((n >> shift) / 2)) / (n >> shift);
    return static_cast<std::uint32_t>(std::clamp<std::uint64_t>(q, 1, kRansTotal - 1));
}

// The writer's table for a fast part's live cells (tally: the live cells'
// values; row_others, col_others: every row's and column's count of cells
// that are not b): frequencies of the values but b; rows and columns classed
// by line_class where that pays by the order-0 estimate (counting 2 bytes a
// probability and the classes' entropy), else all in class 0. Classing both
// is weighed only where each pays on its own (it takes a pass over the cells).
template <class Index>
FastTable make_fast_table(const LiveCells<Index>& cells, std::vector<std::int64_t> tally,
                          std::uint64_t b, const std::vector<std::int64_t>& row_others,
                          const std::vector<std::uint32_t>& col_others) {
    FastTable t;
    const std::size_t k = tally.size();
    const std::size_t n_rows = cells.rows.size();
    const std::size_t n_cols = cells.all_cols ? static_cast<std::size_t>(cells.c) : cells.cols.size();
    const std::int64_t all_others = std::accumulate(tally.begin(), tally.end(), std::int64_t{0}) -
                                    tally[b];
    tally[b] = 0;
    if (all_others > 0) {
        t.freq = normalise(tally.data(), k);
    } else {  // nothing but b: any table will do
        t.freq.assign(k, 0);
        t.freq[b == 0 ? 1 : 0] = kRansTotal;
    }
    const auto others = static_cast<std::uint64_t>(all_others);
    std::vector<std::uint8_t> row_class(n_rows), col_class(n_cols);
    std::int64_t in_row[kClasses] = {}, in_col[kClasses] = {};  // lines of each class
    std::int64_t row_sum[kClasses] = {}, col_sum[kClasses] = {};  // their cells not b
    for (std::size_t ri = 0; ri < n_rows; ++ri) {
        const auto o = row_others[static_cast<std::size_t>(cells.rows[ri])];
        row_class[ri] = line_class(static_cast<std::uint64_t>(o), n_rows, others);
        ++in_row[row_class[ri]];
        row_sum[row_class[ri]] += o;
    }
    for (std::size_t j = 0; j < n_cols; ++j) {
        const std::uint32_t o = col_others[cells.all_cols ? j : cells.cols[j]];
        col_class[j] = line_class(o, n_cols, others);
        ++in_col[col_class[j]];
        col_sum[col_class[j]] += o;
    }
    const auto rows_n = static_cast<std::int64_t>(n_rows), cols_n = static_cast<std::int64_t>(n_cols);
    // o[i][j]: cells of row class i and column class j that are not b, n[i][j]
    // all of them, for rows alone classed (j = 0) or columns alone (i = 0).
    const auto by_one = [&](bool by_row, std::int64_t (&o)[kClasses][kClasses],
                            std::int64_t (&n)[kClasses][kClasses]) {
        for (int i = 0; i < kClasses; ++i) {
            o[by_row ? i : 0][by_row ? 0 : i] = by_row ? row_sum[i] : col_sum[i];
            n[by_row ? i : 0][by_row ? 0 : i] = by_row ? in_row[i] * cols_n : in_col[i] * rows_n;
        }
    };
    const auto cost = [&](const std::int64_t (&o)[kClasses][kClasses],
                          const std::int64_t (&n)[kClasses][kClasses], bool by_row, bool by_col) {
        std::int64_t bits = 0;
        for (int i = 0; i < kClasses; ++i) {
            for (int j = 0; j < kClasses; ++j) {
                if (n[i][j] > 0) bits += split_bits(n[i][j], o[i][j]) + 16 * 256;
            }
        }
        if (by_row) bits += classes_bits(in_row, rows_n);
        if (by_col) bits += classes_bits(in_col, cols_n);
        return bits;
    };
    std::int64_t none_o[kClasses][kClasses] = {}, none_n[kClasses][kClasses] = {};
    none_o[0][0] = all_others;
    none_n[0][0] = rows_n * cols_n;
    std::int64_t row_o[kClasses][kClasses] = {}, row_n[kClasses][kClasses] = {};
    std::int64_t col_o[kClasses][kClasses] = {}, col_n[kClasses][kClasses] = {};
    by_one(true, row_o, row_n);
    by_one(false, col_o, col_n);
    const std::int64_t none_bits = cost(none_o, none_n, false, false);
    const std::int64_t row_bits = cost(row_o, row_n, true, false);
    const std::int64_t col_bits = cost(col_o, col_n, false, true);
    bool by_row = false, by_col = false;
    const std::int64_t(*o)[kClasses] = none_o;
    std::int64_t best = none_bits;
    if (row_bits < best) {
        best = row_bits;
        by_row = true;
        o = row_o;
    }
    if (col_bits < best) {
        best = col_bits;
        by_row = false;
        by_col = true;
        o = col_o;
    }
    std::int64_t both_o[kClasses][kClasses] = {}, both_n[kClasses][kClasses] = {};
    if (row_bits < none_bits && col_bits < none_bits) {
        // A pass over the cells: each row's count by column class, four 16-bit
        // counters in one word (a column's bit in its class's counter).
        std::vector<std::uint64_t> col_bit(n_cols);
        for (std::size_t j = 0; j < n_cols; ++j) col_bit[j] = std::uint64_t{1} << (16 * col_class[j]);
        for (std::size_t ri = 0; ri < n_rows; ++ri) {
            const Index* row = cells.idx + cells.rows[ri] * cells.c;
            for (std::size_t j0 = 0; j0 < n_cols; j0 += 65535) {
                std::uint64_t packed = 0;
                const std::size_t j1 = std::min(n_cols, j0 + 65535);
                if (cells.all_cols) {
                    for (std::size_t j = j0; j < j1; ++j) {
                        packed += col_bit[j] & (0 - static_cast<std::uint64_t>(row[j] != static_cast<Index>(b)));
                    }
                } else {
                    for (std::size_t j = j0; j < j1; ++j) {
                        packed += col_bit[j] &
                                  (0 - static_cast<std::uint64_t>(row[cells.cols[j]] != static_cast<Index>(b)));
                    }
                }
                for (int j = 0; j < kClasses; ++j) {
                    both_o[row_class[ri]][j] += static_cast<std::int64_t>((packed >> (16 * j)) & 0xffff);
                }
            }
        }
        for (int i = 0; i < kClasses; ++i) {
            for (int j = 0; j < kClasses; ++j) both_n[i][j] = in_row[i] * in_col[j];
        }
        if (cost(both_o, both_n, true, true) < best) {
            by_row = by_col = true;
            o = both_o;
        }
    }
    const std::int64_t(*n)[kClasses] = by_row && by_col ? both_n : by_row ? row_n : by_col ? col_n : none_n;
    t.row_class = by_row ? std::move(row_class) : std::vector<std::uint8_t>(n_rows);
    t.col_class = by_col ? std::move(col_class) : std::vector<std::uint8_t>(n_cols);
    for (int i = 0; i < kClasses; ++i) {
        for (int j = 0; j < kClasses; ++j) {
            t.other[i][j] = share(static_cast<std::uint64_t>(o[i][j]), static_cast<std::uint64_t>(n[i][j]));
        }
    }
    return t;
}

}  // namespace codec
}  // namespace softshare
