// The block kernels compiled for each instruction set, and the choice among
// them at run time. Python-free.
#pragma once

#include <string>
#include <vector>

#include "softshare/types.hpp"

namespace softshare {
namespace kernel {

// Defined in kernel_isa.cpp, compiled once per target with its own flags; only
// called for a target the CPU supports.
namespace baseline {
KernelTable table();
}
#ifdef SOFTSHARE_X86_DISPATCH
namespace avx2 {
KernelTable table();  // x86-64-v3: AVX2 + FMA
}
namespace avx512 {
KernelTable table();  // x86-64-v4: AVX-512 F/BW/DQ/VL
}
#endif

// The targets this build has and this CPU runs, lowest first.
const std::vector<std::string>& supported_targets();
// The kernels of a supported target; std::invalid_argument otherwise.
KernelTable table_for(const std::string& name);
// The kernels in use: the best supported target unless set_target chose one.
KernelTable active_table();
void set_target(const std::string& name);

}  // namespace kernel
}  // namespace softshare
