//! Type objects: the fields a class's guard reads.

use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// `tp_bases` (borrowed; a tuple once the type is ready).
pub fn bases(t: &Bound<'_, PyType>) -> *mut PyObject {
    // SAFETY: `t` is a live type object; reading a field needs the GIL,
    // which the `Bound` proves.
    unsafe { (*t.as_type_ptr()).tp_bases }
}

/// `tp_dict` (borrowed; NULL or a dict).
pub fn dict(t: &Bound<'_, PyType>) -> *mut PyObject {
    // SAFETY: as in `bases`.
    unsafe { (*t.as_type_ptr()).tp_dict }
}
