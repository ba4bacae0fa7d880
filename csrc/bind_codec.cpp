// softshare._core's entropy coder of the compressed model file: the thin
// pybind11 layer over the Python-free codec*.hpp (registered by bindings.cpp's
// module through register_codec).
//
// Checks the raw-pointer contract (dtypes, shapes, index range); the file's own
// checks (limits, checksums, names) live in python/softshare/compress/_format.
// Inputs are checked and outputs allocated with the GIL held; the coding runs
// with the GIL released, format versions 3 and 4's segments on OpenMP threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "softshare/codec.hpp"
#include "softshare/runtime.hpp"

namespace py = pybind11;
namespace sc = softshare::codec;
namespace sk = softshare::kernel;

namespace {

using Shapes = std::vector<std::pair<std::int64_t, std::int64_t>>;

constexpr std::uint64_t kMaxCodebook = std::uint64_t{1} << 24;

// k = 0 only for layers without weights (checked where the layers are known).
void check_codebook_size(std::uint64_t k) {
    if (k > kMaxCodebook) {
        throw std::invalid_argument("codebook size must be at most 2^24, got " + std::to_string(k));
    }
}

void check_version(int version) {
    if (version < 1 || version > 4) {
        throw std::invalid_argument("format version must be 1, 2, 3 or 4, got " +
                                    std::to_string(version));
    }
}

// An index array's element width (1, 2 or 4 bytes: uint8, uint16, uint32).
int index_width(const py::array& a, std::size_t i) {
    const std::string where = "layers[" + std::to_string(i) + "]";
    if (a.ndim() != 1 || (a.shape(0) > 1 && a.strides(0) != a.itemsize())) {
        throw std::invalid_argument(where + " must be 1-D and contiguous");
    }
    if (a.dtype().equal(py::dtype::of<std::uint8_t>())) return 1;
    if (a.dtype().equal(py::dtype::of<std::uint16_t>())) return 2;
    if (a.dtype().equal(py::dtype::of<std::uint32_t>())) return 4;
    throw std::invalid_argument(where + " must be native uint8, uint16 or uint32");
}

std::int64_t checked_size(const std::pair<std::int64_t, std::int64_t>& shape, std::size_t i) {
    const auto [r, c] = shape;
    if (r < 0 || c < 0 || (c > 0 && r > std::numeric_limits<std::int64_t>::max() / c)) {
        throw std::invalid_argument("shapes[" + std::to_string(i) + "] must be two sizes >= 0");
    }
    return r * c;
}

// Threads for `work` independent segments: n_threads (0: OpenMP's default), at
// most one per segment, one in a forked child (runtime.hpp's fork guard).
int codec_threads(int n_threads, std::size_t work) {
    if (n_threads < 0) throw std::invalid_argument("n_threads must be >= 0");
    const int wanted = n_threads > 0 ? n_threads : sk::default_threads();
    if (sk::in_forked_child() || work < 2) return 1;
    return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(std::max(wanted, 1)),
                                                  work));
}

// decode_layers counts the values itself for codebooks up to this size (a
// tally per segment); larger ones are counted by the caller.
constexpr std::uint64_t kCountedCodebook = 256;

template <class Index>
std::uint64_t largest(const Index* p, std::int64_t n) {
    Index top = 0;
    for (std::int64_t j = 0; j < n; ++j) top = std::max(top, p[j]);  // vectorised
    return top;
}

template <class Index>
std::int64_t first_at_least(const Index* p, std::int64_t n, std::uint64_t k) {
    std::int64_t j = 0;
    while (j < n && p[j] < k) ++j;
    return j;
}

py::tuple encode_layers(const std::vector<py::array>& layers, const Shapes& shapes,
                        std::uint64_t k, int version, int n_threads) {
    check_codebook_size(k);
    check_version(version);
    if (layers.size() != shapes.size()) throw std::invalid_argument("one shape per layer");
    std::vector<sc::LayerData> data_of;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const int width = index_width(layers[i], i);
        const std::int64_t n = checked_size(shapes[i], i);
        if (n != layers[i].shape(0)) {
            throw std::invalid_argument("layers[" + std::to_string(i) +
                                        "] does not hold rows x cols indices");
        }
        const void* p = layers[i].data();
        const auto run = [&](auto* idx) {
            if (n == 0 || largest(idx, n) < k) return;
            const std::int64_t j = first_at_least(idx, n, k);
            throw std::invalid_argument("layers[" + std::to_string(i) + "][" + std::to_string(j) +
                                        "] = " + std::to_string(idx[j]) + " is not below " +
                                        std::to_string(k));
        };
        if (width == 1) run(static_cast<const std::uint8_t*>(p));
        else if (width == 2) run(static_cast<const std::uint16_t*>(p));
        else run(static_cast<const std::uint32_t*>(p));
        // read only: code_layer<true> writes nothing
        data_of.push_back(sc::LayerData{const_cast<void*>(p), width, shapes[i].second});
    }
    const sc::SegmentPlan plan = version >= 3 ? sc::plan_segments(shapes, k) : sc::SegmentPlan{};
    const std::size_t n_seg = plan.segments.size();
    const int threads = codec_threads(n_threads, n_seg);
    std::vector<std::uint8_t> out;
    std::vector<std::size_t> ends(layers.size());
    {
        py::gil_scoped_release release;
        if (version < 3) {  // one stream, file-wide models carried from layer to layer
            sc::Encoder enc;
            sc::LayerModels models(k);
            sc::EncodeIO io{enc};
            for (std::size_t i = 0; i < layers.size(); ++i) {
                sc::code_part<true>(io, models, data_of[i], sc::Part{i, 0, shapes[i].first});
                ends[i] = enc.size();
            }
            out = enc.finish();
        } else {
            std::vector<std::vector<std::uint8_t>> streams(n_seg);
            std::vector<std::size_t> part_bytes(plan.parts.size());
            std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
            for (std::int64_t s = 0; s < static_cast<std::int64_t>(n_seg); ++s) {
                try {
                    const auto su = static_cast<std::size_t>(s);
                    streams[su] = sc::encode_segment(plan, su, data_of, k, version, part_bytes);
                } catch (...) {  // std::bad_alloc: no exception may leave the region
                    failed = true;
                }
            }
            if (failed) throw std::bad_alloc();
            // The lengths of every segment but the last, then the segments.
            std::size_t total = 0;
            for (const auto& stream : streams) total += stream.size();
            out.reserve(total + 10 * n_seg);
            for (std::size_t s = 0; s + 1 < n_seg; ++s) sc::put_varint(out, streams[s].size());
            for (const auto& stream : streams) out.insert(out.end(), stream.begin(), stream.end());
            std::size_t sum = 0;
            for (std::size_t p = 0, i = 0; i < layers.size(); ++i) {
                for (; p < plan.parts.size() && plan.parts[p].layer == i; ++p) sum += part_bytes[p];
                ends[i] = sum;
            }
        }
    }
    py::bytes data(reinterpret_cast<const char*>(out.data()), static_cast<py::ssize_t>(out.size()));
    return py::make_tuple(data, ends);
}

// Format versions 3 and 4's segment table: every segment's [offset, offset + length)
// in the layer stream. A ValueError when it does not fit the stream.
std::vector<std::pair<std::size_t, std::size_t>> read_segments(const std::uint8_t* data,
                                                               std::size_t size,
                                                               std::size_t n_seg) {
    std::vector<std::pair<std::size_t, std::size_t>> seg;
    if (n_seg == 0) {
        if (size != 0) throw std::invalid_argument("the layer data holds bytes but no segment");
        return seg;
    }
    if (n_seg - 1 > size) {
        throw std::invalid_argument("the layer data is too short for its segment table");
    }
    seg.reserve(n_seg);
    std::size_t at = 0, total = 0;
    std::vector<std::size_t> lengths;
    lengths.reserve(n_seg);
    for (std::size_t s = 0; s + 1 < n_seg; ++s) {
        std::uint64_t v = 0;
        for (int shift = 0;; shift += 7) {  // LEB128, at most 8 bytes (56 bits)
            if (at >= size || shift >= 56) {
                throw std::invalid_argument("the layer data's segment table is malformed");
            }
            const std::uint8_t b = data[at++];
            v |= static_cast<std::uint64_t>(b & 127) << shift;
            if (b < 128) break;
        }
        if (v > size) throw std::invalid_argument("a segment is longer than the layer data");
        total += static_cast<std::size_t>(v);
        if (total > size) throw std::invalid_argument("the segments are longer than the layer data");
        lengths.push_back(static_cast<std::size_t>(v));
    }
    if (total > size - at) throw std::invalid_argument("the segments are longer than the layer data");
    lengths.push_back(size - at - total);
    for (const std::size_t len : lengths) {
        seg.emplace_back(at, len);
        at += len;
    }
    return seg;
}

py::tuple decode_layers(const py::bytes& data, const Shapes& shapes, std::uint64_t k, int version,
                        int n_threads, bool want_counts) {
    check_codebook_size(k);
    check_version(version);
    const int width = k <= 256 ? 1 : k <= 65536 ? 2 : 4;
    const py::dtype dt = width == 1   ? py::dtype::of<std::uint8_t>()
                         : width == 2 ? py::dtype::of<std::uint16_t>()
                                      : py::dtype::of<std::uint32_t>();
    for (std::size_t i = 0; i < shapes.size(); ++i) {
        if (checked_size(shapes[i], i) > 0 && k == 0) {
            throw std::invalid_argument("an empty codebook, but layers with weights");
        }
    }
    const std::string_view bytes = data;  // held by the caller's object
    const auto* base = reinterpret_cast<const std::uint8_t*>(bytes.data());
    const sc::SegmentPlan plan = version >= 3 ? sc::plan_segments(shapes, k) : sc::SegmentPlan{};
    const std::size_t n_seg = plan.segments.size();
    const auto seg = version >= 3 ? read_segments(base, bytes.size(), n_seg)
                                  : std::vector<std::pair<std::size_t, std::size_t>>{};
    py::list arrays;
    std::vector<sc::LayerData> data_of;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
        py::array a(dt, std::vector<py::ssize_t>{
                            static_cast<py::ssize_t>(shapes[i].first * shapes[i].second)});
        data_of.push_back(sc::LayerData{a.mutable_data(), width, shapes[i].second});
        arrays.append(a);
    }
    const int threads = codec_threads(n_threads, n_seg);
    std::vector<std::size_t> ends(shapes.size());
    const bool counting = want_counts && k >= 1 && k <= kCountedCodebook;
    const auto ku = static_cast<std::size_t>(k);
    std::vector<std::int64_t> tally(counting ? ku * std::max<std::size_t>(n_seg, 1) : 0);
    std::string error;  // the first segment's (a stream that ends early before any other)
    {
        py::gil_scoped_release release;
        if (version < 3) {
            sc::Decoder dec(base, bytes.size());
            sc::LayerModels models(k);
            sc::DecodeIO io{dec};
            for (std::size_t i = 0; i < shapes.size(); ++i) {
                sc::code_part<false>(io, models, data_of[i], sc::Part{i, 0, shapes[i].first},
                                     counting ? tally.data() : nullptr);
                ends[i] = dec.shifted();
            }
            if (dec.overrun()) error = sc::kEndsEarly;
        } else {
            std::vector<std::size_t> part_bytes(plan.parts.size());
            std::vector<std::string> seg_error(n_seg);
            std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
            for (std::int64_t s = 0; s < static_cast<std::int64_t>(n_seg); ++s) {
                const auto su = static_cast<std::size_t>(s);
                const auto [offset, length] = seg[su];
                try {
                    sc::decode_segment(plan, su, base + offset, length, data_of, k, version,
                                       counting ? tally.data() + su * ku : nullptr, part_bytes);
                } catch (const std::invalid_argument& e) {
                    seg_error[su] = e.what();
                } catch (...) {  // std::bad_alloc: no exception may leave the region
                    failed = true;
                }
            }
            if (failed) throw std::bad_alloc();
            for (const std::string& e : seg_error) {  // as versions 1 and 2: ends early first
                if (e == sc::kEndsEarly) error = e;
            }
            for (std::size_t s = 0; s < n_seg && error.empty(); ++s) error = seg_error[s];
            std::size_t sum = 0;
            for (std::size_t p = 0, i = 0; i < shapes.size(); ++i) {
                for (; p < plan.parts.size() && plan.parts[p].layer == i; ++p) sum += part_bytes[p];
                ends[i] = sum;
            }
        }
    }
    if (!error.empty()) throw std::invalid_argument(error);
    if (!want_counts) return py::make_tuple(arrays, ends);
    if (!counting) return py::make_tuple(arrays, ends, py::none());
    py::array_t<std::int64_t> counts(static_cast<py::ssize_t>(ku));
    std::int64_t* total = counts.mutable_data();
    std::fill(total, total + ku, 0);
    for (std::size_t at = 0; at < tally.size(); ++at) total[at % ku] += tally[at];
    return py::make_tuple(arrays, ends, counts);
}

std::vector<std::uint8_t> as_vector(const py::bytes& b) {
    const std::string_view v = b;
    return {v.begin(), v.end()};
}

py::bytes as_bytes(const std::vector<std::uint8_t>& v) {
    return py::bytes(reinterpret_cast<const char*>(v.data()), static_cast<py::ssize_t>(v.size()));
}

}  // namespace

void register_codec(py::module_& mod) {
    mod.def("encode_layers", &encode_layers, py::arg("layers"), py::arg("shapes"), py::arg("k"),
            py::arg("version") = 1, py::arg("n_threads") = 0,
            "Entropy-code index layers (1-D uint8/16/32, shapes (rows, cols), indices below k) "
            "into a layer stream of a format version: 1 and 2 one stream, 3 and 4 segments (coded "
            "on n_threads threads, 0 OpenMP's default; the same bytes for any count), 4 with "
            "large parts' cells by rANS. Returns "
            "(bytes, the layers' cumulative bytes: the stream's size after each layer, "
            "versions 3 and 4's segment table not counted).");
    mod.def("decode_layers", &decode_layers, py::arg("data"), py::arg("shapes"), py::arg("k"),
            py::arg("version") = 1, py::arg("n_threads") = 0, py::arg("counts") = false,
            "Decode encode_layers' stream: returns (1-D index arrays, the layers' cumulative "
            "bytes as encode_layers gives them), and with counts=True a third item: how many "
            "indices hold each of the k values (int64), or None for k over 256. Versions 3 and 4 also refuse a segment table that "
            "does not fit the data and a segment with more than one byte beyond its values.");
    py::class_<sc::StreamEncoder>(mod, "StreamEncoder",
                                  "Adaptive bits, symbols and integers, encoded.")
        .def(py::init<>())
        .def("bit", &sc::StreamEncoder::bit, py::arg("ctx"), py::arg("y"))
        .def("symbol", &sc::StreamEncoder::symbol, py::arg("ctx"), py::arg("n"), py::arg("value"))
        .def("uint", &sc::StreamEncoder::uint, py::arg("ctx"), py::arg("value"))
        .def("raw", &sc::StreamEncoder::raw, py::arg("nbits"), py::arg("value"))
        .def("size", &sc::StreamEncoder::size, "Bytes written so far.")
        .def("finish", [](sc::StreamEncoder& e) { return as_bytes(e.finish()); });
    py::class_<sc::StreamDecoder>(mod, "StreamDecoder", "StreamEncoder's values, decoded.")
        .def(py::init([](const py::bytes& b) { return sc::StreamDecoder(as_vector(b)); }),
             py::arg("data"))
        .def("bit", &sc::StreamDecoder::bit, py::arg("ctx"))
        .def("symbol", &sc::StreamDecoder::symbol, py::arg("ctx"), py::arg("n"))
        .def("uint", &sc::StreamDecoder::uint, py::arg("ctx"))
        .def("raw", &sc::StreamDecoder::raw, py::arg("nbits"))
        .def("position", &sc::StreamDecoder::position, "Bytes the encoder had written here.")
        .def("overrun", &sc::StreamDecoder::overrun, "Whether it read beyond the stream.");
}
