//! Where a native callable's code starts.
use pyo3::prelude::*;
use pyo3::types::PyCFunction;

use super::Entry;

/// The entry of a C function object (`builtin_function_or_method`).
pub fn entry(obj: &Bound<'_, PyAny>) -> Option<Entry> {
    if !obj.is_instance_of::<PyCFunction>() {
        return None;
    }
    // SAFETY: `obj` is a live PyCFunction (checked above; borrowed for the
    // call, the GIL held); both functions only read its method definition.
    let (meth, flags) = unsafe {
        (
            pyo3::ffi::PyCFunction_GetFunction(obj.as_ptr()),
            pyo3::ffi::PyCFunction_GetFlags(obj.as_ptr()),
        )
    };
    Some(Entry {
        addr: meth? as usize,
        flags: i64::from(flags),
    })
}
