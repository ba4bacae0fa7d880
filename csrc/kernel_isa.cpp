// The block kernels for one instruction set. CMake compiles this file once per
// target, each time with that target's flags and with
//   SOFTSHARE_ISA_NS   the namespace of the instantiations (baseline, avx2, avx512)
//   SOFTSHARE_TABLE_FN the function that returns them (table_baseline, ...).
// Only the functions of that namespace and internal-linkage helpers are
// defined here, so no instruction of one target can leak into another's code.
#include "softshare/block.hpp"
#include "softshare/types.hpp"

#ifndef SOFTSHARE_TABLE_FN
#error "define SOFTSHARE_TABLE_FN when compiling kernel_isa.cpp"
#endif

#define SOFTSHARE_STR2(x) #x
#define SOFTSHARE_STR(x) SOFTSHARE_STR2(x)

namespace softshare {
namespace kernel {

KernelTable SOFTSHARE_TABLE_FN() {
    return {SOFTSHARE_STR(SOFTSHARE_ISA_NS), &SOFTSHARE_ISA_NS::process_block<float>,
            &SOFTSHARE_ISA_NS::process_block<double>};
}

}  // namespace kernel
}  // namespace softshare
