// The layer stream (docs/format.md, "The layer stream"): every layer a matrix
// R x C (R = its first dimension) of codebook indices; its most frequent index
// is its background. Coded: the background, one flag per row and per column
// (does it hold anything else?), then, in the live rows and columns, one bit
// per cell (context: the cells to the left and above) and the index of every
// other cell (a binary tree; the layer's own models and file-wide ones,
// mixed). Bits that the flags imply are not coded.
//
// Format versions 1 and 2 code all layers in one stream; versions 3 and 4 cut
// them into segments (codec_segments.hpp); version 4 codes the cells of large
// parts by rANS (codec_rans.hpp). Python-free; bind_codec.cpp binds it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "softshare/codec_coder.hpp"
#include "softshare/codec_fast.hpp"
#include "softshare/codec_rans.hpp"

namespace softshare {
namespace codec {

// Rows or columns of one kind of layer: one flag each, its context the previous flag.
struct FlagModels {
    Bit local[3], global[3];  // context: previous flag 0, 1, or none (2)
    Mixer mix;
};

// The models of one kind of layer (C == 1: vectors; C > 1: matrices).
struct KindModels {
    FlagModels row, col;
    Bit cell_any, cell[4];  // cell: context 2 * left + above (local to a layer)
    Mixer cell_mix;        // file-wide
};

// Everything the layer stream adapts, for a codebook of k values.
class LayerModels {
public:
    explicit LayerModels(std::uint64_t k)
        : k_(k),
          depth_(k > 2 ? bit_length(k - 2) : 0),
          background_(k),
          sym_local_(k > 1 ? k - 1 : 1),
          sym_global_(k > 1 ? k - 1 : 1) {
        sym_mix_.resize(kTreeLevels);
    }
    std::uint64_t k() const { return k_; }

    // Fresh local models for the next layer (the file-wide ones carry on).
    void begin_layer() {
        for (KindModels& km : kind_) {
            for (FlagModels* f : {&km.row, &km.col}) {
                for (Bit& b : f->local) b = Bit();
            }
            km.cell_any = Bit();
            for (Bit& b : km.cell) b = Bit();
        }
        cells_settled_ = false;
        for (std::size_t node : touched_) sym_local_.node[node] = Bit();
        touched_.clear();
    }

    template <class IO>
    SOFTSHARE_CODEC_HOT int flag(IO& io, FlagModels& f, int ctx, int y) {
        const int p = f.mix.mix(f.local[ctx].p12(), f.global[ctx].p12());
        y = io.code(y, p);
        f.local[ctx].update(y);
        f.global[ctx].update(y);
        f.mix.update(y);
        return y;
    }

    template <class IO>
    SOFTSHARE_CODEC_HOT int cell(IO& io, KindModels& km, int ctx, int y) {
        Bit& seen = km.cell[ctx];
        if (seen.n >= kLimit) {  // settled: the context model alone (faster, as good)
            y = io.code(y, seen.p12());
            // cell_any only feeds the mixer, which no cell of this layer uses
            // once every context has settled: its updates can stop then.
            if (!cells_settled_) km.cell_any.update(y);
            seen.update_settled(y);
            return y;
        }
        const int p = km.cell_mix.mix(km.cell_any.p12(), seen.p12());
        y = io.code(y, p);
        km.cell_any.update(y);
        seen.update(y);
        km.cell_mix.update(y);
        if (seen.n >= kLimit) {
            cells_settled_ = km.cell[0].n >= kLimit && km.cell[1].n >= kLimit &&
                             km.cell[2].n >= kLimit && km.cell[3].n >= kLimit;
        }
        return y;
    }

    // A non-background index, as its rank among the k - 1 others.
    template <class IO>
    SOFTSHARE_CODEC_HOT std::uint64_t symbol(IO& io, std::uint64_t value) {
        const std::uint64_t n = k_ - 1;
        if (depth_ > kTreeLevels) return symbol_deep(io, value);
        std::uint64_t prefix = 0;
        std::size_t node = 1;
        for (int level = 0; level < depth_; ++level) {  // as walk_tree, every level modelled
            const int b = depth_ - 1 - level;
            const std::uint64_t one = prefix | (std::uint64_t{1} << b);
            int bit = 0;
            if (one < n) bit = symbol_bit(io, node, level, static_cast<int>((value >> b) & 1));
            if (bit) prefix = one;
            node = 2 * node + static_cast<std::size_t>(bit);
        }
        return prefix;
    }

    template <class IO>
    std::uint64_t background(IO& io, std::uint64_t value) {
        return walk_tree(k_, value, [&](std::size_t node, int y) {
            if (node == 0) return io.code(y, 2048);
            Bit& m = background_.node[node];
            y = io.code(y, m.p12());
            m.update(y);
            return y;
        });
    }

    KindModels& kind(bool matrix) { return kind_[matrix ? 1 : 0]; }

private:
    template <class IO>
    SOFTSHARE_CODEC_HOT int symbol_bit(IO& io, std::size_t node, int level, int y) {
        Bit& local = sym_local_.node[node];
        Bit& global = sym_global_.node[node];
        if (local.n >= kLimit) {  // settled: the layer's own model alone
            y = io.code(y, local.p12());
            local.update_settled(y);
            global.update(y);
            return y;
        }
        Mixer& mix = sym_mix_[static_cast<std::size_t>(level)];
        y = io.code(y, mix.mix(local.p12(), global.p12()));
        if (local.n == 0) touched_.push_back(node);
        local.update(y);
        global.update(y);
        mix.update(y);
        return y;
    }

    // Alphabets over 4096: the levels below kTreeLevels raw.
    template <class IO>
    std::uint64_t symbol_deep(IO& io, std::uint64_t value) {
        return walk_tree(k_ - 1, value, [&](std::size_t node, int y) {
            if (node == 0) return io.code(y, 2048);
            return symbol_bit(io, node, bit_length(node) - 1, y);
        });
    }

    std::uint64_t k_;
    int depth_;  // levels of the indices' tree (bits of k - 2)
    KindModels kind_[2];
    bool cells_settled_ = false;  // every cell context of this layer has settled
    Tree background_, sym_local_, sym_global_;
    std::vector<Mixer> sym_mix_;
    std::vector<std::size_t> touched_;
};

// The encoder's and the decoder's side of one coded bit.
struct EncodeIO {
    Encoder& enc;
    SOFTSHARE_CODEC_HOT int code(int y, int p12) {
        enc.encode(y, p12);
        return y;
    }
};
struct DecodeIO {
    Decoder& dec;
    SOFTSHARE_CODEC_HOT int code(int, int p12) { return dec.decode(p12); }
};

// How many of n indices hold each of the k <= 65536 values.
template <class Index>
std::vector<std::int64_t> value_tally(const Index* idx, std::int64_t n, std::uint64_t k) {
    // Several tallies (8 for codebooks up to 256 values, else 4), summed at the
    // end: a run of equal indices (most of a pruned layer) then increments
    // several counters in turn, not one.
    const auto ku = static_cast<std::size_t>(k);
    const std::size_t ways = ku <= 256 ? 8 : 4;
    std::vector<std::int64_t> tally(ways * ku);
    const auto step = static_cast<std::int64_t>(ways);
    std::int64_t i = 0;
    for (; i + step <= n; i += step) {
        for (std::size_t w = 0; w < ways; ++w) ++tally[w * ku + idx[i + static_cast<std::int64_t>(w)]];
    }
    for (; i < n; ++i) ++tally[idx[i]];
    for (std::size_t w = 1; w < ways; ++w) {
        for (std::size_t v = 0; v < ku; ++v) tally[v] += tally[w * ku + v];
    }
    tally.resize(ku);
    return tally;
}

// The most frequent index of a layer (the smallest on a tie).
template <class Index>
std::uint64_t most_frequent(const Index* idx, std::int64_t n, std::uint64_t k) {
    if (k <= 65536) {
        const std::vector<std::int64_t> tally = value_tally(idx, n, k);
        return static_cast<std::uint64_t>(std::max_element(tally.begin(), tally.end()) -
                                          tally.begin());
    }
    std::unordered_map<std::uint64_t, std::int64_t> count;
    for (std::int64_t i = 0; i < n; ++i) ++count[idx[i]];
    std::uint64_t best = 0;
    std::int64_t best_count = -1;
    for (const auto& [v, c] : count) {
        if (c > best_count || (c == best_count && v < best)) { best = v; best_count = c; }
    }
    return best;
}

// Format version 4's fast parts (codec_fast.hpp, codec_rans.hpp): the models of
// a segment's tables (in its adaptive stream) and the rANS coder of its fast
// parts' cells.
struct FastEncode {
    FastModels models;
    RansEncoder rans;
    std::vector<std::uint8_t> out;  // the fast parts' rANS streams, one after another
};
struct FastDecode {
    FastModels models;
    RansDecoder rans;
};
template <bool kEncode>
using FastSide = std::conditional_t<kEncode, FastEncode, FastDecode>;

#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define SOFTSHARE_RESTRICT __restrict
#else
#define SOFTSHARE_RESTRICT
#endif

// row_live[i]: row i of idx (r x c) holds an index other than bg; col_live[j]
// (zeroed before): column j does. Without branches, and with the flags known
// not to alias the indices, so that the compiler vectorises the inner loop.
template <class Index>
void live_rows_cols(const Index* SOFTSHARE_RESTRICT idx, std::int64_t r, std::int64_t c, Index bg,
                    std::uint8_t* SOFTSHARE_RESTRICT row_live,
                    std::uint8_t* SOFTSHARE_RESTRICT col_live) {
    for (std::int64_t i = 0; i < r; ++i) {
        const Index* SOFTSHARE_RESTRICT row = idx + i * c;
        std::uint8_t live = 0;
        for (std::int64_t j = 0; j < c; ++j) {
            const auto other = static_cast<std::uint8_t>(row[j] != bg);
            live |= other;
            col_live[j] |= other;
        }
        row_live[i] = live;
    }
}

// row_others[i], col_others[j]: how many cells of row i, of column j of idx
// (r x c, at most 2^32 - 1 rows) are not bg (col_others zeroed before).
template <class Index>
void count_rows_cols(const Index* SOFTSHARE_RESTRICT idx, std::int64_t r, std::int64_t c, Index bg,
                     std::int64_t* SOFTSHARE_RESTRICT row_others,
                     std::uint32_t* SOFTSHARE_RESTRICT col_others) {
    for (std::int64_t i = 0; i < r; ++i) {
        const Index* SOFTSHARE_RESTRICT row = idx + i * c;
        std::int64_t count = 0;
        for (std::int64_t j = 0; j < c; ++j) {
            const auto other = static_cast<std::uint32_t>(row[j] != bg);
            count += other;
            col_others[j] += other;
        }
        row_others[i] = count;
    }
}

// Codes one layer of r x c indices (encoding when kEncode, else decoding into idx,
// every element of which it writes). Indices must be below models.k(). Decoding
// with `counts` (k of them), adds how many indices hold each value. With `fast`
// (format version 4's fast part, k <= kFastCodebook), the rows and columns are
// flagged where that pays and the live cells are coded by fast's rANS coder
// with a table coded here, not one by one adaptively.
template <bool kEncode, class IO, class Index>
void code_layer(IO& io, LayerModels& m, Index* idx, std::int64_t r, std::int64_t c,
                std::int64_t* counts = nullptr, FastSide<kEncode>* fast = nullptr) {
    if (r == 0 || c == 0 || m.k() <= 1) {  // nothing to code: all index 0
        if (!kEncode) std::fill(idx, idx + r * c, Index{0});
        if (counts != nullptr && r * c > 0) counts[0] += r * c;
        return;
    }
    m.begin_layer();
    KindModels& km = m.kind(c > 1);
    std::vector<std::int64_t> tally;  // a fast part's: the layer's values (encoding)
    std::uint64_t top = 0;
    if (kEncode && fast != nullptr) {
        tally = value_tally(idx, r * c, m.k());
        top = static_cast<std::uint64_t>(std::max_element(tally.begin(), tally.end()) -
                                         tally.begin());
    } else if (kEncode) {
        top = most_frequent(idx, r * c, m.k());
    }
    const std::uint64_t bg = m.background(io, top);
    std::vector<std::uint8_t> row_live(static_cast<std::size_t>(r));
    std::vector<std::uint8_t> col_live(static_cast<std::size_t>(c));
    std::vector<std::int64_t> row_others;  // a fast part's: each row's and column's cells not bg
    std::vector<std::uint32_t> col_others;
    if (kEncode && fast != nullptr) {
        row_others.resize(static_cast<std::size_t>(r));
        col_others.resize(static_cast<std::size_t>(c));
        count_rows_cols(idx, r, c, static_cast<Index>(bg), row_others.data(), col_others.data());
        for (std::size_t i = 0; i < row_live.size(); ++i) row_live[i] = row_others[i] > 0;
        for (std::size_t j = 0; j < col_live.size(); ++j) col_live[j] = col_others[j] > 0;
    } else if (kEncode) {
        live_rows_cols(idx, r, c, static_cast<Index>(bg), row_live.data(), col_live.data());
    }
    bool row_flags = true;
    bool col_flags = r > 1 && c > 1;  // else every column is live, or c == 1
    if (fast != nullptr) {  // a fast part flags its rows and columns where that pays
        if (kEncode) fast_flags(tally, bg, row_live, col_live, row_flags, col_flags);
        row_flags = code_flag(io, fast->models.row_flags, row_flags);
        if (r > 1 && c > 1) col_flags = code_flag(io, fast->models.col_flags, col_flags);
    }
    int prev = 2;
    bool any = false;
    for (std::int64_t i = 0; i < r; ++i) {
        auto& f = row_live[static_cast<std::size_t>(i)];
        if (row_flags) f = static_cast<std::uint8_t>(m.flag(io, km.row, prev, f));
        else f = 1;
        prev = f;
        any = any || f;
    }
    if (col_flags) {
        prev = 2;
        for (std::int64_t j = 0; j < c; ++j) {
            auto& f = col_live[static_cast<std::size_t>(j)];
            f = static_cast<std::uint8_t>(m.flag(io, km.col, prev, f));
            prev = f;
        }
    } else {
        std::fill(col_live.begin(), col_live.end(), static_cast<std::uint8_t>(c == 1 ? any : true));
    }
    std::vector<std::int64_t> rows;
    std::vector<std::size_t> cols;
    for (std::int64_t i = 0; i < r; ++i) {
        if (row_live[static_cast<std::size_t>(i)]) rows.push_back(i);
    }
    for (std::int64_t j = 0; j < c; ++j) {
        if (col_live[static_cast<std::size_t>(j)]) cols.push_back(static_cast<std::size_t>(j));
    }
    if (rows.empty() || cols.empty()) {
        if (!kEncode) std::fill(idx, idx + r * c, static_cast<Index>(bg));
        if (counts != nullptr) counts[bg] += r * c;
        return;
    }
    if (!kEncode) std::fill(idx, idx + r * c, static_cast<Index>(bg));
    if (fast != nullptr) {
        const auto live = static_cast<std::int64_t>(rows.size() * cols.size());
        const LiveCells<Index> cells{idx, c, rows, cols, cols.size() == static_cast<std::size_t>(c)};
        FastTable t;
        if (kEncode) {
            tally[bg] -= r * c - live;  // every cell outside the live ones is the background
            t = make_fast_table(cells, std::move(tally), bg, row_others, col_others);
        }
        code_fast_table<kEncode>(io, fast->models, t, static_cast<std::size_t>(m.k()), bg,
                                 rows.size(), cols.size());
        if constexpr (kEncode) {
            fast->rans.encode(cells, t, bg, fast->out);
        } else {
            fast->rans.decode(cells, t, bg, counts);
            if (counts != nullptr) counts[bg] += r * c - live;
        }
        return;
    }
    std::int64_t others = 0;  // cells not the background
    // above[j]: the cell of the previous live row in column j; col_has[j]: a
    // cell of column j so far is not the background.
    std::vector<std::uint8_t> above(static_cast<std::size_t>(c));
    std::vector<std::uint8_t> col_has(static_cast<std::size_t>(c));
    const std::int64_t last_row = rows.back();
    const std::size_t n_cols = cols.size();
    for (const std::int64_t i : rows) {
        Index* row = idx + i * c;
        // A live row's last live cell, if the row has nothing yet, is not background;
        // so is a flagged live column's cell in the last live row.
        const bool last = col_flags && i == last_row;
        int left = 0;
        bool row_has = false;
        for (std::size_t jj = 0; jj < n_cols; ++jj) {
            const std::size_t j = cols[jj];
            const bool implied = (jj + 1 == n_cols && !row_has) || (last && !col_has[j]);
            int y = 1;
            if (!implied) y = m.cell(io, km, 2 * left + above[j], kEncode ? row[j] != bg : 0);
            if (y) {
                const std::uint64_t v = kEncode ? row[j] : 0;
                const std::uint64_t s = m.symbol(io, kEncode ? v - (v > bg) : 0);
                if (!kEncode) {
                    const std::uint64_t got = s + (s >= bg);
                    row[j] = static_cast<Index>(got);
                    if (counts != nullptr) ++counts[got];
                }
                ++others;
                row_has = true;
                col_has[j] = 1;
            }
            left = y;
            above[j] = static_cast<std::uint8_t>(y);
        }
    }
    if (counts != nullptr) counts[bg] += r * c - others;
}

}  // namespace codec
}  // namespace softshare
