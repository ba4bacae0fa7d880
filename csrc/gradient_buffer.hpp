// The gradient-buffer recycler: grad_w's memory, when it is large, reused from the last freed one.
//
// For the penalty bindings (bind_penalty.cpp). Every access holds the GIL.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace softshare {
namespace bind {

namespace py = pybind11;

// grad_w's memory, when it is large. A fresh large array costs the system's
// zeroing of each page on first touch: at 1e7 float32 weights (40 MB) some
// 5-10 ms, as much as the whole pass at small M. So from kSpareMinBytes on,
// grad_w is a view of a NumPy byte array held by a capsule (the view's base);
// when the view and every view of it are gone, the capsule's destructor keeps
// that byte array as the spare, replacing (and so freeing) the previous one,
// and the next request of the same size takes it. A loop that rebinds its
// result (r = penalty(...)) frees the previous gradient after the next call
// made its own, so one spare is enough for it to alternate between two
// buffers. Every access holds the GIL (array deallocation included).
inline constexpr std::size_t kSpareMinBytes = std::size_t{1} << 20;
inline PyObject* g_spare_gradient = nullptr;  // a strong reference, or none

// A fresh, uninitialised array of dtype and shape for grad_w (the spare's
// memory when it has the size).
inline py::array gradient_array(const py::dtype& dtype, std::vector<py::ssize_t> shape) {
    py::ssize_t bytes = dtype.itemsize();
    for (const py::ssize_t d : shape) bytes *= d;
    if (static_cast<std::size_t>(bytes) < kSpareMinBytes) {
        return py::array(dtype, std::move(shape));
    }
    py::array buffer;
    if (g_spare_gradient != nullptr &&
        py::reinterpret_borrow<py::array>(g_spare_gradient).nbytes() == bytes) {
        buffer = py::reinterpret_steal<py::array>(std::exchange(g_spare_gradient, nullptr));
    } else {
        buffer = py::array(py::dtype::of<std::uint8_t>(), std::vector<py::ssize_t>{bytes});
    }
    void* const data = buffer.mutable_data();
    static constexpr char kName[] = "softshare gradient buffer";
    PyObject* const cap = PyCapsule_New(buffer.ptr(), kName, [](PyObject* self) {
        PyObject* const spare = static_cast<PyObject*>(PyCapsule_GetPointer(self, kName));
        Py_XDECREF(std::exchange(g_spare_gradient, spare));
    });
    if (cap == nullptr) throw py::error_already_set();
    const auto owner = py::reinterpret_steal<py::object>(cap);
    buffer.release();  // the capsule holds the reference now
    return py::array(dtype, std::move(shape), data, owner);
}

}  // namespace bind
}  // namespace softshare
