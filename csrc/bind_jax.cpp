// softshare._core's handle on the XLA FFI handler (jax_ffi.cpp): a capsule
// that python/softshare/jax registers with jax.ffi.register_ffi_target. No
// jax or jaxlib is needed to build or import the module: the handler is
// plain C code behind XLA's C ABI.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void* softshare_jax_penalty_handler();  // jax_ffi.cpp

void register_jax(py::module_& mod) {
    mod.def(
        "jax_penalty_handler",
        [] { return py::capsule(softshare_jax_penalty_handler()); },
        "The XLA FFI handler of softshare.jax.penalty, as a PyCapsule for "
        "jax.ffi.register_ffi_target(..., platform='cpu').");
}
