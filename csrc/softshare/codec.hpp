// The entropy coder of softshare's compressed model file (docs/format.md is its
// specification). Python-free; bindings.cpp is its only user.
//
// A binary arithmetic coder (32-bit, carry-less, 12-bit probabilities) driven
// by adaptive models: every bit has a probability that counts what it has
// seen (rate 1/(n + 1.5), the Beta(1/4, 1/4) estimate, until a fixed 1/256.5);
// where two models predict one bit, a logistic mixer learns how much to trust
// each (as in lpaq). Everything is integer arithmetic, so the encoder and the
// decoder compute the same probabilities on every machine and compiler.
//
// Two users:
//   * code_layer: the quantized layers, one stream for all of them. Each layer
//     is a matrix R x C (R = its first dimension) of codebook indices; its most
//     frequent index is its background. Coded: the background, one flag per row
//     and per column (does it hold anything else?), then, in the live rows and
//     columns, one bit per cell (context: the cells to the left and above) and
//     the index of every other cell (a binary tree; the layer's own models and
//     file-wide ones, mixed). Bits that the flags imply are not coded.
//   * StreamEncoder / StreamDecoder: the header's adaptive bits, symbols and
//     integers, each model found by a context number the caller gives.
//
// A decoder never reads outside its buffer (past the end it reads zeros, as
// the encoder's shortest flush assumes) and decodes any bytes into values in
// range; overrun() tells when it read more than the stream holds.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace softshare {
namespace codec {

#if defined(__GNUC__) || defined(__clang__)
#define SOFTSHARE_HOT inline __attribute__((always_inline))
#else
#define SOFTSHARE_HOT inline
#endif

// ---- probabilities: squash / stretch in the logistic domain -------------------------------

// 4096 / (1 + exp(-d / 256)) for d in [-2047, 2047], interpolated (lpaq1's table).
constexpr int squash_interpolated(int d) {
    constexpr int t[33] = {1,    2,    3,    6,    10,   16,   27,   45,   73,   120,  194,
                           310,  488,  747,  1101, 1546, 2047, 2549, 2994, 3348, 3607, 3785,
                           3901, 3975, 4022, 4050, 4068, 4079, 4085, 4089, 4092, 4093, 4094};
    const int e = d + 2048;  // in [1, 4095]: index and weight without shifting negatives
    const int i = e >> 7, w = e & 127;
    return (t[i] * (128 - w) + t[i + 1] * w + 64) >> 7;
}

constexpr int kLimit = 255;  // a bit model's count saturates here: then its rate stays 1/256.5

struct Tables {
    std::int16_t squash[4095] = {};   // squash(d) at d + 2047
    std::int16_t stretch[4096] = {};  // its inverse: ln(p / (1 - p)) * 256 for p in 1/4096
    std::int32_t rate[kLimit + 1] = {};  // 65536 / (n + 1.5), rounded
    constexpr Tables() {
        for (int d = -2047; d <= 2047; ++d) {
            squash[d + 2047] = static_cast<std::int16_t>(squash_interpolated(d));
        }
        int pi = 0;
        for (int x = -2047; x <= 2047; ++x) {
            const int p = squash[x + 2047];
            for (int j = pi; j <= p; ++j) stretch[j] = static_cast<std::int16_t>(x);
            pi = p + 1;
        }
        for (int j = pi; j < 4096; ++j) stretch[j] = 2047;
        for (int n = 0; n <= kLimit; ++n) rate[n] = (131072 + (2 * n + 3) / 2) / (2 * n + 3);
    }
};
inline constexpr Tables kTables{};

SOFTSHARE_HOT int squash(int d) {
    return kTables.squash[std::clamp(d, -2047, 2047) + 2047];
}
SOFTSHARE_HOT int stretch(int p12) { return kTables.stretch[p12]; }

// ---- adaptive bit model ----------------------------------------------------------------------

// P(bit = 1) in 1/65536 and how many bits it has seen.
struct Bit {
    std::int32_t p = 32768;
    std::int32_t n = 0;
    SOFTSHARE_HOT int p12() const { return std::clamp(p >> 4, 1, 4095); }
    SOFTSHARE_HOT void update(int y) {
        const std::int32_t target = y ? 65535 : 0;
        const std::int64_t step = static_cast<std::int64_t>(target - p) * kTables.rate[n];
        p += static_cast<std::int32_t>(step >> 16);
        n += n < kLimit;
    }
};

// Mixes two predictions (and a bias) in the logistic domain; learns its weights.
struct Mixer {
    std::int32_t w[3] = {36000, 36000, 0};  // 16.16 fixed point
    int x[3] = {0, 0, 256};
    int pr = 2048;
    SOFTSHARE_HOT int mix(int p_a, int p_b) {
        x[0] = stretch(p_a);
        x[1] = stretch(p_b);
        const std::int64_t dot = static_cast<std::int64_t>(w[0]) * x[0] +
                                 static_cast<std::int64_t>(w[1]) * x[1] +
                                 static_cast<std::int64_t>(w[2]) * x[2];
        const int d = static_cast<int>(std::clamp<std::int64_t>(dot >> 16, -2047, 2047));
        pr = std::clamp(squash(d), 1, 4095);
        return pr;
    }
    SOFTSHARE_HOT void update(int y) {
        const std::int64_t err = static_cast<std::int64_t>((y << 12) - pr) * 61;  // rate ~0.015
        for (int i = 0; i < 3; ++i) w[i] += static_cast<std::int32_t>((x[i] * err) >> 16);
    }
};

// ---- the arithmetic coder --------------------------------------------------------------------

class Encoder {
public:
    SOFTSHARE_HOT void encode(int y, int p12) {  // p12 = P(y = 1) in 1/4096, in [1, 4095]
        const std::uint32_t r = x2_ - x1_;
        const std::uint32_t p = static_cast<std::uint32_t>(p12);
        const std::uint32_t xmid = x1_ + (r >> 12) * p + (((r & 0xfff) * p) >> 12);
        if (y) x2_ = xmid; else x1_ = xmid + 1;
        while (((x1_ ^ x2_) & 0xff000000u) == 0) {
            out_.push_back(static_cast<std::uint8_t>(x2_ >> 24));
            x1_ <<= 8;
            x2_ = (x2_ << 8) | 255;
        }
    }
    void raw(std::uint64_t value, int nbits) {  // equiprobable bits, most significant first
        for (int b = nbits - 1; b >= 0; --b) encode(static_cast<int>((value >> b) & 1), 2048);
    }
    // The shortest ending: the decoder pads with zero bytes, so any value in
    // [x1, x2] whose low bytes are zero will do (at most one byte; none at x1 = 0).
    std::vector<std::uint8_t> finish() {
        if (x1_ != 0) {
            const std::uint32_t top = (x1_ >> 24) + ((x1_ & 0xffffffu) ? 1u : 0u);
            out_.push_back(static_cast<std::uint8_t>(top));
        }
        x1_ = 0;
        x2_ = 0xffffffffu;
        return std::move(out_);
    }
    std::size_t size() const { return out_.size(); }

private:
    std::uint32_t x1_ = 0, x2_ = 0xffffffffu;
    std::vector<std::uint8_t> out_;
};

class Decoder {
public:
    Decoder(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {
        for (int i = 0; i < 4; ++i) x_ = (x_ << 8) | next();
    }
    SOFTSHARE_HOT int decode(int p12) {
        const std::uint32_t r = x2_ - x1_;
        const std::uint32_t p = static_cast<std::uint32_t>(p12);
        const std::uint32_t xmid = x1_ + (r >> 12) * p + (((r & 0xfff) * p) >> 12);
        const int y = x_ <= xmid;
        if (y) x2_ = xmid; else x1_ = xmid + 1;
        while (((x1_ ^ x2_) & 0xff000000u) == 0) {
            x1_ <<= 8;
            x2_ = (x2_ << 8) | 255;
            x_ = (x_ << 8) | next();
            ++shifted_;
        }
        return y;
    }
    std::uint64_t raw(int nbits) {
        std::uint64_t v = 0;
        for (int b = 0; b < nbits; ++b) v = (v << 1) | static_cast<std::uint64_t>(decode(2048));
        return v;
    }
    // Bytes the encoder had written at this point (equal to its size()).
    std::size_t shifted() const { return shifted_; }
    // Whether the coded values needed bytes beyond the stream (a short or corrupt stream).
    bool overrun() const { return shifted_ > size_; }

private:
    std::uint32_t next() { return pos_ < size_ ? data_[pos_++] : (++pos_, 0u); }
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    std::size_t shifted_ = 0;
    std::uint32_t x1_ = 0, x2_ = 0xffffffffu, x_ = 0;
};

// ---- symbols: a binary tree over [0, n), most significant bit first ------------------------
//
// Bits whose 1-branch lies entirely at or above n are implied (0), so any
// decoded value is below n. The top kTreeLevels levels are modelled; lower
// bits (alphabets above 4096) are coded as equiprobable.

constexpr int kTreeLevels = 12;

inline int bit_length(std::uint64_t v) {
    int n = 0;
    while (v) { ++n; v >>= 1; }
    return n;
}

// One tree's models: node (1 << level) | prefix, up to 2^kTreeLevels nodes.
struct Tree {
    std::vector<Bit> node;
    explicit Tree(std::uint64_t n)
        : node(std::size_t{1} << std::min(bit_length(n > 1 ? n - 1 : 0), kTreeLevels)) {}
};

// Walks the tree of an alphabet of n symbols, most significant bit first:
// `code(node, bit)` codes (or decodes) one bit with the model of `node`, or as
// equiprobable where node is 0, and returns it. Returns the value.
template <class CodeBit>
std::uint64_t walk_tree(std::uint64_t n, std::uint64_t value, CodeBit&& code) {
    if (n <= 1) return 0;
    const int depth = bit_length(n - 1);
    std::uint64_t prefix = 0;
    std::size_t node = 1;
    for (int level = 0; level < depth; ++level) {
        const int b = depth - 1 - level;
        const std::uint64_t one = prefix | (std::uint64_t{1} << b);
        int bit = 0;
        if (one < n) bit = code(level < kTreeLevels ? node : 0, static_cast<int>((value >> b) & 1));
        if (bit) prefix = one;
        if (level < kTreeLevels) node = 2 * node + static_cast<std::size_t>(bit);
    }
    return prefix;
}

// ---- the header's adaptive values --------------------------------------------------------------

// Models for bits, symbols and integers, found by the caller's context number.
class ContextModels {
public:
    Bit& bit(std::uint32_t ctx) { return bits_[ctx]; }
    Tree& tree(std::uint32_t ctx, std::uint64_t n) {
        const std::uint64_t key = (static_cast<std::uint64_t>(ctx) << 32) | (n & 0xffffffffu);
        auto it = trees_.find(key);
        if (it == trees_.end()) it = trees_.emplace(key, Tree(n)).first;
        return it->second;
    }

private:
    std::unordered_map<std::uint32_t, Bit> bits_;
    std::unordered_map<std::uint64_t, Tree> trees_;
};

constexpr std::uint64_t kMaxAlphabet = std::uint64_t{1} << 32;

inline void check_alphabet(std::uint64_t n) {
    if (n < 1 || n > kMaxAlphabet) {
        throw std::invalid_argument("alphabet size must be in [1, 2^32], got " + std::to_string(n));
    }
}

// Contexts of the integer code: its length, then the bit below the leading one.
inline std::uint32_t length_ctx(std::uint32_t ctx) { return ctx * 2; }
inline std::uint32_t second_ctx(std::uint32_t ctx, int length) {
    return 0x80000000u | ((ctx * 2 + 1) * 65u + static_cast<std::uint32_t>(length));
}

class StreamEncoder {
public:
    void bit(std::uint32_t ctx, int y) {
        Bit& m = models_.bit(ctx);
        enc_.encode(y, m.p12());
        m.update(y);
    }
    void symbol(std::uint32_t ctx, std::uint64_t n, std::uint64_t value) {
        check_alphabet(n);
        if (value >= n) {
            throw std::invalid_argument("symbol " + std::to_string(value) + " is not below " +
                                        std::to_string(n));
        }
        Tree& t = models_.tree(ctx, n);
        walk_tree(n, value, [&](std::size_t node, int y) {
            if (node == 0) { enc_.encode(y, 2048); return y; }
            enc_.encode(y, t.node[node].p12());
            t.node[node].update(y);
            return y;
        });
    }
    // An unsigned integer: its bit length (adaptive), the next bit (adaptive), the rest raw.
    void uint(std::uint32_t ctx, std::uint64_t value) {
        const int length = bit_length(value);
        symbol(length_ctx(ctx), 65, static_cast<std::uint64_t>(length));
        if (length >= 2) {
            bit(second_ctx(ctx, length), static_cast<int>((value >> (length - 2)) & 1));
            enc_.raw(value, length - 2);
        }
    }
    void raw(int nbits, std::uint64_t value) {
        if (nbits < 0 || nbits > 64) throw std::invalid_argument("raw: nbits must be in [0, 64]");
        enc_.raw(value, nbits);
    }
    std::vector<std::uint8_t> finish() { return enc_.finish(); }
    std::size_t size() const { return enc_.size(); }

private:
    Encoder enc_;
    ContextModels models_;
};

class StreamDecoder {
public:
    explicit StreamDecoder(std::vector<std::uint8_t> data)
        : data_(std::move(data)), dec_(data_.data(), data_.size()) {}
    // Moving keeps the bytes where the decoder reads them; a copy would not.
    StreamDecoder(StreamDecoder&&) = default;
    StreamDecoder(const StreamDecoder&) = delete;
    StreamDecoder& operator=(const StreamDecoder&) = delete;
    StreamDecoder& operator=(StreamDecoder&&) = delete;
    int bit(std::uint32_t ctx) {
        Bit& m = models_.bit(ctx);
        const int y = dec_.decode(m.p12());
        m.update(y);
        return y;
    }
    std::uint64_t symbol(std::uint32_t ctx, std::uint64_t n) {
        check_alphabet(n);
        Tree& t = models_.tree(ctx, n);
        return walk_tree(n, 0, [&](std::size_t node, int) {
            if (node == 0) return dec_.decode(2048);
            const int y = dec_.decode(t.node[node].p12());
            t.node[node].update(y);
            return y;
        });
    }
    std::uint64_t uint(std::uint32_t ctx) {
        const int length = static_cast<int>(symbol(length_ctx(ctx), 65));
        if (length == 0) return 0;
        if (length == 1) return 1;
        const std::uint64_t second = static_cast<std::uint64_t>(bit(second_ctx(ctx, length)));
        const std::uint64_t rest = dec_.raw(length - 2);
        return (std::uint64_t{1} << (length - 1)) | (second << (length - 2)) | rest;
    }
    std::uint64_t raw(int nbits) {
        if (nbits < 0 || nbits > 64) throw std::invalid_argument("raw: nbits must be in [0, 64]");
        return dec_.raw(nbits);
    }
    bool overrun() const { return dec_.overrun(); }
    std::size_t position() const { return dec_.shifted(); }

private:
    std::vector<std::uint8_t> data_;
    Decoder dec_;
    ContextModels models_;
};

// ---- the layers ---------------------------------------------------------------------------------

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
        : k_(k), background_(k), sym_local_(k > 1 ? k - 1 : 1), sym_global_(k > 1 ? k - 1 : 1) {
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
        for (std::size_t node : touched_) sym_local_.node[node] = Bit();
        touched_.clear();
    }

    template <class IO>
    SOFTSHARE_HOT int flag(IO& io, FlagModels& f, int ctx, int y) {
        const int p = f.mix.mix(f.local[ctx].p12(), f.global[ctx].p12());
        y = io.code(y, p);
        f.local[ctx].update(y);
        f.global[ctx].update(y);
        f.mix.update(y);
        return y;
    }

    template <class IO>
    SOFTSHARE_HOT int cell(IO& io, KindModels& km, int ctx, int y) {
        Bit& seen = km.cell[ctx];
        if (seen.n >= kLimit) {  // settled: the context model alone (faster, as good)
            y = io.code(y, seen.p12());
            km.cell_any.update(y);
            seen.update(y);
            return y;
        }
        const int p = km.cell_mix.mix(km.cell_any.p12(), km.cell[ctx].p12());
        y = io.code(y, p);
        km.cell_any.update(y);
        km.cell[ctx].update(y);
        km.cell_mix.update(y);
        return y;
    }

    // A non-background index, as its rank among the k - 1 others.
    template <class IO>
    std::uint64_t symbol(IO& io, std::uint64_t value) {
        return walk_tree(k_ - 1, value, [&](std::size_t node, int y) {
            if (node == 0) return io.code(y, 2048);
            Bit& local = sym_local_.node[node];
            Bit& global = sym_global_.node[node];
            if (local.n >= kLimit) {  // settled: the layer's own model alone
                y = io.code(y, local.p12());
                local.update(y);
                global.update(y);
                return y;
            }
            Mixer& mix = sym_mix_[static_cast<std::size_t>(bit_length(node) - 1)];
            y = io.code(y, mix.mix(local.p12(), global.p12()));
            if (local.n == 0) touched_.push_back(node);
            local.update(y);
            global.update(y);
            mix.update(y);
            return y;
        });
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
    std::uint64_t k_;
    KindModels kind_[2];
    Tree background_, sym_local_, sym_global_;
    std::vector<Mixer> sym_mix_;
    std::vector<std::size_t> touched_;
};

// The encoder's and the decoder's side of one coded bit.
struct EncodeIO {
    Encoder& enc;
    SOFTSHARE_HOT int code(int y, int p12) {
        enc.encode(y, p12);
        return y;
    }
};
struct DecodeIO {
    Decoder& dec;
    SOFTSHARE_HOT int code(int, int p12) { return dec.decode(p12); }
};

// The most frequent index of a layer (the smallest on a tie).
template <class Index>
std::uint64_t most_frequent(const Index* idx, std::int64_t n, std::uint64_t k) {
    if (k <= 65536) {
        // Four tallies, summed at the end: a run of equal indices (most of a
        // pruned layer) then increments four counters in turn, not one.
        const auto ku = static_cast<std::size_t>(k);
        std::vector<std::int64_t> tally(4 * ku);
        std::int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            ++tally[idx[i]];
            ++tally[ku + idx[i + 1]];
            ++tally[2 * ku + idx[i + 2]];
            ++tally[3 * ku + idx[i + 3]];
        }
        for (; i < n; ++i) ++tally[idx[i]];
        for (std::size_t v = 0; v < ku; ++v) {
            tally[v] += tally[ku + v] + tally[2 * ku + v] + tally[3 * ku + v];
        }
        const auto top = std::max_element(tally.begin(), tally.begin() + static_cast<std::ptrdiff_t>(ku));
        return static_cast<std::uint64_t>(top - tally.begin());
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

// Codes one layer of r x c indices (encoding when kEncode, else decoding into idx,
// every element of which it writes). Indices must be below models.k().
template <bool kEncode, class IO, class Index>
void code_layer(IO& io, LayerModels& m, Index* idx, std::int64_t r, std::int64_t c) {
    if (r == 0 || c == 0 || m.k() <= 1) {  // nothing to code: all index 0
        if (!kEncode) std::fill(idx, idx + r * c, Index{0});
        return;
    }
    m.begin_layer();
    KindModels& km = m.kind(c > 1);
    const std::uint64_t bg = m.background(io, kEncode ? most_frequent(idx, r * c, m.k()) : 0);
    std::vector<std::uint8_t> row_live(static_cast<std::size_t>(r));
    std::vector<std::uint8_t> col_live(static_cast<std::size_t>(c));
    if (kEncode) {  // without branches: the compiler vectorises the inner loop
        for (std::int64_t i = 0; i < r; ++i) {
            const Index* row = idx + i * c;
            std::uint8_t live = 0;
            for (std::int64_t j = 0; j < c; ++j) {
                const auto other = static_cast<std::uint8_t>(row[j] != bg);
                live |= other;
                col_live[static_cast<std::size_t>(j)] |= other;
            }
            row_live[static_cast<std::size_t>(i)] = live;
        }
    }
    int prev = 2;
    bool any = false;
    for (std::int64_t i = 0; i < r; ++i) {
        auto& f = row_live[static_cast<std::size_t>(i)];
        f = static_cast<std::uint8_t>(m.flag(io, km.row, prev, f));
        prev = f;
        any = any || f;
    }
    const bool col_flags = r > 1 && c > 1;  // else every column is live, or c == 1
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
    std::vector<std::int64_t> rows, cols;
    for (std::int64_t i = 0; i < r; ++i) {
        if (row_live[static_cast<std::size_t>(i)]) rows.push_back(i);
    }
    for (std::int64_t j = 0; j < c; ++j) {
        if (col_live[static_cast<std::size_t>(j)]) cols.push_back(j);
    }
    if (rows.empty() || cols.empty()) {
        if (!kEncode) std::fill(idx, idx + r * c, static_cast<Index>(bg));
        return;
    }
    std::vector<std::uint8_t> above(static_cast<std::size_t>(c));
    std::vector<std::uint8_t> col_has(static_cast<std::size_t>(c));
    const std::int64_t last_row = rows.back(), last_col = cols.back();
    if (!kEncode) std::fill(idx, idx + r * c, static_cast<Index>(bg));
    for (const std::int64_t i : rows) {
        Index* row = idx + i * c;
        int left = 0;
        bool row_has = false;
        for (const std::int64_t j : cols) {
            const auto ju = static_cast<std::size_t>(j);
            int y = 1;
            // A live row's last live cell, if the row has nothing yet, is not background;
            // so is a flagged live column's cell in the last live row.
            if (!((j == last_col && !row_has) || (col_flags && i == last_row && !col_has[ju]))) {
                y = m.cell(io, km, 2 * left + above[ju], kEncode ? row[j] != bg : 0);
            }
            if (y) {
                const std::uint64_t v = kEncode ? row[j] : 0;
                const std::uint64_t s = m.symbol(io, kEncode ? v - (v > bg) : 0);
                if (!kEncode) row[j] = static_cast<Index>(s + (s >= bg));
                row_has = true;
                col_has[ju] = 1;
            }
            left = y;
            above[ju] = static_cast<std::uint8_t>(y);
        }
    }
}

}  // namespace codec
}  // namespace softshare

#undef SOFTSHARE_HOT
