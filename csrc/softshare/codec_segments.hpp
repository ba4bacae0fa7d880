// Format versions 3 and 4's segments (docs/format.md, "Segments"): the layers
// cut into parts and packed into segments, derived from the shapes alone, and
// one segment encoded or decoded on its own (fresh models, its own streams), so
// that threads code segments independently. Version 4 codes the cells of every
// part of at least kFastCells cells by rANS (codec_rans.hpp) in a second stream
// of the segment. Python-free; bind_codec.cpp runs the segments on OpenMP threads.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "softshare/codec_coder.hpp"
#include "softshare/codec_layers.hpp"
#include "softshare/codec_rans.hpp"

namespace softshare {
namespace codec {

// A segment's cells, about: a layer of more cells is cut into bands of rows.
constexpr std::int64_t kSegmentCells = std::int64_t{1} << 20;
// Version 4: a part of at least this many cells (and a codebook of 2 to
// kFastCodebook values) is a fast part.
constexpr std::int64_t kFastCells = std::int64_t{1} << 18;

// What decode_segment says of a stream that needed bytes beyond its end.
inline constexpr char kEndsEarly[] = "the layer data ends before its last value (truncated or corrupt)";

// Rows [row0, row0 + rows) of one layer, coded as a layer of its own.
struct Part {
    std::size_t layer;
    std::int64_t row0, rows;
};

// The parts, in order, and each segment's: parts [begin, end).
struct SegmentPlan {
    std::vector<Part> parts;
    std::vector<std::pair<std::size_t, std::size_t>> segments;
};

// The parts: each layer whole when it has at most kSegmentCells cells, else
// bands of max(1, kSegmentCells / C) rows (the last one shorter); then packed
// in order, a part starting a new segment when the one before holds cells and
// would, with the part's, hold more than kSegmentCells. A layer that codes
// nothing (no weights, or k <= 1) counts 0 cells. Shapes are (R, C).
inline SegmentPlan plan_segments(const std::vector<std::pair<std::int64_t, std::int64_t>>& shapes,
                                 std::uint64_t k) {
    SegmentPlan plan;
    std::int64_t held = 0;
    const auto add = [&](const Part& part, std::int64_t cells) {
        if (plan.segments.empty() || (held > 0 && cells > kSegmentCells - held)) {
            plan.segments.emplace_back(plan.parts.size(), plan.parts.size());
            held = 0;
        }
        plan.parts.push_back(part);
        plan.segments.back().second = plan.parts.size();
        held += cells;
    };
    for (std::size_t i = 0; i < shapes.size(); ++i) {
        const auto [r, c] = shapes[i];
        const std::int64_t cells = k <= 1 ? 0 : r * c;
        if (cells <= kSegmentCells) {
            add(Part{i, 0, r}, cells);
            continue;
        }
        const std::int64_t band = std::max<std::int64_t>(1, kSegmentCells / c);
        for (std::int64_t row0 = 0; row0 < r; row0 += band) {
            const std::int64_t rows = std::min(band, r - row0);
            add(Part{i, row0, rows}, rows * c);
        }
    }
    return plan;
}

// One layer's indices as the coder sees them: width bytes each (1, 2 or 4), cols per row.
struct LayerData {
    void* data;
    int width;
    std::int64_t cols;
};

// Whether a part is a fast part (version 4 only).
inline bool is_fast(const Part& part, const LayerData& layer, std::uint64_t k, int version) {
    return version >= 4 && k >= 2 && k <= kFastCodebook && part.rows * layer.cols >= kFastCells;
}

// Codes one part (counts, fast: code_layer's).
template <bool kEncode, class IO>
void code_part(IO& io, LayerModels& models, const LayerData& layer, const Part& part,
               std::int64_t* counts = nullptr, FastSide<kEncode>* fast = nullptr) {
    const std::int64_t at = part.row0 * layer.cols;
    const auto run = [&](auto* idx) {
        code_layer<kEncode>(io, models, idx + at, part.rows, layer.cols, counts, fast);
    };
    if (layer.width == 1) run(static_cast<std::uint8_t*>(layer.data));
    else if (layer.width == 2) run(static_cast<std::uint16_t*>(layer.data));
    else run(static_cast<std::uint32_t*>(layer.data));
}

inline void put_varint(std::vector<std::uint8_t>& out, std::uint64_t v) {
    do {
        out.push_back(static_cast<std::uint8_t>((v & 127) | (v > 127 ? 128 : 0)));
        v >>= 7;
    } while (v);
}

// LEB128 of at most 8 bytes at data[at, size), advancing at; -1 if malformed.
inline std::int64_t get_varint(const std::uint8_t* data, std::size_t size, std::size_t& at) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 56; shift += 7) {
        if (at >= size) return -1;
        const std::uint8_t b = data[at++];
        v |= static_cast<std::uint64_t>(b & 127) << shift;
        if (b < 128) return static_cast<std::int64_t>(v);
    }
    return -1;
}

inline bool has_fast_part(const SegmentPlan& plan, std::size_t s,
                          const std::vector<LayerData>& layers, std::uint64_t k, int version) {
    const auto [begin, end] = plan.segments[s];
    for (std::size_t p = begin; p < end; ++p) {
        if (is_fast(plan.parts[p], layers[plan.parts[p].layer], k, version)) return true;
    }
    return false;
}

// Segment s's bytes (version 3 or 4); part_bytes[p] for each of its parts: the
// bytes its coding output (the flush counts as the last part's).
inline std::vector<std::uint8_t> encode_segment(const SegmentPlan& plan, std::size_t s,
                                                const std::vector<LayerData>& layers,
                                                std::uint64_t k, int version,
                                                std::vector<std::size_t>& part_bytes) {
    const auto [begin, end] = plan.segments[s];
    Encoder enc;
    LayerModels models(k);
    EncodeIO io{enc};
    FastEncode fast;
    std::size_t before = 0;
    for (std::size_t p = begin; p < end; ++p) {
        const Part& part = plan.parts[p];
        const LayerData& layer = layers[part.layer];
        const std::size_t fast_before = fast.out.size();
        code_part<true>(io, models, layer, part, nullptr,
                        is_fast(part, layer, k, version) ? &fast : nullptr);
        part_bytes[p] = enc.size() - before + fast.out.size() - fast_before;
        before = enc.size();
    }
    std::vector<std::uint8_t> side = enc.finish();
    part_bytes[end - 1] += side.size() - before;  // the flush
    if (!has_fast_part(plan, s, layers, k, version)) return side;
    std::vector<std::uint8_t> out;
    out.reserve(side.size() + fast.out.size() + 8);
    put_varint(out, side.size());
    out.insert(out.end(), side.begin(), side.end());
    out.insert(out.end(), fast.out.begin(), fast.out.end());
    return out;
}

// Decodes segment s from data[0, size) into the layers (counts, part_bytes: as
// decode_layers and encode_segment give them). Throws std::invalid_argument
// saying what is wrong: the stream ends before its last value, holds more
// than one byte beyond it, or (version 4) its layout or a fast part is corrupt.
inline void decode_segment(const SegmentPlan& plan, std::size_t s, const std::uint8_t* data,
                           std::size_t size, const std::vector<LayerData>& layers,
                           std::uint64_t k, int version, std::int64_t* counts,
                           std::vector<std::size_t>& part_bytes) {
    const std::string where = "segment " + std::to_string(s) + " of the layer data";
    const auto [begin, end] = plan.segments[s];
    std::size_t at = 0, side = size;
    if (has_fast_part(plan, s, layers, k, version)) {
        const std::int64_t length = get_varint(data, size, at);
        if (length < 0 || static_cast<std::uint64_t>(length) > size - at) {
            throw std::invalid_argument(where + " has a malformed length of its adaptive stream");
        }
        side = static_cast<std::size_t>(length);
        if ((size - at - side) % 4 != 0) {
            throw std::invalid_argument(where + " has a fast stream that is not whole words");
        }
    }
    Decoder dec(data + at, side);
    LayerModels models(k);
    DecodeIO io{dec};
    FastDecode fast{FastModels{}, RansDecoder(data + at + side, size - at - side)};
    std::size_t before = 0;
    try {
        for (std::size_t p = begin; p < end; ++p) {
            const Part& part = plan.parts[p];
            const LayerData& layer = layers[part.layer];
            const std::size_t fast_before = fast.rans.position();
            code_part<false>(io, models, layer, part, counts,
                             is_fast(part, layer, k, version) ? &fast : nullptr);
            part_bytes[p] = dec.shifted() - before + fast.rans.position() - fast_before;
            before = dec.shifted();
        }
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(where + ": " + e.what());
    }
    if (dec.overrun()) {
        throw std::invalid_argument(kEndsEarly);
    }
    const std::size_t extra = side - before;
    if (extra > 1 || !fast.rans.finished()) {
        const std::size_t beyond = extra + (size - at - side) - fast.rans.position();
        throw std::invalid_argument(where + " holds " + std::to_string(beyond) +
                                    " bytes beyond its values");
    }
    part_bytes[end - 1] += extra;  // the flush
}

}  // namespace codec
}  // namespace softshare
