// softshare._core's module definition: the runtime's functions, and each binding file's register_*.
//
// softshare._core is the thin pybind11 layer over the Python-free kernel, one
// file a job: the penalty over NumPy arrays (bind_penalty.cpp), over raw
// addresses (bind_raw.cpp), the testing hooks (bind_hooks.cpp), the
// compression recipe (bind_recipe.cpp), the file's entropy coder
// (bind_codec.cpp) and softshare.jax's handler (bind_jax.cpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "softshare/dispatch.hpp"
#include "softshare/runtime.hpp"
#include "softshare/types.hpp"

namespace py = pybind11;
namespace sk = softshare::kernel;

// penalty and penalty_array (bind_penalty.cpp).
void register_penalty(py::module_& mod);
// penalty_raw (bind_raw.cpp).
void register_raw(py::module_& mod);
// The testing hooks _vmath and _grouping (bind_hooks.cpp).
void register_hooks(py::module_& mod);
// The compression recipe's functions (bind_recipe.cpp).
void register_recipe(py::module_& mod);
// The compressed model file's entropy coder (bind_codec.cpp).
void register_codec(py::module_& mod);
// The XLA FFI handler's capsule for softshare.jax (bind_jax.cpp).
void register_jax(py::module_& mod);

PYBIND11_MODULE(_core, mod) {
    mod.doc() = "softshare's compiled kernel (private: use the softshare package).";
    // Processes forked from here on run the pass on one thread (runtime.hpp).
    sk::install_fork_guard();
    register_penalty(mod);
    register_raw(mod);
    mod.def("has_openmp", &sk::has_openmp, "Whether the kernel was built with OpenMP.");
    mod.def("default_threads", &sk::default_threads,
            "Threads OpenMP uses by default (OMP_NUM_THREADS), 1 without OpenMP.");
    mod.def(
        "simd_target", [] { return std::string(sk::active_table().name); },
        "The instruction set of the kernels in use.");
    mod.def("simd_targets", &sk::supported_targets,
            "The instruction sets this build has and this CPU runs, lowest first.");
    mod.def("set_simd_target", &sk::set_target, py::arg("name"),
            "Use the kernels of one supported instruction set (ValueError otherwise).");
    register_hooks(mod);
    mod.attr("block_size") = sk::kBlockSize;

    register_codec(mod);
    register_recipe(mod);
    register_jax(mod);
}
