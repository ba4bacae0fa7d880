// softshare._core's compression-recipe functions: the thin pybind11 layer over
// the Python-free recipe.hpp and sparse.hpp (registered by bindings.cpp's
// module through register_recipe).
//
// As bind_pass.hpp: inputs are checked and outputs allocated with the GIL held,
// each pass runs with the GIL released, std::invalid_argument becomes a
// ValueError. The friendlier public checks (finite weights, dtypes for
// people, n_threads) live in python/softshare/_native_recipe.py; the checks
// here guard the raw-pointer contract.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "softshare/assign.hpp"
#include "softshare/dispatch.hpp"
#include "softshare/recipe.hpp"
#include "softshare/sparse.hpp"

namespace py = pybind11;
namespace sk = softshare::kernel;

namespace {

using Params = py::array_t<double, py::array::c_style | py::array::forcecast>;

std::string item(const std::string& what, std::size_t i, std::size_t count) {
    return count == 1 ? what : what + "[" + std::to_string(i) + "]";
}

void check_flat(const py::array& a, const std::string& name) {
    if (a.ndim() != 1 || (a.shape(0) > 1 && a.strides(0) != a.itemsize())) {
        throw std::invalid_argument(name + " must be 1-D and contiguous");
    }
}

bool native_order(const py::dtype& d) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return d.byteorder() != '<';
#else
    return d.byteorder() != '>';
#endif
}

sk::DType value_type(const py::array& a, const std::string& name) {
    using api = py::detail::npy_api;
    const int num = a.dtype().num();
    if (native_order(a.dtype())) {
        if (num == api::NPY_FLOAT_) return sk::DType::f32;
        if (num == api::NPY_DOUBLE_) return sk::DType::f64;
    }
    throw py::type_error(name + " must be native float32 or float64, got " +
                         py::str(a.dtype()).cast<std::string>());
}

sk::IndexType index_type(const py::array& a, const std::string& name) {
    const py::dtype d = a.dtype();
    if (d.equal(py::dtype::of<std::uint8_t>())) return sk::IndexType::u8;
    if (d.equal(py::dtype::of<std::uint16_t>())) return sk::IndexType::u16;
    if (d.equal(py::dtype::of<std::uint32_t>())) return sk::IndexType::u32;
    if (d.equal(py::dtype::of<std::int64_t>())) return sk::IndexType::i64;
    throw py::type_error(name + " must be native uint8, uint16, uint32 or int64, got " +
                         py::str(d).cast<std::string>());
}

std::uint64_t index_max(sk::IndexType t) {
    switch (t) {
        case sk::IndexType::u8: return std::numeric_limits<std::uint8_t>::max();
        case sk::IndexType::u16: return std::numeric_limits<std::uint16_t>::max();
        case sk::IndexType::u32: return std::numeric_limits<std::uint32_t>::max();
        case sk::IndexType::i64: break;
    }
    return std::numeric_limits<std::int64_t>::max();
}

void check_writeable(const py::array& a, const std::string& name) {
    if (!a.writeable()) throw std::invalid_argument(name + " must be writeable");
}

// Whether the bytes of two arrays (1-D, contiguous) overlap.
bool overlap(const py::array& a, const py::array& b) {
    const auto* pa = static_cast<const char*>(a.data());
    const auto* pb = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// No two outputs may share bytes: one would overwrite what the other received.
void check_outs_apart(const std::vector<py::array>& out) {
    for (std::size_t i = 1; i < out.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (overlap(out[i], out[j])) {
                throw std::invalid_argument(item("out", i, out.size()) + " overlaps " +
                                            item("out", j, out.size()) +
                                            ": each output needs memory of its own");
            }
        }
    }
}

void check_same_count(std::size_t a, std::size_t b, const std::string& what) {
    if (a != b) throw std::invalid_argument(what + ": one array per weights (or indices) array");
}

[[noreturn]] void raise_bad_index(const sk::BadIndex& bad, std::size_t count, std::int64_t k) {
    throw std::invalid_argument(item("indices", bad.segment, count) + " holds " +
                                std::to_string(bad.value) + " at (flat) position " +
                                std::to_string(bad.position) +
                                ": not an index into a codebook of " + std::to_string(k) +
                                " values (0 <= index < " + std::to_string(k) + ")");
}

// assign: weights (float32/float64), out (uint8/16/32/int64, each holding M - 1,
// writeable, not overlapping any weights), mu/base/inv2var (M): the M counts,
// or None when some weight is not finite (out then written, meaningless).
py::object assign(const std::vector<py::array>& weights, const Params& mu, const Params& base,
                  const Params& inv2var, std::vector<py::array> out, int n_threads,
                  int grouping) {
    if (mu.ndim() != 1 || base.ndim() != 1 || inv2var.ndim() != 1) {
        throw std::invalid_argument("mu, base and inv2var must be 1-D");
    }
    const std::int64_t m = mu.shape(0);
    if (m < 1 || base.shape(0) != m || inv2var.shape(0) != m) {
        throw std::invalid_argument("mu, base and inv2var must have one length M >= 1");
    }
    for (std::int64_t j = 0; j < m; ++j) {
        if (!std::isfinite(mu.at(j)) || !std::isfinite(base.at(j)) ||
            !std::isfinite(inv2var.at(j)) || !(inv2var.at(j) > 0.0)) {
            throw std::invalid_argument("component " + std::to_string(j) +
                                        ": mu and base must be finite and inv2var finite and > 0");
        }
    }
    check_same_count(weights.size(), out.size(), "out");
    std::vector<sk::RecipeSegment> segments;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const std::string wn = item("weights", i, weights.size());
        const std::string on = item("out", i, weights.size());
        const sk::DType dt = value_type(weights[i], wn);
        const sk::IndexType it = index_type(out[i], on);
        check_flat(weights[i], wn);
        check_flat(out[i], on);
        check_writeable(out[i], on);
        if (out[i].shape(0) != weights[i].shape(0)) {
            throw std::invalid_argument(on + " must have the length of " + wn);
        }
        if (static_cast<std::uint64_t>(m - 1) > index_max(it)) {
            throw std::invalid_argument(on + "'s dtype cannot hold the component index " +
                                        std::to_string(m - 1));
        }
        for (std::size_t j = 0; j < weights.size(); ++j) {
            if (overlap(out[i], weights[j])) {
                throw std::invalid_argument(on + " overlaps " +
                                            item("weights", j, weights.size()));
            }
        }
        segments.push_back({dt, weights[i].data(), it, out[i].mutable_data(), nullptr,
                            static_cast<std::int64_t>(weights[i].shape(0))});
    }
    check_outs_apart(out);
    const sk::RecipeTable table = sk::active_recipe_table();
    std::optional<std::vector<std::int64_t>> counts;
    {
        py::gil_scoped_release release;
        counts = sk::run_assign(table, mu.data(), base.data(), inv2var.data(), m, segments,
                                n_threads, grouping);
    }
    if (!counts) return py::none();
    return py::array_t<std::int64_t>(static_cast<py::ssize_t>(m), counts->data());
}

// dequantize: out[s][i] = book[indices[s][i]], out of the book's dtype.
void dequantize(const std::vector<py::array>& indices, const py::array& book,
                std::vector<py::array> out, int n_threads) {
    const sk::DType dt = value_type(book, "book");
    check_flat(book, "book");
    const std::int64_t k = book.shape(0);
    check_same_count(indices.size(), out.size(), "out");
    std::vector<sk::RecipeSegment> segments;
    for (std::size_t i = 0; i < indices.size(); ++i) {
        const std::string in = item("indices", i, indices.size());
        const std::string on = item("out", i, indices.size());
        const sk::IndexType it = index_type(indices[i], in);
        if (value_type(out[i], on) != dt) {
            throw py::type_error(on + " must have the codebook's dtype");
        }
        check_flat(indices[i], in);
        check_flat(out[i], on);
        check_writeable(out[i], on);
        if (out[i].shape(0) != indices[i].shape(0)) {
            throw std::invalid_argument(on + " must have the length of " + in);
        }
        if (overlap(out[i], book)) throw std::invalid_argument(on + " overlaps the codebook");
        for (std::size_t j = 0; j < indices.size(); ++j) {
            if (overlap(out[i], indices[j])) {
                throw std::invalid_argument(on + " overlaps " +
                                            item("indices", j, indices.size()));
            }
        }
        segments.push_back({dt, nullptr, it, const_cast<void*>(indices[i].data()),
                            out[i].mutable_data(), static_cast<std::int64_t>(out[i].shape(0))});
    }
    check_outs_apart(out);
    const sk::RecipeTable table = sk::active_recipe_table();
    std::optional<sk::BadIndex> bad;
    {
        py::gil_scoped_release release;
        bad = sk::run_dequantize(table, book.data(), k, segments, n_threads);
    }
    if (bad) raise_bad_index(*bad, indices.size(), k);
}

// offset_sums: (sums float64 (K), counts int64 (K)) of w - book[idx] per index.
py::tuple offset_sums(const std::vector<py::array>& weights, const std::vector<py::array>& indices,
                      const py::array& book, int n_threads) {
    const sk::DType dt = value_type(book, "book");
    check_flat(book, "book");
    const std::int64_t k = book.shape(0);
    check_same_count(weights.size(), indices.size(), "indices");
    std::vector<sk::RecipeSegment> segments;
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const std::string wn = item("weights", i, weights.size());
        const std::string in = item("indices", i, weights.size());
        if (value_type(weights[i], wn) != dt) {
            throw py::type_error(wn + " must have the codebook's dtype");
        }
        const sk::IndexType it = index_type(indices[i], in);
        check_flat(weights[i], wn);
        check_flat(indices[i], in);
        if (indices[i].shape(0) != weights[i].shape(0)) {
            throw std::invalid_argument(in + " must have the length of " + wn);
        }
        segments.push_back({dt, weights[i].data(), it, const_cast<void*>(indices[i].data()),
                            nullptr, static_cast<std::int64_t>(weights[i].shape(0))});
    }
    sk::OffsetTotals totals;
    {
        py::gil_scoped_release release;
        totals = sk::run_offset_sums(book.data(), dt, k, segments, n_threads);
    }
    if (totals.bad) raise_bad_index(*totals.bad, indices.size(), k);
    const auto size = static_cast<py::ssize_t>(k);
    return py::make_tuple(py::array_t<double>(size, totals.sums.data()),
                          py::array_t<std::int64_t>(size, totals.counts.data()));
}

// sparse_counts: (values (k), nonzero, gaps (2^index_bits), symbols (k)).
py::tuple sparse_counts(const py::array& indices, std::int64_t k, std::int64_t zero_index,
                        int index_bits, int n_threads) {
    const sk::IndexType it = index_type(indices, "indices");
    check_flat(indices, "indices");
    if (k < 0 || zero_index < 0 || zero_index > k) {
        throw std::invalid_argument("need k >= 0 and 0 <= zero_index <= k");
    }
    if (index_bits < 1 || index_bits > 30) {
        throw std::invalid_argument("index_bits must be in 1 .. 30");
    }
    const auto n = static_cast<std::int64_t>(indices.shape(0));
    sk::SparseCounts c;
    {
        py::gil_scoped_release release;
        c = sk::run_sparse_counts(indices.data(), it, n, k, zero_index, index_bits, n_threads);
    }
    if (c.bad) raise_bad_index(*c.bad, 1, k);
    const auto size = static_cast<py::ssize_t>(k);
    return py::make_tuple(py::array_t<std::int64_t>(size, c.values.data()), c.nonzero,
                          py::array_t<std::int64_t>(static_cast<py::ssize_t>(c.gaps.size()),
                                                    c.gaps.data()),
                          py::array_t<std::int64_t>(size, c.symbols.data()));
}

}  // namespace

void register_recipe(py::module_& mod) {
    mod.def("assign", &assign, py::arg("weights"), py::arg("mu"), py::arg("base"),
            py::arg("inv2var"), py::arg("out"), py::arg("n_threads"), py::arg("grouping") = -1,
            "Each weight's component: out[s][i] = the lowest j maximising base_j - (d * d) * "
            "inv2var_j, d = weights[s][i] - mu_j in float64; returns the M counts (int64), or "
            "None when some weight is not finite. n_threads as penalty's. grouping (a testing hook, "
            "the same result every way): -1 the plan's choice, 0 the plain kernel, 1 the grouped "
            "one wherever the means span a range.");
    mod.def("dequantize", &dequantize, py::arg("indices"), py::arg("book"), py::arg("out"),
            py::arg("n_threads"),
            "out[s][i] = book[indices[s][i]] in place; ValueError (naming the first) for an "
            "index not below len(book), out then partly written.");
    mod.def("offset_sums", &offset_sums, py::arg("weights"), py::arg("indices"), py::arg("book"),
            py::arg("n_threads"),
            "(sums, counts) per codebook index of float64(w - book[idx]) (the difference in the "
            "book's dtype, the weights'), summed in offset_sums_layout's fixed order.");
    mod.def(
        "offset_sums_layout",
        [](std::int64_t k) {
            const sk::OffsetLayout lay = sk::offset_layout(k);
            return py::make_tuple(lay.block_len, lay.copies);
        },
        py::arg("k"),
        "(block_len, copies): offset_sums' summation order for a codebook of k values.");
    mod.def("sparse_counts", &sparse_counts, py::arg("indices"), py::arg("k"),
            py::arg("zero_index"), py::arg("index_bits"), py::arg("n_threads"),
            "(values (k), nonzero, gaps (2^index_bits), symbols (k)): the statistics of Han et "
            "al.'s relative-index sparse stream of one layer's indices.");
}
