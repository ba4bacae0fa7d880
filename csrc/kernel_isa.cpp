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
namespace SOFTSHARE_ISA_NS {

// y[i] = f(x[i]) vector by vector; the tail goes through a padded vector.
template <class T, class F>
void map_array(const T* x, T* y, std::int64_t n, T pad, F f) {
    constexpr int L = Simd<T>::kLanes;
    std::int64_t i = 0;
    for (; i + L <= n; i += L) store(y + i, f(load(x + i)));
    if (i < n) {
        alignas(64) T tmp[L];
        for (int t = 0; t < L; ++t) tmp[t] = i + t < n ? x[i + t] : pad;
        store(tmp, f(load(tmp)));
        for (int t = 0; i + t < n; ++t) y[i + t] = tmp[t];
    }
}

template <class T>
void exp_array(const T* x, T* y, std::int64_t n) {
    map_array(x, y, n, T(0), [](Vec<T> v) { return exp_neg<T>(v); });
}

template <class T>
void log_array(const T* x, T* y, std::int64_t n) {
    map_array(x, y, n, T(1), [](Vec<T> v) { return log_ge1<T>(v); });
}

}  // namespace SOFTSHARE_ISA_NS

KernelTable SOFTSHARE_TABLE_FN() {
    namespace isa = SOFTSHARE_ISA_NS;
    return {SOFTSHARE_STR(SOFTSHARE_ISA_NS), &isa::process_block<float>,
            &isa::process_block<double>,     &isa::exp_array<float>,
            &isa::exp_array<double>,         &isa::log_array<float>,
            &isa::log_array<double>};
}

}  // namespace kernel
}  // namespace softshare
