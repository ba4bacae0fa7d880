// Run-time choice of the block kernels (compiled for baseline flags only).
#include "softshare/dispatch.hpp"

#include <atomic>
#include <stdexcept>

namespace softshare {
namespace kernel {

namespace {

bool cpu_has(const std::string& name) {
    if (name == "baseline") return true;
#ifdef SOFTSHARE_X86_DISPATCH
    __builtin_cpu_init();
    // libgcc's checks include the OS's support for the wider registers (XCR0).
    if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (name == "avx512") {
        return cpu_has("avx2") && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl");
    }
#endif
    return false;
}

const std::vector<std::string>& all_targets() {
#ifdef SOFTSHARE_X86_DISPATCH
    static const std::vector<std::string> names{"baseline", "avx2", "avx512"};
#else
    static const std::vector<std::string> names{"baseline"};
#endif
    return names;
}

KernelTable table_unchecked(const std::string& name) {
#ifdef SOFTSHARE_X86_DISPATCH
    if (name == "avx2") return avx2::table();
    if (name == "avx512") return avx512::table();
#endif
    (void)name;
    return baseline::table();
}

RecipeTable recipe_table_unchecked(const std::string& name) {
#ifdef SOFTSHARE_X86_DISPATCH
    if (name == "avx2") return avx2::recipe_table();
    if (name == "avx512") return avx512::recipe_table();
#endif
    (void)name;
    return baseline::recipe_table();
}

// Index into supported_targets(); -1 until first use.
std::atomic<int> g_active{-1};

// The active target's index into supported_targets().
std::size_t active_index() {
    const int idx = g_active.load();
    const int n = static_cast<int>(supported_targets().size());
    return static_cast<std::size_t>(idx < 0 || idx >= n ? n - 1 : idx);
}

}  // namespace

const std::vector<std::string>& supported_targets() {
    static const std::vector<std::string> targets = [] {
        std::vector<std::string> out;
        for (const auto& name : all_targets()) {
            if (cpu_has(name)) out.push_back(name);
        }
        return out;
    }();
    return targets;
}

KernelTable table_for(const std::string& name) {
    bool known = false;
    for (const auto& n : all_targets()) known = known || n == name;
    if (!known) {
        std::string msg = "unknown SIMD target '" + name + "'; this build has:";
        for (const auto& n : all_targets()) msg += " " + n;
        throw std::invalid_argument(msg);
    }
    if (!cpu_has(name)) {
        throw std::invalid_argument("SIMD target '" + name + "' is not supported by this CPU");
    }
    return table_unchecked(name);
}

KernelTable active_table() {
    static const std::vector<KernelTable> tables = [] {
        std::vector<KernelTable> out;
        for (const auto& name : supported_targets()) out.push_back(table_unchecked(name));
        return out;
    }();
    return tables[active_index()];
}

RecipeTable active_recipe_table() {
    static const std::vector<RecipeTable> tables = [] {
        std::vector<RecipeTable> out;
        for (const auto& name : supported_targets()) out.push_back(recipe_table_unchecked(name));
        return out;
    }();
    return tables[active_index()];
}

void set_target(const std::string& name) {
    table_for(name);  // throws for unknown or unsupported targets
    const auto& targets = supported_targets();
    for (std::size_t i = 0; i < targets.size(); ++i) {
        if (targets[i] == name) g_active.store(static_cast<int>(i));
    }
}

}  // namespace kernel
}  // namespace softshare
