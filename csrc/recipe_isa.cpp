// The compression recipe's kernels for one instruction set (recipe-inl.hpp).
// CMake compiles this file once per target, as kernel_isa.cpp, with
// SOFTSHARE_ISA_NS and SOFTSHARE_VECTOR_BYTES, and with -ffp-contract=off:
// assign's scores must round every operation on its own (no FMA) to be
// NumPy's, bit for bit. Only functions of SOFTSHARE_ISA_NS and
// internal-linkage helpers are defined here; tools/check_isa.py verifies it.
#include "softshare/recipe-inl.hpp"
#include "softshare/recipe_types.hpp"

#define SOFTSHARE_STR2(x) #x
#define SOFTSHARE_STR(x) SOFTSHARE_STR2(x)

namespace softshare {
namespace kernel {
namespace SOFTSHARE_ISA_NS {

RecipeTable recipe_table() {
    return {SOFTSHARE_STR(SOFTSHARE_ISA_NS), &recipe::assign_block<float>,
            &recipe::assign_block<double>, &recipe::dequantize};
}

}  // namespace SOFTSHARE_ISA_NS
}  // namespace kernel
}  // namespace softshare
