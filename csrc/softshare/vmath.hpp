// Branch-free exp and log that compilers vectorize across SIMD lanes.
//
// Python-free. Both are plain arithmetic on scalars (bit casts through
// std::memcpy, comparisons as selects), so a loop over lanes that calls them
// under `#pragma omp simd` becomes straight vector code with no libm call.
//
// Accuracy (checked against long double on every SIMD path by tests/test_vmath.py):
//   exp_neg : argument x <= 0 (the only case the kernel needs: l - max(l)).
//             float  : Taylor degree 7 on |r| <= ln2/2, <= 2 ulp relative.
//             double : Taylor degree 13 on |r| <= ln2/2, <= 2 ulp relative.
//             Results below the smallest normal flush to exactly 0
//             (x < -87.33 for float, x < -708.39 for double): a component that
//             far from a weight contributes gamma = 0, never NaN.
//   log_ge1 : argument x >= 1 and finite (the log-sum-exp of terms whose
//             largest is exp(0) = 1). Series of atanh on |f| <= 0.1716:
//             float <= 3 ulp, double <= 3 ulp (worst just above sqrt(2), where
//             e ln 2 and log(m) < 0 partly cancel).
#pragma once

#include <cstdint>
#include <cstring>

namespace softshare {
namespace kernel {
namespace vmath {
// Internal linkage: every per-ISA translation unit gets its own copy, so the
// linker can never hand one instruction set's code to another.
namespace {

template <class T>
struct Bits;

template <>
struct Bits<float> {
    using Int = std::int32_t;
    static constexpr int kMantissa = 23;
    static constexpr Int kBias = 127;
    // 1.5 * 2^23: adding it rounds to the nearest integer in the low bits.
    static constexpr float kShift = 12582912.0f;
    static constexpr float kExpLow = -87.33654f;  // ln(FLT_MIN)
};

template <>
struct Bits<double> {
    using Int = std::int64_t;
    static constexpr int kMantissa = 52;
    static constexpr Int kBias = 1023;
    static constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
    static constexpr double kExpLow = -708.3964185322641;  // ln(DBL_MIN)
};

template <class To, class From>
inline To bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
    To out;
    std::memcpy(&out, &v, sizeof(To));
    return out;
}

// exp(r) for |r| <= ln2/2 by Horner on the Taylor series.
inline float exp_poly(float r) {
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r + 1.0f;
}

inline double exp_poly(double r) {
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

// exp(x) for x <= 0; exactly 0 below the normal range (and for x = -inf).
template <class T>
inline T exp_neg(T x) {
    using B = Bits<T>;
    using I = typename B::Int;
    const T log2e = T(1.4426950408889634);
    const T ln2_hi = T(0.693145751953125);  // exactly representable in float
    const T ln2_lo = T(1.4286068203094173e-06);
    const bool under = !(x >= B::kExpLow);  // also true for NaN: filtered by the caller's check
    const T xc = under ? T(0) : x;
    const T shifted = xc * log2e + B::kShift;
    const T n = shifted - B::kShift;  // round(x / ln2), exact integer
    const T r = (xc - n * ln2_hi) - n * ln2_lo;
    const I ni = bit_cast<I>(shifted) - bit_cast<I>(B::kShift);
    const T scale = bit_cast<T>(static_cast<I>((ni + B::kBias) << B::kMantissa));
    const T y = exp_poly(r) * scale;
    return under ? T(0) : y;
}

// log(m) for m in [sqrt(1/2), sqrt(2)) via 2 atanh((m - 1) / (m + 1)).
inline float log_mantissa(float m) {
    const float f = (m - 1.0f) / (m + 1.0f);
    const float f2 = f * f;
    float p = 1.0f / 11.0f;
    p = p * f2 + 1.0f / 9.0f;
    p = p * f2 + 1.0f / 7.0f;
    p = p * f2 + 1.0f / 5.0f;
    p = p * f2 + 1.0f / 3.0f;
    p = p * f2 + 1.0f;
    return 2.0f * f * p;
}

inline double log_mantissa(double m) {
    const double f = (m - 1.0) / (m + 1.0);
    const double f2 = f * f;
    double p = 1.0 / 23.0;
    p = p * f2 + 1.0 / 21.0;
    p = p * f2 + 1.0 / 19.0;
    p = p * f2 + 1.0 / 17.0;
    p = p * f2 + 1.0 / 15.0;
    p = p * f2 + 1.0 / 13.0;
    p = p * f2 + 1.0 / 11.0;
    p = p * f2 + 1.0 / 9.0;
    p = p * f2 + 1.0 / 7.0;
    p = p * f2 + 1.0 / 5.0;
    p = p * f2 + 1.0 / 3.0;
    p = p * f2 + 1.0;
    return 2.0 * f * p;
}

// log(x) for finite x >= 1 (normal, positive).
template <class T>
inline T log_ge1(T x) {
    using B = Bits<T>;
    using I = typename B::Int;
    const T ln2 = T(0.6931471805599453);
    const I mant_mask = (I(1) << B::kMantissa) - 1;
    const I bits = bit_cast<I>(x);
    I e = (bits >> B::kMantissa) - B::kBias;
    T m = bit_cast<T>(static_cast<I>((bits & mant_mask) | (B::kBias << B::kMantissa)));
    const bool big = m > T(1.4142135623730951);
    m = big ? m * T(0.5) : m;
    e = big ? e + 1 : e;
    return static_cast<T>(e) * ln2 + log_mantissa(m);
}

}  // namespace
}  // namespace vmath
}  // namespace kernel
}  // namespace softshare
