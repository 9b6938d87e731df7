//! Where a native callable's code starts: a C function object's method
//! definition, or the address a ctypes function pointer holds.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyType};

use super::Entry;
use crate::identity::buffer::Buffer;

/// The entry of a C function object (`builtin_function_or_method`): the
/// `ml_meth` of its method definition, which every call of it goes through.
/// (A Cython function has one too, but no test builds one yet: it is keyed
/// by its whole object.)
pub fn entry(obj: &Bound<'_, PyAny>) -> Option<Entry> {
    if !obj.is_instance_of::<PyCFunction>() {
        return None;
    }
    // SAFETY: the GIL is held (`obj` is bound) and `obj` is live for the
    // call; the definition returned is borrowed from a function object that
    // `obj` keeps alive while we read it.
    let def = unsafe { crate::cpython::methods::method_def(obj.as_ptr()).as_ref()? };
    let addr = def.ml_meth.as_ptr() as usize;
    if addr == 0 {
        return None;
    }
    Some(Entry {
        addr,
        flags: i64::from(def.ml_flags),
    })
}

/// What a ctypes function pointer is.
pub enum CtypesFunction {
    /// A loaded library's function as a `ctypes.CDLL` hands it out
    /// (`lib.name`, `lib["name"]`): the library's symbol, of the library's
    /// own pointer class, without parameter flags. Its entry is `None` for
    /// a NULL pointer.
    Exported(Option<Entry>),
    /// Anything else: a callback wrapping a Python callable, a pointer cast
    /// from an address, a prototype's function (whose parameter flags no
    /// attribute shows).
    Other,
}

/// `None` when `obj` is not a ctypes function pointer (an instance of
/// `func`, `_ctypes.CFuncPtr`; `cdll` is `ctypes.CDLL`). Reads it without
/// calling into ctypes (`ctypes.cast` would record `obj` in its `_objects`).
pub fn ctypes_function(
    obj: &Bound<'_, PyAny>,
    func: &Bound<'_, PyType>,
    cdll: &Bound<'_, PyType>,
) -> PyResult<Option<CtypesFunction>> {
    let py = obj.py();
    if !obj.is_instance(func)? {
        return Ok(None);
    }
    let other = Ok(Some(CtypesFunction::Other));
    let owner = obj
        .getattr(intern!(py, "_objects"))?
        .cast_into::<PyDict>()
        .ok()
        .and_then(|d| d.get_item("0").ok().flatten());
    let Some(owner) = owner.filter(|o| o.is_instance(cdll).unwrap_or(false)) else {
        return other;
    };
    // `CDLL.__getitem__` makes `owner._FuncPtr((name, owner))`; a prototype
    // (which may carry parameter flags) is of another class.
    let class = owner.getattr_opt(intern!(py, "_FuncPtr"))?;
    if !class.is_some_and(|c| obj.get_type().is(&c)) {
        return other;
    }
    let Some(buffer) = Buffer::get(obj) else {
        return other;
    };
    let bytes = buffer.c_bytes()?;
    let Ok(raw) = <[u8; size_of::<usize>()]>::try_from(&bytes[..]) else {
        return other;
    };
    let flags: i64 = obj.getattr(intern!(py, "_flags_"))?.extract()?;
    let addr = usize::from_ne_bytes(raw);
    Ok(Some(CtypesFunction::Exported(
        (addr != 0).then_some(Entry { addr, flags }),
    )))
}
