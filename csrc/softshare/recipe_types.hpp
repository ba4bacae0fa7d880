// Shared types of the compression recipe's per-weight kernels (recipe-inl.hpp,
// compiled once per instruction set by recipe_isa.cpp, and their driver,
// recipe.hpp). Python-free, and plain data like types.hpp: recipe_isa.cpp
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

// Components at which assign starts to skip, tile by tile, components that
// provably cannot win (recipe-inl.hpp, assign_block).
constexpr std::int64_t kAssignSkipMin = std::int64_t{1} << 40;

// The mixture as assign reads it: score_j(w) = base_j - (d * d) * inv2var_j,
// d = double(w) - mu_j, all float64 (python/softshare/_formulas.py's
// assign_constants makes base and inv2var).
struct AssignView {
    const double* mu;
    const double* base;
    const double* inv2var;
    std::int64_t m;
};

// One thread's scratch for assign_block: 2 x M doubles and M int32 (the
// bounds and the candidate list of a tile; used for M >= kAssignSkipMin).
struct AssignScratch {
    double* bound;
    std::int32_t* cand;
};

// One block of n weights: out[i] = the lowest j maximising score_j(w[i]);
// counts[(i mod kCountCopies) * M + j] += 1 for each (any order of i: integers).
// Returns whether every weight is finite (if not, out and counts are
// written, but meaningless where a weight is not).
template <class T>
using AssignFn = bool (*)(const AssignView& comp, const T* w, void* out, IndexType out_type,
                          std::int64_t n, std::int64_t* counts, const AssignScratch& scratch);

// out[i] = book[idx[i]] for n indices of idx_type and a codebook of k values of
// dtype; an index >= k (or a negative int64) is not read through: its out[i]
// is left as it was. Returns the position of the first such index, or -1.
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
