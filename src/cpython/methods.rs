//! Builtin functions and method descriptors: the `PyMethodDef` behind them
//! (whose `ml_meth` every call goes through, however it is made), and the
//! generator state of `_random.Random`.
use pyo3::ffi::{self, PyObject};

/// Whether `obj` is a Cython function (`cython_function_or_method` or its
/// fused subclass), whose struct begins with a `PyCMethodObject` when
/// compiled for the full C API (as numpy and pandas are).
///
/// # Safety
/// GIL held; `obj` live.
unsafe fn is_cython_function(obj: *mut PyObject) -> bool {
    // SAFETY: `tp_name` of a live type is a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr((*ffi::Py_TYPE(obj)).tp_name) };
    let name = name.to_bytes();
    name.ends_with(b"cython_function_or_method") || name.ends_with(b"fused_cython_function")
}

/// The method definition behind a builtin function, a method descriptor or
/// a Cython function (borrowed), or NULL for anything else.
///
/// # Safety
/// GIL held; `obj` live.
pub unsafe fn method_def(obj: *mut PyObject) -> *mut ffi::PyMethodDef {
    // SAFETY: the type checks establish each struct layout before its field
    // is read (pyo3-ffi's layouts for the running version; a Cython
    // function's leading `PyCFunctionObject`, see `is_cython_function`).
    unsafe {
        if ffi::PyCFunction_Check(obj) != 0 || is_cython_function(obj) {
            return (*obj.cast::<ffi::PyCFunctionObject>()).m_ml;
        }
        let t = ffi::Py_TYPE(obj);
        if t == std::ptr::addr_of_mut!(ffi::PyMethodDescr_Type)
            || t == std::ptr::addr_of_mut!(ffi::PyClassMethodDescr_Type)
        {
            return (*obj.cast::<ffi::PyMethodDescrObject>()).d_method;
        }
    }
    std::ptr::null_mut()
}

/// Bytes of a `_random.Random`'s state: `int index; uint32_t state[624]`.
pub const RANDOM_STATE_BYTES: usize = 624 * 4 + 4;

/// The raw state of a `_random.Random` instance (CPython 3.11–3.13
/// `Modules/_randommodule.c`: `PyObject_HEAD; int index; uint32_t
/// state[624];`, no padding: both 4-byte aligned after the 16-byte header).
///
/// # Safety
/// GIL held; `obj` is a live instance of `_random.Random` (or a subclass:
/// the base struct comes first).
pub unsafe fn random_state(obj: *mut PyObject) -> Vec<u8> {
    // SAFETY: forwarded; the bytes lie inside the object's base struct.
    unsafe {
        let p = obj.cast::<u8>().add(std::mem::size_of::<ffi::PyObject>());
        std::slice::from_raw_parts(p, RANDOM_STATE_BYTES).to_vec()
    }
}
