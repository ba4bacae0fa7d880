// Shared types of the softshare kernel: the constants and plain structs that
// the per-target kernels (kernel_isa.cpp), the driver (driver.hpp) and the
// bindings (bind_*.cpp) agree on. Python-free.
//
// Everything here is plain data: kernel_isa.cpp, compiled once per instruction
// set, includes this header, and it must not instantiate any inline function or
// template that another translation unit also instantiates, or the linker could
// pick the AVX copy for baseline code. So no standard-library containers and no
// function bodies beyond constexpr arithmetic; the driver's result, Totals,
// owns a std::vector and therefore lives in driver.hpp, which only the
// bindings and jax_ffi.cpp (baseline flags) include.
#pragma once

#include <cstdint>

namespace softshare {
namespace kernel {

// Vectors per tile of the block kernels (tile-inl.hpp): each component's terms
// for the kUnroll vectors are kUnroll independent dependency chains. Scratch is
// sized from it and from the vector width of the instruction set in use.
constexpr int kUnroll = 4;
// The most weights one tile of any instruction set holds (kUnroll vectors of
// 64 bytes of float32).
constexpr int kMaxTileLanes = 64;
// Weights per block. Blocks are the unit of parallel work and of the fixed-order
// reduction, so this constant (never the thread count) decides the summation
// order: results are bit-identical for every n_threads.
constexpr std::int64_t kBlockSize = 4096;
// Tiles whose S0/S1/S2 terms are summed per lane in the weights' precision
// before being added to the float64 accumulators (each tile adds kUnroll = 4
// vectors): a float32 partial holds at most 32 terms, so its rounding stays
// within a few ulp of the terms' own (tests/kernel/test_parity.py checks 1e-6
// norm-relative component gradients at N = 1e7).
constexpr int kSubTiles = 8;

// The mixture as the kernel reads it (precomputed in float64, rounded to T).
template <class T>
struct ComponentsView {
    const T* mu;    // mu_j rounded to T
    const T* r;     // sqrt(log2(e) / 2) / sigma_j rounded to T: z_j = (w - mu_j) r_j
    const T* r_lo;  // (mu_j - mu[j]) r[j]: z_j = (w - mu[j]) r[j] - r_lo[j]
    const T* c;     // log2(e) (ln pi_j - 0.5 ln(2 pi) - 0.5 log_var_j): l_j = c_j - z_j^2
    const T* a;     // 1 / (r[j] sigma_j^2): gamma (w - mu_j) / sigma_j^2 = gamma z_j a_j
    std::int64_t m;
};

// The cells of the weight axis that the grouped kernel (process_block_grouped)
// sorts a block into, and for each cell the components that can have a
// non-zero responsibility for a weight in it (grouping.hpp builds it, and
// states the bound). Components are in the order of their means; the kernel
// evaluates, for a tile of sorted weights, only the components of the windows
// of the cells the tile spans.
//
// A weight w goes to cell floor(u) of u = (w - x0) inv_h + 1 clamped to
// [0, cells - 1], computed in T: cell 0 holds the weights below the grid, cell
// cells - 1 those above it (both: every component), cells 1 .. cells - 2 the
// grid's. j_lo is non-decreasing and j_hi non-decreasing over the grid's
// cells, so the window of a run of cells [k0, k1] is [j_lo[k0], j_hi[k1]].
template <class T>
struct GroupingView {
    T x0;
    T inv_h;
    std::int64_t cells;        // grid cells + 2
    const std::int32_t* j_lo;  // per cell: first component that may be non-zero
    const std::int32_t* j_hi;  // per cell: last one (inclusive)
    const std::int64_t* perm;  // component in mean order -> the caller's index (null: same)
};

// Per-thread scratch of one block, owned by the caller; with L the lanes of one
// vector of T (KernelTable::lanes_f32 / lanes_f64): buf 2 x M x kUnroll x L (T: a
// tile's log-terms, then exponentials, and its z),
// sub 3 x M x L (T), acc 3 x M x L (float64). The grouped kernel also sorts the
// block: ws kBlockSize + kMaxTileLanes weights, idx and cell kBlockSize
// positions, count one per cell (null when the call groups nothing).
template <class T>
struct Scratch {
    T* buf;
    T* sub;
    double* acc;
    T* ws;
    std::int32_t* idx;
    std::int32_t* cell;
    std::int32_t* count;
};

// Elements of each scratch buffer for M components and vectors of `lanes` lanes.
constexpr std::int64_t scratch_buf_size(std::int64_t m, int lanes) {
    return 2 * m * kUnroll * lanes;
}
constexpr std::int64_t scratch_sub_size(std::int64_t m, int lanes) { return 3 * m * lanes; }
constexpr std::int64_t scratch_acc_size(std::int64_t m, int lanes) { return 3 * m * lanes; }

// Length of one block's partial result: [sum L, check, S0 (M), S1 (M), S2 (M)],
// check NaN when some weight or some grad_w of the block is not finite (the
// driver computes such a block again, by a path that makes no NaN).
constexpr std::int64_t partial_size(std::int64_t m) { return 2 + 3 * m; }

template <class T>
using BlockFn = void (*)(const ComponentsView<T>& comp, const T* w, T* grad_w, T* gamma,
                         std::int64_t n, T lam, double* partial, const Scratch<T>& scratch);

// The grouped pass over one block (same outputs as BlockFn; comp in the order
// of the means, grp.perm maps it back). Returns false, having written nothing,
// when a weight of the block is not finite: the caller runs the BlockFn.
template <class T>
using GroupedFn = bool (*)(const ComponentsView<T>& comp, const GroupingView<T>& grp, const T* w,
                           T* grad_w, T* gamma, std::int64_t n, T lam, double* partial,
                           const Scratch<T>& scratch);

// y[i] = f(x[i]) for the vectorised exp2/log of vmath-inl.hpp (exposed for tests).
template <class T>
using ArrayFn = void (*)(const T* x, T* y, std::int64_t n);

// The block kernels of one instruction set.
struct KernelTable {
    const char* name;
    BlockFn<float> f32;
    BlockFn<double> f64;
    GroupedFn<float> f32_grouped;
    GroupedFn<double> f64_grouped;
    ArrayFn<float> exp2_f32;
    ArrayFn<double> exp2_f64;
    ArrayFn<float> log_f32;
    ArrayFn<double> log_f64;
    ArrayFn<float> add_f32;  // y[i] = y[i] + x[i] (an accumulating segment's block)
    ArrayFn<double> add_f64;
    int lanes_f32;  // lanes of one SIMD vector of float32 / float64: scratch sizes
    int lanes_f64;
};

// The precision of one array of weights.
enum class DType { f32, f64 };

// One array of the caller's list as the driver reads and writes it.
struct Segment {
    DType dtype;
    const void* w;  // n weights
    void* grad_w;   // n outputs, same dtype
    void* gamma;    // n x M outputs, same dtype, or nullptr
    std::int64_t n;
    // grad_w[i] = grad_w[i] + g_i (in the dtype, g_i rounded as written
    // otherwise) instead of grad_w[i] = g_i: runner.hpp, Runner::block.
    bool accumulate = false;
};

}  // namespace kernel
}  // namespace softshare
