// The block kernels for one instruction set. CMake compiles this file once per
// target, each time with that target's flags and with SOFTSHARE_ISA_NS, the
// namespace of everything defined here (baseline, avx2, avx512), and
// SOFTSHARE_VECTOR_BYTES, the target's vector width. Only functions of that
// namespace and internal-linkage helpers are defined here (the *-inl.hpp
// headers are included by this file alone; types.hpp is plain data), so no
// instruction of one target can leak into another's code; tools/check_isa.py
// verifies it on the built module.
#include "softshare/block-inl.hpp"
#include "softshare/grouped-inl.hpp"
#include "softshare/types.hpp"

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
void exp2_array(const T* x, T* y, std::int64_t n) {
    map_array(x, y, n, T(0), [](Vec<T> v) { return exp2_neg<T>(v); });
}

template <class T>
void log_array(const T* x, T* y, std::int64_t n) {
    map_array(x, y, n, T(1), [](Vec<T> v) { return log_ge1<T>(v); });
}

// y[i] = y[i] + x[i]: each lane's one rounded addition, the scalar one's bits.
template <class T>
void add_array(const T* x, T* y, std::int64_t n) {
    constexpr int L = Simd<T>::kLanes;
    std::int64_t i = 0;
    for (; i + L <= n; i += L) store(y + i, load(y + i) + load(x + i));
    for (; i < n; ++i) y[i] = y[i] + x[i];
}

KernelTable table() {
    return {SOFTSHARE_STR(SOFTSHARE_ISA_NS),
            &process_block<float>,
            &process_block<double>,
            &process_block_grouped<float>,
            &process_block_grouped<double>,
            &exp2_array<float>,
            &exp2_array<double>,
            &log_array<float>,
            &log_array<double>,
            &add_array<float>,
            &add_array<double>,
            Simd<float>::kLanes,
            Simd<double>::kLanes};
}

}  // namespace SOFTSHARE_ISA_NS

}  // namespace kernel
}  // namespace softshare
