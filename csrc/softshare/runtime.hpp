// What this build offers at run time besides the SIMD target (dispatch.hpp):
// OpenMP, its default thread count, the cores this process may use, and the
// fork guard. Python-free; baseline
// translation units only (the driver and the bindings), never kernel_isa.cpp.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <thread>

#if defined(__linux__)
#include <sched.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define SOFTSHARE_HAS_FORK 1
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

// Cores this process may run on, at least 1: the count of its affinity mask
// (what python/softshare's cpu_count reads, os.sched_getaffinity) where the
// system has one, else the machine's (os.cpu_count). A system call: the
// driver asks only for a pass that could use a second thread.
inline int cpu_count() {
#if defined(__linux__) && defined(CPU_ALLOC)
    cpu_set_t fixed;  // CPU_SETSIZE (1024) cores; more: a larger set, as CPython does
    CPU_ZERO(&fixed);
    if (sched_getaffinity(0, sizeof fixed, &fixed) == 0) {
        const int count = CPU_COUNT(&fixed);
        return count > 0 ? count : 1;
    }
    for (int n = 2 * CPU_SETSIZE; errno == EINVAL && n <= (1 << 20); n *= 2) {
        cpu_set_t* set = CPU_ALLOC(n);
        if (set == nullptr) break;
        const std::size_t size = CPU_ALLOC_SIZE(n);
        CPU_ZERO_S(size, set);
        const bool ok = sched_getaffinity(0, size, set) == 0;
        const int count = ok ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (ok) return count > 0 ? count : 1;
    }
#endif
    const unsigned cores = std::thread::hardware_concurrency();
    return cores > 0 ? static_cast<int>(cores) : 1;
}

// The fork guard. GNU libgomp is not fork-safe: in a child created by fork()
// after any OpenMP parallel region of the parent (ours, or torch's: it may be
// the same libgomp), the next parallel region waits forever for the parent's
// worker threads, which the child does not have. So once install_fork_guard()
// has run, every process forked from this one (and, the handler and the flag
// being inherited, every process forked from those) is marked, and run_penalty
// runs there on the calling thread only. Results are bit-identical for every
// thread count, so this changes no number.
inline std::atomic<bool> g_forked_child{false};

// Whether this process is a fork()ed child of one that had installed the guard.
inline bool in_forked_child() { return g_forked_child.load(std::memory_order_relaxed); }

// Registers the fork handler, once per process (bindings.cpp calls it when the
// module is imported).
inline void install_fork_guard() {
#ifdef SOFTSHARE_HAS_FORK
    static const int registered = pthread_atfork(nullptr, nullptr, [] {
        // In the child, single-threaded: an atomic store is async-signal-safe.
        g_forked_child.store(true, std::memory_order_relaxed);
    });
    (void)registered;
#endif
}

}  // namespace kernel
}  // namespace softshare
