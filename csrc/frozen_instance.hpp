// A frozen dataclass instance made from C++: object.__new__, then its fields set in order.
//
// For softshare._core.penalty_array (bind_penalty.cpp), which returns a
// PenaltyResult (python/softshare/_result.py) without calling into Python.
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>

namespace softshare {
namespace bind {

namespace py = pybind11;

// cls as a type object.__new__ may make (a Python class that does not override
// __new__), else TypeError.
inline PyTypeObject* plain_class(const py::handle& cls) {
    auto* type = PyType_Check(cls.ptr()) ? reinterpret_cast<PyTypeObject*>(cls.ptr()) : nullptr;
    if (type == nullptr || (type->tp_flags & Py_TPFLAGS_HEAPTYPE) == 0 ||
        type->tp_new != PyBaseObject_Type.tp_new) {
        throw py::type_error("result_type must be a class object.__new__ makes");
    }
    return type;
}

// An instance of the frozen dataclass type with these fields, as
// python/softshare/_result.py's _frozen makes it: object.__new__(type), then
// each field set as object.__setattr__ does, in the class's field order.
inline py::object frozen_instance(PyTypeObject* type, PyObject* const* names,
                                  const py::object* values, std::size_t count) {
    const py::tuple no_args(0);
    py::object obj =
        py::reinterpret_steal<py::object>(PyBaseObject_Type.tp_new(type, no_args.ptr(), nullptr));
    if (!obj) throw py::error_already_set();
    for (std::size_t k = 0; k < count; ++k) {
        if (PyObject_GenericSetAttr(obj.ptr(), names[k], values[k].ptr()) != 0) {
            throw py::error_already_set();
        }
    }
    return obj;
}

}  // namespace bind
}  // namespace softshare
