// The driver of assign: each weight's most responsible component (the lowest j
// maximising base_j - (d * d) inv2var_j, d = w - mu_j in float64) and the
// components' counts, over segments cut into blocks (recipe.hpp), by the
// per-target kernels of recipe-inl.hpp.
//
// Python-free; baseline flags only (bind_recipe.cpp). For mixtures of many
// components the plan may choose the grouped kernel, which scores each group
// of sorted weights against only the components that can win there; its
// indices are the plain kernel's bit for bit (recipe-inl.hpp, candidates), so
// the plan, a cost estimate, decides the speed only, never a result.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "softshare/recipe.hpp"
#include "softshare/recipe_types.hpp"

namespace softshare {
namespace kernel {

// Fewer components or fewer weights, and the grouped kernel's plan costs more
// than it saves.
constexpr std::int64_t kAssignGroupMin = 32;
constexpr std::int64_t kAssignGroupMinWeights = 8 * kBlockSize;
// The grouped kernel's own work (cells, the sort, the scattered stores: on
// AMD Zen 5, AVX-512, about 3 ns per weight), in components scored per weight
// by the plain kernel; group when the estimate of the grouped kernel's cost is
// at most kAssignGroupGain x M (in practice from M of about 48 on).
constexpr double kAssignSortCost = 32.0;
constexpr double kAssignGroupGain = 0.75;

// The plan of one call: the plain kernel, or the grouped kernel's grid and
// the components in the order of their means (AssignView), when the estimate
// chooses it (or `grouping` forces it: 0 never, 1 whenever a grid exists, -1
// the estimate; a testing hook).
struct AssignPlan {
    std::vector<std::int32_t> order;
    std::vector<double> data;  // rows smu, pre_base, pre_q, suf_base, suf_q (M each)
    AssignView view{};

    AssignPlan(const double* mu, const double* base, const double* inv2var, std::int64_t m,
               std::int64_t n_total, int grouping) {
        view = {mu, base, inv2var, m, 0, 0.0, 0.0, nullptr, nullptr, nullptr, nullptr, nullptr,
                nullptr};
        const bool wanted = grouping == 1 || (grouping == -1 && m >= kAssignGroupMin &&
                                              n_total >= kAssignGroupMinWeights);
        if (wanted) choose_grid(grouping == 1);
    }

   private:
    // The grid: 4 cells per component (at most kAssignMaxCells - 2) over the
    // means' range; grouped when the candidates of a group, for weights spread
    // evenly over the grid, are few enough to pay for the sort.
    void choose_grid(bool force) {
        const std::int64_t m = view.m;
        const auto [lo_mu, hi_mu] = std::minmax_element(view.mu, view.mu + m);
        const double x0 = *lo_mu, x1 = *hi_mu;
        const std::int64_t grid = std::min<std::int64_t>(4 * m, kAssignMaxCells - 2);
        const double h = (x1 - x0) / static_cast<double>(grid);
        if (!(h > 0.0) || !std::isfinite(h) || !std::isfinite(1.0 / h)) return;
        if (!force) {
            const double span = h * std::max(1.0, static_cast<double>(grid * kAssignGroupWeights) /
                                                      static_cast<double>(kBlockSize));
            constexpr int kSamples = 64;
            double total = 0.0;
            for (int k = 0; k < kSamples; ++k) {
                const double lo = x0 + (x1 - x0 - span) * k / (kSamples - 1);
                total += static_cast<double>(candidates_in(lo, lo + span));
            }
            if (total / kSamples + kAssignSortCost > kAssignGroupGain * static_cast<double>(m)) {
                return;
            }
        }
        const auto um = static_cast<std::size_t>(m);
        order.resize(um);
        for (std::size_t j = 0; j < um; ++j) order[j] = static_cast<std::int32_t>(j);
        std::stable_sort(order.begin(), order.end(),
                         [&](std::int32_t a, std::int32_t b) { return view.mu[a] < view.mu[b]; });
        data.resize(5 * um);
        double* smu = data.data();
        double *pre_b = smu + m, *pre_q = pre_b + m, *suf_b = pre_q + m, *suf_q = suf_b + m;
        for (std::size_t p = 0; p < um; ++p) {
            const auto j = static_cast<std::size_t>(order[p]);
            smu[p] = view.mu[j];
            pre_b[p] = p == 0 ? view.base[j] : std::max(pre_b[p - 1], view.base[j]);
            pre_q[p] = p == 0 ? view.inv2var[j] : std::min(pre_q[p - 1], view.inv2var[j]);
        }
        for (std::size_t p = um; p-- > 0;) {
            const auto j = static_cast<std::size_t>(order[p]);
            suf_b[p] = p + 1 == um ? view.base[j] : std::max(suf_b[p + 1], view.base[j]);
            suf_q[p] = p + 1 == um ? view.inv2var[j] : std::min(suf_q[p + 1], view.inv2var[j]);
        }
        view.cells = grid + 2;
        view.x0 = x0;
        view.inv_h = 1.0 / h;
        view.order = order.data();
        view.smu = smu;
        view.pre_base = pre_b;
        view.pre_q = pre_q;
        view.suf_base = suf_b;
        view.suf_q = suf_q;
    }

    // About how many components the grouped kernel keeps for weights in
    // [lo, hi] (those whose largest score there reaches the best smallest one:
    // an estimate only).
    std::int64_t candidates_in(double lo, double hi) const {
        const AssignView& c = view;
        std::vector<double> up(static_cast<std::size_t>(c.m));
        double top = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < c.m; ++j) {
            const double a = lo - c.mu[j], b = hi - c.mu[j];
            const double far = std::max(std::fabs(a), std::fabs(b));
            const double near = a > 0.0 ? a : (b < 0.0 ? -b : 0.0);
            top = std::max(top, c.base[j] - far * far * c.inv2var[j]);
            up[static_cast<std::size_t>(j)] = c.base[j] - near * near * c.inv2var[j];
        }
        return std::count_if(up.begin(), up.end(), [top](double u) { return !(u < top); });
    }
};

// Each weight's component (segments: w, dtype, idx, idx_type, n) into idx.
// Returns the M counts of the indices written, or nothing when some weight is
// not finite (python/softshare then names it). Preconditions (the caller's):
// M >= 1, finite mu and base, finite inv2var > 0, idx_type holds M - 1, no
// index array overlapping any weights.
inline std::optional<std::vector<std::int64_t>> run_assign(
    const RecipeTable& table, const double* mu, const double* base, const double* inv2var,
    std::int64_t m, const std::vector<RecipeSegment>& segments, int n_threads,
    int grouping = -1) {
    const recipe_detail::BlockMap map(segments, kBlockSize);
    const AssignPlan plan(mu, base, inv2var, m, map.total, grouping);
    const AssignView& comp = plan.view;
    const int threads = pass_threads(n_threads, map.blocks(), map.total);
    struct State {
        std::vector<std::int64_t> counts;
        std::vector<double> ws;
        std::vector<std::int32_t> cand, pos, cell, count;
        AssignScratch scratch() {
            return {cand.data(), ws.data(), pos.data(), cell.data(), count.data()};
        }
    };
    std::vector<State> state(static_cast<std::size_t>(threads));
    std::vector<char> finite(static_cast<std::size_t>(threads), 1);
    recipe_detail::parallel_blocks(0, map.blocks(), threads, [&](int t, std::int64_t b) {
        State& st = state[static_cast<std::size_t>(t)];
        if (st.counts.empty()) {  // made by the thread that uses it (its own arena)
            st.counts.assign(kCountCopies * static_cast<std::size_t>(m), 0);
            if (comp.cells > 0) {
                const auto block = static_cast<std::size_t>(kBlockSize);
                st.cand.resize(static_cast<std::size_t>(m));
                st.ws.resize(block + kMaxTileLanes);
                st.pos.resize(block);
                st.cell.resize(block);
                st.count.resize(static_cast<std::size_t>(comp.cells));
            }
        }
        const auto at = map.at(b);
        const RecipeSegment& seg = segments[at.segment];
        void* out = static_cast<char*>(seg.idx) + at.begin * index_bytes(seg.idx_type);
        const AssignScratch scratch = st.scratch();
        const bool ok =
            seg.dtype == DType::f32
                ? table.assign_f32(comp, static_cast<const float*>(seg.w) + at.begin, out,
                                   seg.idx_type, at.n, st.counts.data(), scratch)
                : table.assign_f64(comp, static_cast<const double*>(seg.w) + at.begin, out,
                                   seg.idx_type, at.n, st.counts.data(), scratch);
        if (!ok) finite[static_cast<std::size_t>(t)] = 0;
    });
    for (const char f : finite) {
        if (!f) return std::nullopt;
    }
    std::vector<std::vector<std::int64_t>> counts;
    for (State& st : state) counts.push_back(std::move(st.counts));
    return recipe_detail::sum_counts(counts, m);
}

}  // namespace kernel
}  // namespace softshare
