// The block kernels compiled for each instruction set, and the choice among
// them at run time. Python-free.
#pragma once

#include <string>
#include <vector>

#include "softshare/recipe_types.hpp"
#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// Defined in kernel_isa.cpp (table) and recipe_isa.cpp (recipe_table), each
// compiled once per target with its own flags; only called for a target the
// CPU supports.
namespace baseline {
KernelTable table();
RecipeTable recipe_table();
}  // namespace baseline
#ifdef SOFTSHARE_X86_DISPATCH
namespace avx2 {
KernelTable table();  // x86-64-v3: AVX2 + FMA
RecipeTable recipe_table();
}  // namespace avx2
namespace avx512 {
KernelTable table();  // x86-64-v4: AVX-512 F/BW/DQ/VL
RecipeTable recipe_table();
}  // namespace avx512
#endif

// The targets this build has and this CPU runs, lowest first.
const std::vector<std::string>& supported_targets();
// The kernels of a supported target; std::invalid_argument otherwise.
KernelTable table_for(const std::string& name);
// The kernels in use: the best supported target unless set_target chose one.
KernelTable active_table();
void set_target(const std::string& name);
// The recipe's kernels of the target in use (the one active_table names).
RecipeTable active_recipe_table();

}  // namespace kernel
}  // namespace softshare
