//! Type objects: the fields a class's guard reads, and the vectorcall
//! of our own callable type.

use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// `tp_bases` (borrowed; a tuple once the type is ready).
pub fn bases(t: &Bound<'_, PyType>) -> *mut PyObject {
    // SAFETY: `t` is a live type object; reading a field needs the GIL,
    // which the `Bound` proves.
    unsafe { (*t.as_type_ptr()).tp_bases }
}

/// Whether `t` is a static type (not allocated on the heap): a builtin or
/// an extension's type, alive as long as the process and never changed
/// (its `__module__` cannot be assigned).
pub fn is_static(t: &Bound<'_, PyType>) -> bool {
    // SAFETY: as in `bases`.
    let flags = unsafe { (*t.as_type_ptr()).tp_flags };
    flags & pyo3::ffi::Py_TPFLAGS_HEAPTYPE == 0
}

/// `tp_dict` (borrowed; NULL or a dict).
pub fn dict(t: &Bound<'_, PyType>) -> *mut PyObject {
    // SAFETY: as in `bases`.
    unsafe { (*t.as_type_ptr()).tp_dict }
}

/// Makes the instances of `t` callable through the vectorcall each holds
/// `offset` bytes from its start (`tp_vectorcall_offset`); with `method`,
/// also lets the interpreter call them as methods without binding them
/// first (`Py_TPFLAGS_METHOD_DESCRIPTOR`, as functions are).
///
/// # Safety
/// GIL held; before any instance of `t` is called; every instance of `t`
/// holds a `vectorcallfunc` (or NULL, which means `tp_call`) at `offset`;
/// `t` has a `tp_call` that behaves like it and no subclasses; with
/// `method`, calling an instance as `descr(obj, *args)` behaves like
/// `descr.__get__(obj, type(obj))(*args)`.
pub unsafe fn enable_vectorcall(t: &Bound<'_, PyType>, offset: usize, method: bool) {
    use pyo3::ffi;
    let tp = t.as_type_ptr();
    // SAFETY: `tp` is a live type object (GIL held); these are plain fields,
    // read by the interpreter on each call (nothing caches them before an
    // instance is called: caller); `PyType_Modified` drops what the
    // attribute cache and specializations keyed on the old type version.
    unsafe {
        (*tp).tp_vectorcall_offset = offset as ffi::Py_ssize_t;
        (*tp).tp_flags |= ffi::Py_TPFLAGS_HAVE_VECTORCALL;
        if method {
            (*tp).tp_flags |= ffi::Py_TPFLAGS_METHOD_DESCRIPTOR;
        }
        ffi::PyType_Modified(tp);
    }
}
