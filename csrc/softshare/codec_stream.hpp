// The header stream's adaptive values (docs/format.md, "The header stream"):
// bits, symbols and integers, each model found by a context number the
// caller gives. Python-free; bind_codec.cpp binds them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "softshare/codec_coder.hpp"

namespace softshare {
namespace codec {


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

}  // namespace codec
}  // namespace softshare
