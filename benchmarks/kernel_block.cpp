// The AVX-512 float32 block kernel alone, for bench_kernel.py: no Python, no
// driver, no threads. Compiled by bench_kernel.py from the package's own
// headers (csrc/softshare/block-inl.hpp) with the flags CMake gives the
// avx512 kernel, and linked with cycles.c's clock probe. A measurement aid,
// never part of the package.
//
// kernel_block M NB prints, for M components and NB blocks of 4096 float32
// weights N(0, 0.1) (NB = 1: one block, cached; larger: arrays that stream
// from L2/L3 as a real call's do), the best time per block and the median
// over 15 rounds of weight-component pairs per cycle (each round's time
// against the clock measured right before and after it). The mixture is
// compare_peers.py's: means spread over [-0.3, 0.3], sigma 0.05, equal
// proportions; NARROW=1 in the environment gives the codebook setup instead
// (means over [-0.45, 0.45], sigma half their spacing).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "softshare/block-inl.hpp"
#include "softshare/driver.hpp"

extern "C" double softshare_clock_ghz(int threads, int wide);

namespace sk = softshare::kernel;

template <class P>
static P* aligned(std::vector<P>& v) {
    const auto at = reinterpret_cast<std::uintptr_t>(v.data());
    return reinterpret_cast<P*>((at + 63) & ~std::uintptr_t(63));
}

int main(int argc, char** argv) {
    const int m = argc > 1 ? std::atoi(argv[1]) : 16;
    const long nb = argc > 2 ? std::atol(argv[2]) : 1;
    const bool narrow = std::getenv("NARROW") != nullptr;
    if (m < 2 || nb < 1) return 2;
    const long n = sk::kBlockSize;
    std::mt19937 rng(0);
    std::normal_distribution<double> normal(0.0, 0.1);
    std::vector<float> w(static_cast<std::size_t>(n * nb)), g(w.size());
    for (float& x : w) x = static_cast<float>(normal(rng));
    // The mixture, and its constants as the package computes them (mixture.hpp:
    // a baseline-only header in the package, where kernels of several
    // instruction sets share one binary; this program is all AVX-512).
    std::vector<double> mu(m), log_var(m), logit(m, 0.0);
    for (int j = 0; j < m; ++j) {
        const double lo = narrow ? -0.45 : -0.3, hi = -lo;
        const double sigma = narrow ? 0.5 * (hi - lo) / (m - 1) : 0.05;
        mu[j] = lo + (hi - lo) * j / (m - 1);
        log_var[j] = 2.0 * std::log(sigma);
    }
    const sk::Components<float> constants(mu.data(), log_var.data(), logit.data(), m);
    const sk::ComponentsView<float> comp = constants.view();
    const int lanes = 16;
    std::vector<float> buf(sk::scratch_buf_size(m, lanes) + 16),
        sub(sk::scratch_sub_size(m, lanes) + 16);
    std::vector<double> acc(sk::scratch_acc_size(m, lanes) + 8), partial(sk::partial_size(m));
    const sk::Scratch<float> scratch{aligned(buf), aligned(sub), aligned(acc), nullptr,
                                     nullptr,      nullptr,      nullptr};
    // Through a pointer, with n and lam unknown to the compiler, as the driver calls it.
    auto* volatile kernel = &sk::avx512::process_block<float>;
    volatile float lam_in = 1e-3f;
    const float lam = lam_in;
    const long calls = std::max(1L, 8000L / m);
    std::vector<double> rates;
    double best = 1e30;
    for (int round = 0; round < 15; ++round) {
        const double ghz0 = softshare_clock_ghz(1, 1);
        double t_round = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            const auto t0 = std::chrono::steady_clock::now();
            for (long k = 0; k < calls; ++k) {
                const long b = k % nb;
                kernel(comp, w.data() + b * n, g.data() + b * n, nullptr, n, lam, partial.data(),
                       scratch);
            }
            const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
            t_round = std::min(t_round, dt.count() / calls);
        }
        const double ghz = 0.5 * (ghz0 + softshare_clock_ghz(1, 1));
        rates.push_back(double(n) * m / (t_round * ghz * 1e9));
        best = std::min(best, t_round);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("%d %ld %.3f %.4f %.4f %.4f\n", m, nb, best * 1e6, rates[7], rates[0], rates[14]);
    return 0;
}
