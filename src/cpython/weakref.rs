//! Weak references: what one points to, read from its struct (no call and
//! no new reference, for the hit path).

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

/// The object `w` refers to (borrowed), or NULL once it was collected.
pub fn referent(w: &Bound<'_, PyWeakrefReference>) -> *mut PyObject {
    // SAFETY: `w` is a live weak reference (type checked by the cast that
    // made the `Bound`), so it has pyo3-ffi's `_PyWeakReference` layout;
    // `wr_object` is the referent, or `None` once it died (GIL held).
    let p = unsafe { (*w.as_ptr().cast::<ffi::_PyWeakReference>()).wr_object };
    // SAFETY: reading the address of the `None` singleton.
    if p == unsafe { ffi::Py_None() } {
        std::ptr::null_mut()
    } else {
        p
    }
}
