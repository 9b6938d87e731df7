//! `PyFunctionObject`: its parts read from the struct, its vectorcall, and
//! function watchers (3.12+).

use std::ffi::c_int;

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFunction};

/// A function's parts, read from its struct: the `__code__`, `__defaults__`
/// and `__kwdefaults__` getters raise an `object.__getattr__` audit event,
/// which would call every audit hook (ours included) on every read.
pub struct FunctionParts<'py> {
    pub code: Bound<'py, PyAny>,
    pub globals: Bound<'py, PyAny>,
    pub builtins: Option<Bound<'py, PyAny>>,
    /// `None` (Python's `None`) when absent, as the attributes read.
    pub defaults: Bound<'py, PyAny>,
    pub kwdefaults: Bound<'py, PyAny>,
    pub closure: Bound<'py, PyAny>,
    /// Its `__dict__`, if it has one (reading `f.__dict__` would create one).
    pub dict: Option<Bound<'py, PyDict>>,
    /// Its annotations, if any: a dict, or the flat `(name, value, ...)`
    /// tuple the interpreter stores until `__annotations__` is first read.
    pub annotations: Option<Bound<'py, PyAny>>,
    /// `__qualname__`, for messages and the dependency record.
    pub qualname: Bound<'py, PyAny>,
}

#[inline(always)]
fn raw(f: *mut PyObject) -> *mut ffi::PyFunctionObject {
    f.cast()
}

/// A new reference to `p`, or `None` for NULL.
///
/// # Safety
/// GIL held; `p` is NULL or a live object.
unsafe fn owned<'py>(py: Python<'py>, p: *mut PyObject) -> Option<Bound<'py, PyAny>> {
    // SAFETY: forwarded.
    unsafe { Bound::from_borrowed_ptr_or_opt(py, p) }
}

pub fn function_parts<'py>(f: &Bound<'py, PyFunction>) -> FunctionParts<'py> {
    let py = f.py();
    let none = || py.None().into_bound(py);
    // SAFETY: `f` is a live function (type checked by the cast that produced
    // the `Bound<PyFunction>`, so it has pyo3-ffi's `PyFunctionObject` layout
    // for this version); each field is NULL or a borrowed reference, which
    // `owned` turns into a new one.
    unsafe {
        let o = &*raw(f.as_ptr());
        let [code, defaults, kwdefaults, dict, annotations] = slots(f.as_ptr());
        FunctionParts {
            code: owned(py, code).unwrap_or_else(none),
            globals: owned(py, o.func_globals).unwrap_or_else(none),
            builtins: owned(py, o.func_builtins),
            defaults: owned(py, defaults).unwrap_or_else(none),
            kwdefaults: owned(py, kwdefaults).unwrap_or_else(none),
            closure: owned(py, o.func_closure).unwrap_or_else(none),
            dict: owned(py, dict).and_then(|d| d.cast_into::<PyDict>().ok()),
            annotations: owned(py, annotations),
            qualname: owned(py, o.func_qualname).unwrap_or_else(none),
        }
    }
}

/// A function's `__globals__` (a new reference), read alone: the scan of a
/// library's modules asks only this of each function, and the other parts'
/// reference counts are a cache miss each on a first call.
pub fn function_globals<'py>(f: &Bound<'py, PyFunction>) -> Bound<'py, PyAny> {
    // SAFETY: `f` is a live function (see `function_parts`); `func_globals`
    // is set by every constructor and never cleared while the function
    // lives: a borrowed reference, made a new one.
    unsafe { Bound::from_borrowed_ptr(f.py(), (*raw(f.as_ptr())).func_globals) }
}

/// A function's `__code__` (a new reference), read alone.
pub fn function_code<'py>(f: &Bound<'py, PyFunction>) -> Bound<'py, PyAny> {
    // SAFETY: as for `function_globals`: `func_code` is never NULL (its
    // setter refuses deletion).
    unsafe { Bound::from_borrowed_ptr(f.py(), (*raw(f.as_ptr())).func_code) }
}

/// A function's mutable slots (borrowed): `__code__`, `__defaults__`,
/// `__kwdefaults__`, `__dict__`, `__annotations__`.
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
#[inline]
pub unsafe fn slots(f: *mut PyObject) -> [*mut PyObject; 5] {
    // SAFETY: forwarded.
    unsafe {
        let f = &*raw(f);
        [
            f.func_code,
            f.func_defaults,
            f.func_kwdefaults,
            f.func_dict,
            f.func_annotations,
        ]
    }
}

/// The content of each closure cell (borrowed, NULL for an empty cell; a
/// closure item that is not a cell stands for itself), passed to `each` in
/// order; returns the number of items.
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
pub unsafe fn cell_contents(f: *mut PyObject, mut each: impl FnMut(*mut PyObject)) -> usize {
    // SAFETY: forwarded; `func_closure` is NULL or a tuple of cells.
    unsafe {
        let closure = (*raw(f)).func_closure;
        if closure.is_null() || ffi::PyTuple_Check(closure) == 0 {
            return 0;
        }
        let n = ffi::PyTuple_GET_SIZE(closure);
        for i in 0..n {
            let cell = ffi::PyTuple_GET_ITEM(closure, i);
            each(if ffi::PyCell_Check(cell) == 0 {
                cell
            } else {
                (*cell.cast::<ffi::PyCellObject>()).ob_ref
            });
        }
        usize::try_from(n).unwrap_or(0)
    }
}

/// `__code__` (borrowed).
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
#[inline]
pub unsafe fn code(f: *mut PyObject) -> *mut PyObject {
    // SAFETY: forwarded.
    unsafe { (*raw(f)).func_code }
}

/// `__defaults__` (borrowed; NULL or a tuple).
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
#[inline]
pub unsafe fn defaults(f: *mut PyObject) -> *mut PyObject {
    // SAFETY: forwarded.
    unsafe { (*raw(f)).func_defaults }
}

/// `__kwdefaults__` (borrowed; NULL or a dict).
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
#[inline]
pub unsafe fn kwdefaults(f: *mut PyObject) -> *mut PyObject {
    // SAFETY: forwarded.
    unsafe { (*raw(f)).func_kwdefaults }
}

// ---------------------------------------------------------------------------
// Vectorcall
// ---------------------------------------------------------------------------

/// The function's vectorcall.
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
#[inline]
pub unsafe fn vectorcall(f: *mut PyObject) -> Option<ffi::vectorcallfunc> {
    // SAFETY: forwarded.
    unsafe { (*raw(f)).vectorcall }
}

/// Replaces the function's vectorcall. From 3.12 this also clears its
/// `func_version`, so no call site specializes on (and inlines) it.
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`; `vc` preserves the behaviour
/// of the default vectorcall (CPython's rule for this API).
pub unsafe fn set_vectorcall(f: *mut PyObject, vc: ffi::vectorcallfunc) {
    #[cfg(Py_3_12)]
    // SAFETY: forwarded.
    unsafe {
        PyFunction_SetVectorcall(raw(f), vc)
    };
    #[cfg(not(Py_3_12))]
    // SAFETY: forwarded; 3.11 has no setter and no version to clear.
    unsafe {
        (*raw(f)).vectorcall = Some(vc)
    };
}

/// The vectorcall CPython gives every new Python function
/// (`_PyFunction_Vectorcall`, not exported on 3.13), read from one.
pub fn default_vectorcall(py: Python<'_>) -> Option<ffi::vectorcallfunc> {
    static DEFAULT: PyOnceLock<Option<usize>> = PyOnceLock::new();
    let p = (*DEFAULT.get_or_init(py, || {
        let f = py.eval(c"lambda: None", None, None).ok()?;
        let f = f.cast_into::<PyFunction>().ok()?;
        // SAFETY: `f` is a live function we hold.
        unsafe { vectorcall(f.as_ptr()) }.map(|vc| vc as usize)
    }))?;
    // SAFETY: `p` was read from a `vectorcallfunc` field just above.
    Some(unsafe { std::mem::transmute::<usize, ffi::vectorcallfunc>(p) })
}

// ---------------------------------------------------------------------------
// Function watchers (3.12+)
// ---------------------------------------------------------------------------

/// `PyFunction_WatchEvent` values (the two `MODIFY_*DEFAULTS` events are
/// not used).
pub mod event {
    use std::ffi::c_int;
    pub const CREATE: c_int = 0;
    pub const DESTROY: c_int = 1;
    pub const MODIFY_CODE: c_int = 2;
}

/// `PyFunction_WatchCallback`: `(event, func, new_value)`; `func` and
/// `new_value` are borrowed. A callback that returns -1 with an exception
/// set has it reported as unraisable; it never reaches the program.
pub type WatchCallback =
    unsafe extern "C" fn(event: c_int, func: *mut PyObject, new_value: *mut PyObject) -> c_int;

#[cfg(Py_3_12)]
extern "C" {
    fn PyFunction_SetVectorcall(f: *mut ffi::PyFunctionObject, vc: ffi::vectorcallfunc);
    fn PyFunction_AddWatcher(cb: WatchCallback) -> c_int;
    fn PyFunction_ClearWatcher(id: c_int) -> c_int;
}

/// Registers `cb` for every function of the interpreter; its watcher id, or
/// `None` when all eight slots are taken or the version has no watchers.
pub fn add_watcher(_py: Python<'_>, cb: WatchCallback) -> Option<c_int> {
    #[cfg(Py_3_12)]
    {
        // SAFETY: GIL held (`_py`); `cb` stays valid (a static function).
        let id = unsafe { PyFunction_AddWatcher(cb) };
        if id < 0 {
            // SAFETY: GIL held; the failure set an exception.
            unsafe { ffi::PyErr_Clear() };
            return None;
        }
        Some(id)
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = cb;
        None
    }
}

/// Unregisters the watcher `id` returned by [`add_watcher`].
pub fn clear_watcher(_py: Python<'_>, id: c_int) {
    #[cfg(Py_3_12)]
    // SAFETY: GIL held (`_py`); an invalid id only sets an exception.
    unsafe {
        if PyFunction_ClearWatcher(id) != 0 {
            ffi::PyErr_Clear();
        }
    }
    #[cfg(not(Py_3_12))]
    let _ = id;
}
