// What this build offers at run time besides the SIMD target (dispatch.hpp):
// OpenMP and its default thread count. Python-free; baseline translation units
// only (the driver and the bindings), never kernel_isa.cpp.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

namespace softshare {
namespace kernel {

// Whether the kernel was built with OpenMP.
inline bool has_openmp() {
#ifdef _OPENMP
    return true;
#else
    return false;
#endif
}

// Threads OpenMP would use for a parallel region by default (1 without OpenMP).
inline int default_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

}  // namespace kernel
}  // namespace softshare
