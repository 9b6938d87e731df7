//! The decorator's wrapper (`@bytecache.memoize`): the object code holds in
//! place of the memoized function. Its calls are `hook::decorator`'s, its
//! Python face `py::memoized`'s; this is its data, here so that a
//! fingerprint reaching a memoized function sees what the wrapper runs (the
//! function it holds, which `__wrapped__` only names) and the parameters its
//! key leaves out.
use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;

use super::Memo;

/// `Memoized` instances. `#[repr(C)]` with the vectorcall first: CPython
/// reads it at the type's `tp_vectorcall_offset` (see `py::memoized`).
#[pyclass(
    name = "Memoized",
    module = "bytecache._bytecache",
    frozen,
    dict,
    weakref
)]
#[repr(C)]
pub struct Wrapper {
    /// `hook::decorator::vectorcall`.
    pub vectorcall: Option<ffi::vectorcallfunc>,
    /// The memoized function (a Python function; held strongly, as
    /// `functools.wraps` holds `__wrapped__`).
    pub func: Py<PyAny>,
    /// Its plan and kept results (shared with `target.memo`).
    pub memo: Arc<Memo>,
    /// `bytecache._core.Target`.
    pub target: Py<PyAny>,
    /// `begin(arguments, key, absent)`: the full path of a call no kept result
    /// answered: `None` (run the function), `(value,)` (a hit) or a
    /// `_core.Miss` (run it, then `commit` or `abort`).
    pub begin: Py<PyAny>,
    /// `BYTECACHE=off` at start-up: every call runs the function.
    pub off: bool,
}

impl Wrapper {
    /// The parameter names its key leaves out.
    pub fn ignore(&self) -> &[String] {
        self.memo.ignore()
    }
}
