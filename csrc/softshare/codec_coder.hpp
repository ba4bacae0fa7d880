// The compressed model file's coder (docs/format.md is its specification):
// the arithmetic coder, its adaptive models and its binary trees. Python-free;
// codec_stream.hpp (the header's values) and codec_layers.hpp (the layers)
// build on it.
//
// A binary arithmetic coder (32-bit, carry-less, 12-bit probabilities) driven
// by adaptive models: every bit has a probability that counts what it has
// seen (rate 1/(n + 1.5), the Beta(1/4, 1/4) estimate, until a fixed 1/256.5);
// where two models predict one bit, a logistic mixer learns how much to trust
// each (as in lpaq). Everything is integer arithmetic, so the encoder and the
// decoder compute the same probabilities on every machine and compiler.
//
// A decoder never reads outside its buffer (past the end it reads zeros, as
// the encoder's shortest flush assumes) and decodes any bytes into values in
// range; overrun() tells when it read more than the stream holds.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace softshare {
namespace codec {

#ifndef SOFTSHARE_CODEC_HOT
#if defined(__GNUC__) || defined(__clang__)
#define SOFTSHARE_CODEC_HOT inline __attribute__((always_inline))
#else
#define SOFTSHARE_CODEC_HOT inline
#endif
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

SOFTSHARE_CODEC_HOT int squash(int d) {
    return kTables.squash[std::clamp(d, -2047, 2047) + 2047];
}
SOFTSHARE_CODEC_HOT int stretch(int p12) { return kTables.stretch[p12]; }

// ---- adaptive bit model ----------------------------------------------------------------------

// P(bit = 1) in 1/65536 and how many bits it has seen.
struct Bit {
    std::int32_t p = 32768;
    std::int32_t n = 0;
    SOFTSHARE_CODEC_HOT int p12() const { return std::clamp(p >> 4, 1, 4095); }
    SOFTSHARE_CODEC_HOT void update(int y) {
        const std::int32_t target = y ? 65535 : 0;
        const std::int64_t step = static_cast<std::int64_t>(target - p) * kTables.rate[n];
        p += static_cast<std::int32_t>(step >> 16);
        n += n < kLimit;
    }
    // update(y) once n has reached kLimit (the rate fixed, n unchanged).
    SOFTSHARE_CODEC_HOT void update_settled(int y) {
        const std::int32_t target = y ? 65535 : 0;
        const std::int64_t step = static_cast<std::int64_t>(target - p) * kTables.rate[kLimit];
        p += static_cast<std::int32_t>(step >> 16);
    }
};

// Mixes two predictions (and a bias) in the logistic domain; learns its weights.
struct Mixer {
    std::int32_t w[3] = {36000, 36000, 0};  // 16.16 fixed point
    int x[3] = {0, 0, 256};
    int pr = 2048;
    SOFTSHARE_CODEC_HOT int mix(int p_a, int p_b) {
        x[0] = stretch(p_a);
        x[1] = stretch(p_b);
        const std::int64_t dot = static_cast<std::int64_t>(w[0]) * x[0] +
                                 static_cast<std::int64_t>(w[1]) * x[1] +
                                 static_cast<std::int64_t>(w[2]) * x[2];
        const int d = static_cast<int>(std::clamp<std::int64_t>(dot >> 16, -2047, 2047));
        pr = std::clamp(squash(d), 1, 4095);
        return pr;
    }
    SOFTSHARE_CODEC_HOT void update(int y) {
        const std::int64_t err = static_cast<std::int64_t>((y << 12) - pr) * 61;  // rate ~0.015
        for (int i = 0; i < 3; ++i) w[i] += static_cast<std::int32_t>((x[i] * err) >> 16);
    }
};

// ---- the arithmetic coder --------------------------------------------------------------------

class Encoder {
public:
    SOFTSHARE_CODEC_HOT void encode(int y, int p12) {  // p12 = P(y = 1) in 1/4096, in [1, 4095]
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
    void reserve(std::size_t bytes) { out_.reserve(bytes); }

private:
    std::uint32_t x1_ = 0, x2_ = 0xffffffffu;
    std::vector<std::uint8_t> out_;
};

class Decoder {
public:
    Decoder(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {
        for (int i = 0; i < 4; ++i) x_ = (x_ << 8) | next();
    }
    SOFTSHARE_CODEC_HOT int decode(int p12) {
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

}  // namespace codec
}  // namespace softshare
