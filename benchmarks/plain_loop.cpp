// A plain fused loop of the soft weight-sharing penalty, for comparison only
// (benchmarks/bench_small_m.py compiles it with -O3 -march=native and loads it
// with ctypes; the package never uses it).
//
// What a careful engineer writes for one fixed, small M: the components as
// constants (M is a template parameter, so every loop over j is unrolled), 16
// weights at a time in GCC vector types (one AVX-512 register, two AVX2 ones),
// a polynomial 2^x and log2 instead of libm calls (2^x flushed to 0 below
// 2^-126, so no subnormal reaches the arithmetic), float32 arithmetic with the
// sums of each chunk added into float64, OpenMP over chunks, the gradient
// written into a buffer the caller owns and reuses. Same outputs as
// softshare.penalty: sum L, grad_w, S0/S1/S2 (the mixture gradients follow
// from them in a few operations per component).
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

typedef float vf __attribute__((vector_size(64)));
typedef std::int32_t vi __attribute__((vector_size(64)));
constexpr int kLanes = 16;
constexpr std::int64_t kChunk = 1024;

inline vf splat(float x) { return vf{} + x; }

// 2^x for x <= 0; exactly 0 below -126.
inline vf exp2v(vf x_in) {
    const vi under = x_in < -126.0f;
    const vf x = under ? splat(-126.0f) : x_in;
    vi n = __builtin_convertvector(x, vi);               // truncation toward 0
    n += (x < __builtin_convertvector(n, vf));           // -1 where that was above x: floor
    const vf f = x - __builtin_convertvector(n, vf);     // [0, 1)
    vf p = splat(1.8775767e-3f);                         // minimax 2^f, rel. error ~2e-7
    p = p * f + 8.9893397e-3f;
    p = p * f + 5.5826318e-2f;
    p = p * f + 2.4015361e-1f;
    p = p * f + 6.9315308e-1f;
    p = p * f + 9.9999994e-1f;
    const vf scale = reinterpret_cast<const vf&>(static_cast<const vi&>((n + 127) << 23));
    return under ? vf{} : p * scale;
}

// log2(s) for finite s >= 1: exponent plus a series of the mantissa.
inline vf log2v(vf s) {
    vi bits = reinterpret_cast<const vi&>(s);
    const vf e = __builtin_convertvector((bits >> 23) - 127, vf);
    bits = (bits & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
    const vf m = reinterpret_cast<const vf&>(bits);
    const vf t = (m - 1.0f) / (m + 1.0f);  // log2(m) = 2 / ln 2 * atanh(t)
    const vf t2 = t * t;
    vf p = splat(0.28571429f);
    p = p * t2 + 0.4f;
    p = p * t2 + 0.66666667f;
    p = p * t2 + 2.0f;
    return e + 1.4426950f * (p * t);
}

template <int M>
void run(const float* w, float* grad, std::int64_t n, const float* mu, const float* h,
         const float* c, const float* a, float lam, double* out) {
    // out: [sum L (nats), S0 (M), S1 (M), S2 (M)]
    std::vector<double> total(1 + 3 * M, 0.0);
    const std::int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel
    {
        std::vector<double> mine(1 + 3 * M, 0.0);
#pragma omp for schedule(static)
        for (std::int64_t chunk = 0; chunk < n_chunks; ++chunk) {
            const std::int64_t i0 = chunk * kChunk;
            const std::int64_t i1 = i0 + kChunk < n ? i0 + kChunk : n;
            vf sl{}, s0[M] = {}, s1[M] = {}, s2[M] = {};
            for (std::int64_t b = i0; b < i1; b += kLanes) {
                const int cnt = static_cast<int>(i1 - b < kLanes ? i1 - b : kLanes);
                vf wv, valid;
                if (cnt == kLanes) {
                    std::memcpy(&wv, w + b, sizeof wv);
                    valid = splat(1.0f);
                } else {
                    wv = splat(w[b]);
                    valid = vf{};
                    for (int k = 0; k < cnt; ++k) wv[k] = w[b + k], valid[k] = 1.0f;
                }
                vf d[M], l[M];
                vf mx = splat(-3.0e38f);
                for (int j = 0; j < M; ++j) {
                    d[j] = wv - mu[j];
                    l[j] = c[j] - d[j] * d[j] * h[j];  // base 2
                    mx = l[j] > mx ? l[j] : mx;
                }
                vf s{};
                for (int j = 0; j < M; ++j) {
                    l[j] = exp2v(l[j] - mx);
                    s += l[j];
                }
                sl += valid * (0.69314718f * (mx + log2v(s)));
                const vf inv = valid / s;
                vf g{};
                for (int j = 0; j < M; ++j) {
                    const vf gam = l[j] * inv;
                    const vf gd = gam * d[j];
                    g += gd * a[j];
                    s0[j] += gam;
                    s1[j] += gd;
                    s2[j] += gd * d[j];
                }
                g *= lam;
                if (cnt == kLanes) {
                    std::memcpy(grad + b, &g, sizeof g);
                } else {
                    for (int k = 0; k < cnt; ++k) grad[b + k] = g[k];
                }
            }
            for (int k = 0; k < kLanes; ++k) {
                mine[0] += sl[k];
                for (int j = 0; j < M; ++j) {
                    mine[1 + j] += s0[j][k];
                    mine[1 + M + j] += s1[j][k];
                    mine[1 + 2 * M + j] += s2[j][k];
                }
            }
        }
#pragma omp critical
        for (int k = 0; k < 1 + 3 * M; ++k) total[static_cast<std::size_t>(k)] += mine[k];
    }
    for (int k = 0; k < 1 + 3 * M; ++k) out[k] = total[static_cast<std::size_t>(k)];
}

}  // namespace

// mu, var, pi: the mixture (M = 3, 8 or 16 components); out: 1 + 3 M doubles.
// Returns 1 for another M.
extern "C" int plain_penalty(const float* w, float* grad, std::int64_t n, int m, const double* mu,
                             const double* var, const double* pi, float lam, double* out,
                             int n_threads) {
    omp_set_num_threads(n_threads);
    std::vector<float> mu_f(m), h(m), c(m), a(m);
    for (int j = 0; j < m; ++j) {
        mu_f[j] = static_cast<float>(mu[j]);
        h[j] = static_cast<float>(1.4426950408889634 / (2.0 * var[j]));
        c[j] = static_cast<float>(std::log2(pi[j]) - 0.5 * std::log2(2.0 * M_PI * var[j]));
        a[j] = static_cast<float>(1.0 / var[j]);
    }
    switch (m) {
        case 3: run<3>(w, grad, n, mu_f.data(), h.data(), c.data(), a.data(), lam, out); return 0;
        case 8: run<8>(w, grad, n, mu_f.data(), h.data(), c.data(), a.data(), lam, out); return 0;
        case 16: run<16>(w, grad, n, mu_f.data(), h.data(), c.data(), a.data(), lam, out); return 0;
        default: return 1;
    }
}
