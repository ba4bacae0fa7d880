/* The core clock under vector load, for benchmarks/_cycles.py (a measurement
 * aid, never part of the package).
 *
 * softshare_clock_ghz(threads, wide) runs, on `threads` OpenMP threads at
 * once, a chain of dependent integer additions (one cycle each on every
 * x86-64 core since the Pentium Pro; register operands, so no renamer folds
 * them) interleaved with independent 512-bit (wide = 1) or 256-bit FMAs
 * (wide = 0) that keep the core at the frequency a vector kernel runs at,
 * and returns the highest of the threads' clocks in GHz. Each thread reports
 * the best of five short chains: time the host takes from a VM's core only
 * ever makes a chain look slower (a clock read too low would overstate the
 * pairs per cycle of a benchmark divided by it, as one early run's 100 % of
 * the limit did), and the highest clock makes the pairs per cycle a lower
 * bound. x86-64 only. */
#include <omp.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define ADD4 "add %1,%0\n\tadd %1,%0\n\tadd %1,%0\n\tadd %1,%0\n\t"
#define ADD40 ADD4 ADD4 ADD4 ADD4 ADD4 ADD4 ADD4 ADD4 ADD4 ADD4
/* 40 FMAs on 8 independent registers: 20 cycles at two a cycle, and 5 deep
 * (20 cycles of latency): never longer than the 40-cycle chain they sit in. */
#define FMA(r, k) "vfmadd213ps %%" r "30,%%" r "31,%%" r #k "\n\t"
#define FMA8(r) FMA(r, 0) FMA(r, 1) FMA(r, 2) FMA(r, 3) FMA(r, 4) FMA(r, 5) FMA(r, 6) FMA(r, 7)
#define FMA40(r) FMA8(r) FMA8(r) FMA8(r) FMA8(r) FMA8(r)

__attribute__((target("avx512f"))) static double chain_zmm(long iters) {
    long x = 1, y = 1;
    __asm__ volatile("vxorps %%zmm30,%%zmm30,%%zmm30\n\tvxorps %%zmm31,%%zmm31,%%zmm31" ::
                         : "xmm30", "xmm31");
    const double t0 = now();
    for (long i = 0; i < iters; ++i) {
        __asm__ volatile(ADD40 FMA40("zmm")
                         : "+r"(x)
                         : "r"(y)
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
    }
    return 40.0 * (double)iters / (now() - t0) / 1e9;
}

__attribute__((target("avx2,fma"))) static double chain_ymm(long iters) {
    long x = 1, y = 1;
    __asm__ volatile("vxorps %%ymm14,%%ymm14,%%ymm14\n\tvxorps %%ymm15,%%ymm15,%%ymm15" ::
                         : "xmm14", "xmm15");
    const double t0 = now();
    for (long i = 0; i < iters; ++i) {
        __asm__ volatile(ADD40
                         "vfmadd213ps %%ymm14,%%ymm15,%%ymm0\n\tvfmadd213ps %%ymm14,%%ymm15,%%ymm1\n\t"
                         "vfmadd213ps %%ymm14,%%ymm15,%%ymm2\n\tvfmadd213ps %%ymm14,%%ymm15,%%ymm3\n\t"
                         : "+r"(x) : "r"(y) : "xmm0", "xmm1", "xmm2", "xmm3");
    }
    return 40.0 * (double)iters / (now() - t0) / 1e9;
}

double softshare_clock_ghz(int threads, int wide) {
    double highest = 0.0;
#pragma omp parallel num_threads(threads) reduction(max : highest)
    {
        const long iters = 100000; /* 4 million cycles: some 1.2 ms */
        (void)(wide ? chain_zmm(iters) : chain_ymm(iters)); /* warm-up */
        for (int k = 0; k < 5; ++k) {
            const double ghz = wide ? chain_zmm(iters) : chain_ymm(iters);
            highest = ghz > highest ? ghz : highest;
        }
    }
    return highest;
}
