// SIMD vectors and branch-free exp/log on them. Python-free.
// Per-target code (-inl): included once per target, via tile-inl.hpp and recipe-inl.hpp.
//
// Vectors are GCC/Clang vector extensions of SOFTSHARE_VECTOR_BYTES bytes, the
// register width of the translation unit's target: 64 (one zmm) for AVX-512,
// 32 (ymm) for AVX2, 16 (xmm, or NEON elsewhere) for the portable baseline;
// CMake defines it for each target. Everything here has internal linkage, so
// each per-target translation unit gets its own copy and the linker can never
// hand one instruction set's code to another.
//
// Accuracy (checked against long double on every SIMD path by tests/kernel/test_vmath.py):
//   exp2_neg: 2^x for x <= 0 (the kernel works in base 2: x = l - max(l)).
//             2^round(x) * P(f), f = x - round(x) exact, P a degree-6
//             near-minimax polynomial for float and the degree-13 Taylor series
//             of exp(f ln 2) for double, on |f| <= 1/2; <= 2 ulp relative.
//             Results below the smallest normal (and for -inf) are exactly 0
//             on every path, never subnormals: a component that far from a
//             weight contributes gamma = 0, never NaN, and no subnormal
//             reaches the arithmetic downstream (on Intel cores each
//             instruction with a subnormal operand costs ~100 cycles).
//   log_ge1 : argument x >= 1 and finite (the log-sum-exp of terms whose
//             largest is exp(0) = 1). x = 2^e m, m from the bits (AVX-512:
//             vgetmant / vgetexp, m in [0.75, 1.5)), then a series of atanh on
//             |f| <= 0.1716 (0.2): float <= 3 ulp, double <= 3 ulp (worst just
//             above sqrt(2) (1.5), where e ln 2 and log(m) < 0 partly cancel).
#pragma once

#include <cstdint>

#ifndef SOFTSHARE_VECTOR_BYTES
#error "SOFTSHARE_VECTOR_BYTES (the target's vector width) must be defined: see CMakeLists.txt"
#endif

#if defined(__AVX512F__) && SOFTSHARE_VECTOR_BYTES == 64
#include <immintrin.h>
#endif

#if !defined(__GNUC__) && !defined(__clang__)
#error "softshare's kernel needs GCC or Clang vector extensions"
#endif

#define SOFTSHARE_INLINE inline __attribute__((always_inline))

namespace softshare {
namespace kernel {
namespace {

constexpr int kVectorBytes = SOFTSHARE_VECTOR_BYTES;

template <class T>
struct Simd;

template <>
struct Simd<float> {
    typedef float V __attribute__((vector_size(kVectorBytes), aligned(4), may_alias));
    typedef std::int32_t I __attribute__((vector_size(kVectorBytes), aligned(4)));
    using Int = std::int32_t;
    static constexpr int kLanes = kVectorBytes / 4;
    static constexpr int kMantissa = 23;
    static constexpr int kMaxExponent = 127;
    // 1.5 * 2^23 + 127: x + kShift rounds x to an integer n in the low
    // mantissa bits, already offset by the exponent bias.
    static constexpr float kShift = 12583039.0f;
};

template <>
struct Simd<double> {
    typedef double V __attribute__((vector_size(kVectorBytes), aligned(8), may_alias));
    typedef std::int64_t I __attribute__((vector_size(kVectorBytes), aligned(8)));
    using Int = std::int64_t;
    static constexpr int kLanes = kVectorBytes / 8;
    static constexpr int kMantissa = 52;
    static constexpr int kMaxExponent = 1023;
    static constexpr double kShift = 6755399441056767.0;  // 1.5 * 2^52 + 1023
};

template <class T>
using Vec = typename Simd<T>::V;
template <class T>
using IVec = typename Simd<T>::I;

// x as computed, never fused by the compiler into the addition that uses it
// (an FMA rounds once where the product and the sum round twice). GCC fuses
// a product and a sum only when it sees both in one basic block, which
// depends on how a kernel was inlined and scheduled: where the same formula
// appears in two kernels (process_block's two tile loops), opaque keeps their
// bits the same.
template <class V>
SOFTSHARE_INLINE V opaque(V x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __asm__("" : "+v"(x));
#endif
    return x;
}

template <class T>
SOFTSHARE_INLINE Vec<T> splat(T x) {
    return Vec<T>{} + x;
}

// Unaligned loads and stores (the vector types are declared with the element's
// alignment, so a dereference compiles to one unaligned vector move).
template <class T>
SOFTSHARE_INLINE Vec<T> load(const T* p) {
    return *reinterpret_cast<const Vec<T>*>(p);
}

template <class T>
SOFTSHARE_INLINE void store(T* p, Vec<T> v) {
    *reinterpret_cast<Vec<T>*>(p) = v;
}

// a[0 .. kLanes) += v, in float64.
SOFTSHARE_INLINE void add_to_f64(double* a, Vec<float> v) {
    typedef double W __attribute__((vector_size(2 * kVectorBytes), aligned(8)));
    typedef double WU __attribute__((vector_size(2 * kVectorBytes), aligned(8), may_alias));
    *reinterpret_cast<WU*>(a) += __builtin_convertvector(v, W);
}

SOFTSHARE_INLINE void add_to_f64(double* a, Vec<double> v) {
    *reinterpret_cast<Vec<double>*>(a) += v;
}

template <class T>
SOFTSHARE_INLINE Vec<T> vmax(Vec<T> a, Vec<T> b) {
    return a > b ? a : b;
}

// mask ? v : 0, with mask the all-ones/all-zeros result of a comparison.
template <class T>
SOFTSHARE_INLINE Vec<T> keep(IVec<T> mask, Vec<T> v) {
    return reinterpret_cast<Vec<T>>(mask & reinterpret_cast<IVec<T>>(v));
}

#if defined(__AVX512F__) && SOFTSHARE_VECTOR_BYTES == 64
// x - round(x) (round to nearest even) with AVX-512DQ's vreduce: one
// instruction, exact (x - round(x) is representable), and round(x) = x - that,
// exact too. vrndscale would cost two micro-ops and the subtraction a third.
// The zero-masking forms with a full mask are the same instructions; they avoid
// GCC 12's spurious -Wmaybe-uninitialized on the plain forms' undefined pass-through.
SOFTSHARE_INLINE Vec<float> reduce_nearest(Vec<float> x) {
    return reinterpret_cast<Vec<float>>(_mm512_maskz_reduce_ps(
        0xFFFF, reinterpret_cast<__m512>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
SOFTSHARE_INLINE Vec<double> reduce_nearest(Vec<double> x) {
    return reinterpret_cast<Vec<double>>(_mm512_maskz_reduce_pd(
        0xFF, reinterpret_cast<__m512d>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
// p * 2^n where x >= low, else 0: one compare into a mask register, and
// vscalef's zero-masking form. Results below the smallest normal are then 0,
// as on the portable paths, never subnormals (whose arithmetic costs Intel
// cores some hundred cycles an instruction, everywhere downstream).
SOFTSHARE_INLINE Vec<float> scale2_normal(Vec<float> p, Vec<float> n, Vec<float> x, float low) {
    const __mmask16 normal = _mm512_cmp_ps_mask(reinterpret_cast<__m512>(x),
                                                _mm512_set1_ps(low), _CMP_GE_OQ);
    return reinterpret_cast<Vec<float>>(
        _mm512_maskz_scalef_ps(normal, reinterpret_cast<__m512>(p), reinterpret_cast<__m512>(n)));
}
SOFTSHARE_INLINE Vec<double> scale2_normal(Vec<double> p, Vec<double> n, Vec<double> x,
                                           double low) {
    const __mmask8 normal = _mm512_cmp_pd_mask(reinterpret_cast<__m512d>(x),
                                               _mm512_set1_pd(low), _CMP_GE_OQ);
    return reinterpret_cast<Vec<double>>(
        _mm512_maskz_scalef_pd(normal, reinterpret_cast<__m512d>(p), reinterpret_cast<__m512d>(n)));
}
// x = m 2^e with m in [0.75, 1.5) (x finite, > 0): vgetmant's interval, and
// e = getexp(x) - getexp(m), getexp(m) being -1 or 0. Four micro-ops for
// what the bit manipulation of the portable paths takes eight.
SOFTSHARE_INLINE void split_mantissa(Vec<float> x, Vec<float>& m, Vec<float>& e) {
    const __m512 xv = reinterpret_cast<__m512>(x);
    const __m512 mv = _mm512_maskz_getmant_ps(0xFFFF, xv, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
    m = reinterpret_cast<Vec<float>>(mv);
    e = reinterpret_cast<Vec<float>>(_mm512_maskz_getexp_ps(0xFFFF, xv)) -
        reinterpret_cast<Vec<float>>(_mm512_maskz_getexp_ps(0xFFFF, mv));
}
SOFTSHARE_INLINE void split_mantissa(Vec<double> x, Vec<double>& m, Vec<double>& e) {
    const __m512d xv = reinterpret_cast<__m512d>(x);
    const __m512d mv = _mm512_maskz_getmant_pd(0xFF, xv, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
    m = reinterpret_cast<Vec<double>>(mv);
    e = reinterpret_cast<Vec<double>>(_mm512_maskz_getexp_pd(0xFF, xv)) -
        reinterpret_cast<Vec<double>>(_mm512_maskz_getexp_pd(0xFF, mv));
}
#endif

// Coefficients of 2^f on |f| <= 1/2, highest degree first.
template <class T>
struct Exp2Poly;
template <>
struct Exp2Poly<float> {
    // Near-minimax (relative error 7e-9 on |f| <= 1/2) rather than Taylor: one
    // degree fewer for the same accuracy. Fitted by iteratively reweighted
    // least squares on Chebyshev nodes.
    static constexpr int kDegree = 6;
    static constexpr float kCoef[kDegree + 1] = {
        1.4922877935846096e-04f,
        1.3391058079572325e-03f,
        9.619923542345227e-03f,
        5.550353756072296e-02f,
        2.4022635259817332e-01f,
        6.931471923698157e-01f,
        1.0f,
    };
};
template <>
struct Exp2Poly<double> {
    static constexpr int kDegree = 13;
    static constexpr double kCoef[kDegree + 1] = {
        1.3691488853904124e-12, 2.5678435993488196e-11,
        4.44553827187081e-10,   7.054911620801121e-09,
        1.0178086009239696e-07, 1.3215486790144305e-06,
        1.5252733804059838e-05, 0.00015403530393381606,
        0.0013333558146428441,  0.009618129107628477,
        0.055504108664821576,   0.2402265069591007,
        0.6931471805599453,     1.0,
    };
};

// p[u] = P(r[u]) by Horner (coefficients P::kCoef, highest degree first), the U
// chains in lockstep.
template <class P, class T, int U>
SOFTSHARE_INLINE void poly_n(const Vec<T> (&r)[U], Vec<T> (&p)[U]) {
    for (int u = 0; u < U; ++u) p[u] = splat(P::kCoef[0]);
    for (int k = 1; k <= P::kDegree; ++k) {
        for (int u = 0; u < U; ++u) p[u] = p[u] * r[u] + P::kCoef[k];
    }
}

// x[u] = 2^x[u] for x <= 0 (U vectors in lockstep): 2^round(x) * P(x - round(x)),
// the reduction exact. Results below the smallest normal are exactly 0 (for
// -inf too) on every path.
template <class T, int U>
SOFTSHARE_INLINE void exp2_neg_n(Vec<T> (&x)[U]) {
    using S = Simd<T>;
    Vec<T> f[U], p[U];
    const T low = -T(S::kMaxExponent) + T(1);  // log2 of the smallest normal
#if defined(__AVX512F__) && SOFTSHARE_VECTOR_BYTES == 64
    // f = x - round(x) and n = x - f = round(x), both exact; lanes below `low`
    // (-inf and NaN included: their f and n may be NaN) are zeroed by the mask.
    Vec<T> n[U];
    for (int u = 0; u < U; ++u) f[u] = reduce_nearest(x[u]);
    for (int u = 0; u < U; ++u) n[u] = x[u] - f[u];
    poly_n<Exp2Poly<T>, T, U>(f, p);
    for (int u = 0; u < U; ++u) x[u] = scale2_normal(p[u], n[u], x[u], low);
#else
    IVec<T> normal[U];
    Vec<T> shifted[U];
    // Lanes below `low` (or -inf, or NaN) compute garbage that the mask zeroes.
    for (int u = 0; u < U; ++u) normal[u] = x[u] >= low;
    for (int u = 0; u < U; ++u) shifted[u] = x[u] + S::kShift;
    for (int u = 0; u < U; ++u) f[u] = x[u] - (shifted[u] - S::kShift);
    poly_n<Exp2Poly<T>, T, U>(f, p);
    for (int u = 0; u < U; ++u) {
        const Vec<T> scale =
            reinterpret_cast<Vec<T>>(reinterpret_cast<IVec<T>>(shifted[u]) << S::kMantissa);
        x[u] = keep<T>(normal[u], p[u] * scale);
    }
#endif
}

template <class T>
SOFTSHARE_INLINE Vec<T> exp2_neg(Vec<T> x) {
    Vec<T> xs[1] = {x};
    exp2_neg_n<T, 1>(xs);
    return xs[0];
}

// log(m) for m in [sqrt(1/2), sqrt(2)) (AVX-512: [0.75, 1.5)) via
// 2 atanh((m - 1) / (m + 1)): |f| <= 0.1716 (0.2), the series' first
// omitted term below 1e-9 (float) and 1e-18 (double) of the result.
SOFTSHARE_INLINE Vec<float> log_mantissa(Vec<float> m) {
    const Vec<float> f = (m - 1.0f) / (m + 1.0f);
    const Vec<float> f2 = f * f;
    Vec<float> p = splat(1.0f / 11.0f);
    p = p * f2 + 1.0f / 9.0f;
    p = p * f2 + 1.0f / 7.0f;
    p = p * f2 + 1.0f / 5.0f;
    p = p * f2 + 1.0f / 3.0f;
    p = p * f2 + 1.0f;
    return 2.0f * f * p;
}

SOFTSHARE_INLINE Vec<double> log_mantissa(Vec<double> m) {
    const Vec<double> f = (m - 1.0) / (m + 1.0);
    const Vec<double> f2 = f * f;
    Vec<double> p = splat(1.0 / 23.0);
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

// log(x) for finite x >= 1.
template <class T>
SOFTSHARE_INLINE Vec<T> log_ge1(Vec<T> x) {
#if defined(__AVX512F__) && SOFTSHARE_VECTOR_BYTES == 64
    Vec<T> m, e;
    split_mantissa(x, m, e);
    return e * T(0.6931471805599453) + log_mantissa(m);
#else
    using S = Simd<T>;
    using I = IVec<T>;
    using Int = typename S::Int;
    const Int bias = (Int(1) << (sizeof(T) * 8 - S::kMantissa - 2)) - 1;  // 127 or 1023
    const Int mant_mask = (Int(1) << S::kMantissa) - 1;
    const I bits = reinterpret_cast<I>(x);
    // x = 2^e * m with m in [1, 2); then m in [sqrt(1/2), sqrt(2)).
    Vec<T> m = reinterpret_cast<Vec<T>>((bits & mant_mask) | (bias << S::kMantissa));
    const I big = m > T(1.4142135623730951);
    m = big ? m * T(0.5) : m;
    const I e = (bits >> S::kMantissa) - bias - big;  // big is -1 where true
    // e as T without an int64 -> double instruction (absent before AVX-512):
    // 2^52 + 2^51 + e has e in its low mantissa bits (|e| < 2^51).
    const T magic = T(1.5) * T(Int(1) << S::kMantissa);
    const Vec<T> e_t = reinterpret_cast<Vec<T>>(e + reinterpret_cast<I>(splat(magic))) - magic;
    return e_t * T(0.6931471805599453) + log_mantissa(m);
#endif
}

}  // namespace
}  // namespace kernel
}  // namespace softshare
