// Which components a weight can see: the plan of the grouped kernel
// (process_block_grouped in grouped-inl.hpp) for narrow mixtures of many
// components, where almost every responsibility is exactly 0.
//
// Python-free; compiled with baseline flags only (included by runner.hpp).
//
// The kernel computes, in base 2 and in the weights' precision T,
//     z_j = (w - mu_j) r_j - r_lo_j,   l_j = c_j - z_j^2,   e_j = exp2(l_j - max_k l_k),
// and exp2_neg returns exactly 0 for an argument below `low`, log2 of T's
// smallest normal (-126 or -1022), on every SIMD path (vmath-inl.hpp,
// tests/kernel/test_vmath.py). A component whose e_j is 0 contributes exact zeros to
// the sum of the e's, to grad_w, to gamma and to S0, S1, S2, and is not the
// maximum: leaving it out changes no bit of a weight's results (tile_pass).
//
// The bound. The weight axis is cut into K <= kGroupMaxCells cells of width
// h = 1 / inv_h (GroupingView). For a cell, [a, b] is an interval that holds
// every weight the kernel puts in it: the cell widened by h/16 on each side.
// The kernel's fl(fl(fl(w - x0) inv_h) + 1) is within 4u (K + 3) <= 2^-12
// cells of (w - x0) inv_h + 1 (u = 2^-24 for float32) and a, b are computed in
// float64 within 2^-51 (|x0| inv_h + K + 2) <= 2^-10 cells (|x0| inv_h < 2^40
// is required): both together stay below the 1/16. For w in [a, b] and any
// component k, with d = |w - mu_k| between dmin_k and dmax_k (the distances
// of mu_k to the nearest and the farthest point of [a, b]), the computed z_k
// and l_k (each operation rounded to T, unit roundoff u, with or without FMA
// contraction; underflow adds at most T's smallest subnormal) satisfy
//     |z_k| >= dmin_k r_k (1 - 3u) - |r_lo_k| (1 + u) - tau      (lower bound zlo)
//     |z_k| <= dmax_k r_k (1 + 3u) + |r_lo_k| (1 + u) + tau      (upper bound zhi)
//     c_k - u |c_k| - z_k^2 (1 + 2u) <= l_k <= c_k + u |c_k| - z_k^2 (1 - 2u),
// and every max_k l_k >= L = max over some candidates k of the lower bound
// (candidates whose zhi^2 stays far inside T's range, so that their l_k are
// finite). A component j is dead in the cell if its upper bound U_j satisfies
//     U_j - L < low - 1:
// then l_j - max l < low - 1 exactly, its rounding is <= low - 1 < low, and
// e_j = 0 for every weight of the cell. The code evaluates the bounds in
// float64 with rho = 16 u (float32) or 32 u (float64) in place of the
// multiples of u, tau = 2^-100, and adds kappa (|U_j| + |L|) with kappa = 2^-48
// to the difference: margins larger than the rounding of the kernel and of
// these float64 expressions together. Anything non-finite or NaN in a bound
// makes the component live (the comparisons are written so).
//
// A cell's window is the run of components, in the order of their means, from
// the first live one to the last (dead ones inside it are evaluated, and give
// their exact zeros). Scanning outward from the cell, the scan stops once a
// bound over all the components beyond (the largest c, the smallest r and the
// largest |r_lo| of the suffix, the nearest mean) proves them all dead. The
// windows are then widened to be monotone in the cell, so a run of cells has
// the window [j_lo of its first, j_hi of its last].
//
// Whether to group at all depends on the mixture, the weights' count and
// dtype only (never on the threads): when the average window is not well
// below M the plain kernel is used, with no cost beyond a sample of cells.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// Fewer components, or fewer weights of the precision, and the plain kernel
// always wins (the sort costs about as much as some 16 components per weight;
// the plan, a few microseconds per cell).
constexpr std::int64_t kGroupMinComponents = 32;
constexpr std::int64_t kGroupMinWeights = 8 * kBlockSize;
constexpr double kGroupSortCost = 16.0;  // the sort, in components evaluated per weight
constexpr double kGroupGain = 0.75;      // group when window + sort cost <= this x M
// Cells of the grid at most: a float32 weight's cell index is then accurate to
// far better than the 1/16 cell of margin (see the bound).
constexpr std::int64_t kGroupMaxCells = 1024;

// The plan for weights of type T (inactive: the plain kernel).
template <class T>
struct Grouping {
    bool active = false;
    std::int64_t m = 0;
    // The kernel's constants (rows mu, r, r_lo, c, a) in mean order.
    std::vector<T> sorted;
    std::vector<std::int64_t> perm;        // mean order -> the caller's component index
    bool identity = true;                  // the means are in order: perm[j] == j
    std::vector<std::int32_t> j_lo, j_hi;  // per cell (grid cells + 2)
    T x0 = T(0), inv_h = T(0);
    double mean_window = 0.0;  // average window over the grid's cells (tests, tuning)

    ComponentsView<T> comp() const {
        const T* p = sorted.data();
        return {p, p + m, p + 2 * m, p + 3 * m, p + 4 * m, m};
    }
    GroupingView<T> view() const {
        return {x0,          inv_h,       static_cast<std::int64_t>(j_lo.size()),
                j_lo.data(), j_hi.data(), identity ? nullptr : perm.data()};
    }
};

namespace detail {

// The bounds of the header comment, for components in mean order (float64).
template <class T>
struct CellBounds {
    static constexpr double kU = std::numeric_limits<T>::epsilon() / 2;  // unit roundoff of T
    static constexpr double kRho = sizeof(T) == 4 ? 16 * kU : 32 * kU;
    static constexpr double kTau = 0x1p-100;
    static constexpr double kKappa = 0x1p-48;
    // exp2_neg's zero threshold: log2 of T's smallest normal (-126 or -1022).
    static constexpr double kLow = std::numeric_limits<T>::min_exponent - 1;
    static constexpr double kInf = std::numeric_limits<double>::infinity();

    explicit CellBounds(const ComponentsView<T>& s) : m(s.m) {
        for (std::vector<double>* v :
             {&mu, &r, &rl, &c_up, &c_lo, &suf_c, &suf_r, &suf_rl, &pre_c, &pre_r, &pre_rl}) {
            v->resize(static_cast<std::size_t>(m));
        }
        for (std::size_t j = 0; j < mu.size(); ++j) {
            mu[j] = static_cast<double>(s.mu[j]);
            r[j] = static_cast<double>(s.r[j]);
            rl[j] = std::fabs(static_cast<double>(s.r_lo[j])) * (1 + kRho);
            const double c = static_cast<double>(s.c[j]);  // finite or -inf (pi_j = 0)
            c_up[j] = c == -kInf ? -kInf : c + kRho * std::fabs(c) + kTau;
            c_lo[j] = c == -kInf ? -kInf : c - kRho * std::fabs(c) - kTau;
        }
        // The largest c, smallest r, largest |r_lo| of each suffix and prefix.
        for (std::size_t j = mu.size(); j-- > 0;) {
            const bool last = j + 1 == mu.size();
            suf_c[j] = last ? c_up[j] : std::max(c_up[j], suf_c[j + 1]);
            suf_r[j] = last ? r[j] : std::min(r[j], suf_r[j + 1]);
            suf_rl[j] = last ? rl[j] : std::max(rl[j], suf_rl[j + 1]);
        }
        for (std::size_t j = 0; j < mu.size(); ++j) {
            pre_c[j] = j == 0 ? c_up[j] : std::max(c_up[j], pre_c[j - 1]);
            pre_r[j] = j == 0 ? r[j] : std::min(r[j], pre_r[j - 1]);
            pre_rl[j] = j == 0 ? rl[j] : std::max(rl[j], pre_rl[j - 1]);
        }
    }

    // Upper bound of l for the distance dmin >= 0, with these c_up, r, |r_lo|.
    static double l_up(double dmin, double c, double r_j, double rl_j) {
        const double z = std::max(0.0, dmin * r_j * (1 - kRho) - rl_j - kTau);
        return c - z * z * (1 - kRho);
    }
    // Lower bound of component k's computed l over [a, b]; -inf where its
    // z^2 or w - mu could come near T's overflow.
    double l_lo(std::size_t k, double a, double b) const {
        const double t_max = static_cast<double>(std::numeric_limits<T>::max());
        const double dmax = std::max(std::fabs(a - mu[k]), std::fabs(b - mu[k])) * (1 + kRho);
        const double z = dmax * r[k] * (1 + kRho) + rl[k] + kTau;
        const double q = z * z * (1 + kRho);
        if (!(dmax < t_max / 4 && q < t_max / 4)) return -kInf;
        return c_lo[k] - q;
    }
    // Whether a component with upper bound lu is dead where max l >= mx_lo.
    static bool dead(double lu, double mx_lo) {
        if (!(std::fabs(mx_lo) < kInf)) return false;
        if (lu == -kInf) return true;
        const double v = (lu - mx_lo) + kKappa * (std::fabs(lu) + std::fabs(mx_lo));
        return v < kLow - 1;  // false for NaN
    }

    // The window [lo, hi] of the components live somewhere in [a, b] (lo > hi:
    // none found, which a sound bound never gives).
    void window(double a, double b, std::int64_t& lo, std::int64_t& hi) const {
        // [first, past): the means in [a, b].
        const auto first =
            static_cast<std::size_t>(std::lower_bound(mu.begin(), mu.end(), a) - mu.begin());
        const auto past =
            static_cast<std::size_t>(std::upper_bound(mu.begin(), mu.end(), b) - mu.begin());
        double mx_lo = -kInf;
        const std::size_t cand_lo = first > 0 ? first - 1 : 0;
        const std::size_t cand_hi = std::min(past, mu.size() - 1);
        for (std::size_t k = cand_lo; k <= cand_hi; ++k) mx_lo = std::max(mx_lo, l_lo(k, a, b));
        lo = m;
        hi = -1;
        const auto live = [&](std::size_t j) {
            lo = std::min(lo, static_cast<std::int64_t>(j));
            hi = std::max(hi, static_cast<std::int64_t>(j));
        };
        for (std::size_t j = first; j < past; ++j) {
            if (!dead(l_up(0.0, c_up[j], r[j], rl[j]), mx_lo)) live(j);
        }
        for (std::size_t j = past; j < mu.size(); ++j) {
            const double d = mu[j] - b;  // > 0, and <= mu[j'] - b for every j' >= j
            if (dead(l_up(d, suf_c[j], suf_r[j], suf_rl[j]), mx_lo)) break;
            if (!dead(l_up(d, c_up[j], r[j], rl[j]), mx_lo)) live(j);
        }
        for (std::size_t j = first; j-- > 0;) {
            const double d = a - mu[j];
            if (dead(l_up(d, pre_c[j], pre_r[j], pre_rl[j]), mx_lo)) break;
            if (!dead(l_up(d, c_up[j], r[j], rl[j]), mx_lo)) live(j);
        }
    }

    std::int64_t m;
    std::vector<double> mu, r, rl, c_up, c_lo;
    std::vector<double> suf_c, suf_r, suf_rl, pre_c, pre_r, pre_rl;
};

}  // namespace detail

// The plan for n_weights weights of type T and the kernel's constants comp
// (in the caller's order).
template <class T>
Grouping<T> plan_grouping(const ComponentsView<T>& comp, std::int64_t n_weights) {
    Grouping<T> plan;
    const std::int64_t m = comp.m;
    if (m < kGroupMinComponents || n_weights < kGroupMinWeights) return plan;

    // Components in the order of their means (as rounded to T), ties in the
    // caller's order: the identity for sorted means, and then every weight's
    // results are bit for bit those of the plain kernel.
    plan.m = m;
    plan.perm.resize(static_cast<std::size_t>(m));
    std::iota(plan.perm.begin(), plan.perm.end(), std::int64_t(0));
    std::stable_sort(plan.perm.begin(), plan.perm.end(),
                     [&](std::int64_t x, std::int64_t y) { return comp.mu[x] < comp.mu[y]; });
    for (std::int64_t j = 0; j < m; ++j) {
        plan.identity = plan.identity && plan.perm[static_cast<std::size_t>(j)] == j;
    }
    plan.sorted.resize(static_cast<std::size_t>(5 * m));
    const T* rows[5] = {comp.mu, comp.r, comp.r_lo, comp.c, comp.a};
    for (int row = 0; row < 5; ++row) {
        for (std::int64_t j = 0; j < m; ++j) {
            plan.sorted[static_cast<std::size_t>(row * m + j)] =
                rows[row][plan.perm[static_cast<std::size_t>(j)]];
        }
    }
    const detail::CellBounds<T> bounds(plan.comp());

    // The grid: 3 M cells over the means' range and a quarter of it on each
    // side (about half the spacing of evenly spread means), at most
    // kGroupMaxCells (each block zeroes, sums and walks its cells). Its origin
    // and scale as rounded to T are what the kernel uses, and so what defines
    // the cells here.
    const double mu_min = bounds.mu.front(), mu_max = bounds.mu.back();
    const double span = mu_max - mu_min;
    if (!(span > 0) || !std::isfinite(span)) return plan;
    const std::int64_t grid = std::min(3 * m, kGroupMaxCells);
    const T x0 = static_cast<T>(mu_min - 0.25 * span);
    const T inv_h = static_cast<T>(static_cast<double>(grid) / (1.5 * span));
    if (!std::isfinite(x0) || !std::isnormal(inv_h)) return plan;
    const double x0_d = static_cast<double>(x0), h = 1.0 / static_cast<double>(inv_h);
    // Beyond this the float64 corners of the cells lose the precision the
    // 1/16 margin allows for.
    if (!(std::fabs(x0_d) * static_cast<double>(inv_h) < 0x1p40)) return plan;
    constexpr double kMargin = 1.0 / 16;
    const auto cell_window = [&](std::int64_t k, std::int64_t& lo, std::int64_t& hi) {
        const double a = x0_d + (static_cast<double>(k - 1) - kMargin) * h;
        const double b = x0_d + (static_cast<double>(k) + kMargin) * h;
        bounds.window(a, b, lo, hi);
        if (lo > hi) {
            lo = 0;
            hi = m - 1;
        }
    };
    const double budget = kGroupGain * static_cast<double>(m) - kGroupSortCost;

    // A sample of cells first: a wide mixture is turned down for 16 x M steps.
    constexpr std::int64_t kSample = 16;
    double sample = 0.0;
    for (std::int64_t s = 0; s < kSample; ++s) {
        std::int64_t lo, hi;
        cell_window(1 + (grid - 1) * s / (kSample - 1), lo, hi);
        sample += static_cast<double>(hi - lo + 1);
    }
    if (sample / kSample > budget) return plan;

    const std::int64_t cells = grid + 2;
    plan.j_lo.assign(static_cast<std::size_t>(cells), 0);
    plan.j_hi.assign(static_cast<std::size_t>(cells), static_cast<std::int32_t>(m - 1));
    for (std::int64_t k = 1; k <= grid; ++k) {
        std::int64_t lo, hi;
        cell_window(k, lo, hi);
        plan.j_lo[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(lo);
        plan.j_hi[static_cast<std::size_t>(k)] = static_cast<std::int32_t>(hi);
    }
    // Monotone over the grid (a superset of every cell's window).
    for (std::size_t k = 2; k <= static_cast<std::size_t>(grid); ++k) {
        plan.j_hi[k] = std::max(plan.j_hi[k], plan.j_hi[k - 1]);
    }
    for (std::size_t k = static_cast<std::size_t>(grid); k-- > 1;) {
        plan.j_lo[k] = std::min(plan.j_lo[k], plan.j_lo[k + 1]);
    }
    double total = 0.0;
    for (std::size_t k = 1; k <= static_cast<std::size_t>(grid); ++k) {
        total += static_cast<double>(plan.j_hi[k] - plan.j_lo[k] + 1);
    }
    plan.mean_window = total / static_cast<double>(grid);
    if (plan.mean_window > budget) return plan;
    plan.x0 = x0;
    plan.inv_h = inv_h;
    plan.active = true;
    return plan;
}

}  // namespace kernel
}  // namespace softshare
