// What this build offers at run time besides the SIMD target (dispatch.hpp):
// OpenMP, its default thread count, and the fork guard. Python-free; baseline
// translation units only (the driver and the bindings), never kernel_isa.cpp.
#pragma once

#include <atomic>

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
