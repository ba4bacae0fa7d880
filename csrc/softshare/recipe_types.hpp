// Shared types of the compression recipe's per-weight kernels (recipe-inl.hpp,
// compiled once per instruction set by recipe_isa.cpp, and their drivers,
// recipe.hpp and assign.hpp). Python-free, and plain data like types.hpp: recipe_isa.cpp
// includes it with AVX flags, so no function bodies and no standard-library
// containers here.
#pragma once

#include <cstdint>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// The element type of an array of codebook (component) indices.
enum class IndexType { u8, u16, u32, i64 };

// Copies of each count array that the kernels increment in turn (by position
// modulo kCountCopies), so that a run of equal indices is not one chain of
// dependent memory increments. Integer sums: the copies change no result.
constexpr int kCountCopies = 4;

// The grouped assign (recipe-inl.hpp, assign_grouped) for mixtures of many
// components: each block sorted by cell of the weight axis, and each group of
// kAssignGroupWeights sorted weights scored against only the components that
// can win for some weight in it.
constexpr std::int64_t kAssignGroupWeights = 32;
// Cells of the grid at most (grid cells + 2: below it and above it).
constexpr std::int64_t kAssignMaxCells = 1024 + 2;

// The mixture as assign reads it: score_j(w) = base_j - (d * d) * inv2var_j,
// d = double(w) - mu_j, all float64 (python/softshare/_formulas.py's
// assign_constants makes base and inv2var).
//
// cells > 0: the grouped pass. A weight's cell is min(max((w - x0) inv_h + 1,
// 0), cells - 1), truncated (any monotone function of w would do: the indices
// do not depend on the cells). The components in the order of their means
// (ties by index): order, their means smu, and over the prefixes [0, p] and
// suffixes [p, M) of that order the largest base and the smallest inv2var
// (pre_base, pre_q, suf_base, suf_q), which bound the scores of all the
// components beyond a point at once (recipe-inl.hpp, candidates).
struct AssignView {
    const double* mu;
    const double* base;
    const double* inv2var;
    std::int64_t m;
    std::int64_t cells;  // 0: the plain pass
    double x0;
    double inv_h;
    const std::int32_t* order;
    const double* smu;
    const double* pre_base;
    const double* pre_q;
    const double* suf_base;
    const double* suf_q;
};

// One thread's scratch for the grouped assign (null for the plain one): cand
// M int32, ws kBlockSize + kMaxTileLanes doubles, pos and cell kBlockSize
// int32, count `cells` int32.
struct AssignScratch {
    std::int32_t* cand;
    double* ws;
    std::int32_t* pos;
    std::int32_t* cell;
    std::int32_t* count;
};

// One block of n weights: out[i] = the lowest j maximising score_j(w[i]);
// counts[c * M + j] += 1 for each, c < kCountCopies (any copy, any order:
// integers).
// Returns whether every weight is finite (if not, out and counts are
// written, but meaningless where a weight is not).
template <class T>
using AssignFn = bool (*)(const AssignView& comp, const T* w, void* out, IndexType out_type,
                          std::int64_t n, std::int64_t* counts, const AssignScratch& scratch);

// out[i] = book[idx[i]] for n indices of idx_type and a codebook of k values of
// dtype; an index >= k (or a negative int64) is not read through (its out[i]
// gets book[0], or nothing when k = 0). Returns the position of the first such
// index, or -1.
using DequantizeFn = std::int64_t (*)(const void* idx, IndexType idx_type, const void* book,
                                      DType dtype, std::int64_t k, void* out, std::int64_t n);

// The recipe's kernels of one instruction set.
struct RecipeTable {
    const char* name;
    AssignFn<float> assign_f32;
    AssignFn<double> assign_f64;
    DequantizeFn dequantize;
};

}  // namespace kernel
}  // namespace softshare
