//! `bytecache._bytecache.Memoized`: what `@bytecache.memoize` returns for a
//! (non-async) function. Its calls are a vectorcall (`hook::decorator`);
//! here is the rest of its Python face: made by `memoized(...)`, bound as a
//! method like a function, pickled by reference like a function, with the
//! `__dict__` that `functools.wraps` fills and `cache_info`/`cache_clear`.
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyFunction, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::identity::PyMemo;
use crate::cpython::types::enable_vectorcall;
use crate::hook::decorator;
use crate::identity::Wrapper;

extern "C" {
    /// `types.MethodType(func, obj)`: a new reference, or NULL with an
    /// exception set (the C API since 2.x; pyo3-ffi does not declare it).
    fn PyMethod_New(func: *mut ffi::PyObject, obj: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// Where CPython finds an instance's vectorcall, measured on the first
/// instance (pyo3 lays every instance of the class out alike).
static VECTORCALL_OFFSET: PyOnceLock<usize> = PyOnceLock::new();

/// The memoized `func` (a Python function): calls key their arguments and
/// answer from kept results; the rest goes to `begin(arguments, key, absent)` (see
/// `identity::Wrapper`). `target` is its `_core.Target` (its `memo` is the
/// plan and the kept results); `off`: every call runs `func`.
#[pyfunction]
#[pyo3(signature = (func, target, begin, off = false))]
fn memoized<'py>(
    func: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    begin: &Bound<'py, PyAny>,
    off: bool,
) -> PyResult<Bound<'py, Wrapper>> {
    let py = func.py();
    if !func.is_instance_of::<PyFunction>() {
        return Err(PyTypeError::new_err("memoized() needs a Python function"));
    }
    let memo = target.getattr(intern!(py, "memo"))?;
    let memo = memo.cast::<PyMemo>()?.get().shared();
    let w = Bound::new(
        py,
        Wrapper {
            vectorcall: Some(decorator::vectorcall),
            func: func.clone().unbind(),
            memo,
            target: target.clone().unbind(),
            begin: begin.clone().unbind(),
            off,
        },
    )?;
    let offset = std::ptr::addr_of!(w.get().vectorcall) as usize - w.as_ptr() as usize;
    let enabled = *VECTORCALL_OFFSET.get_or_init(py, || {
        // SAFETY: GIL held; no instance has been called yet (this is the
        // first one, not yet returned); every instance holds
        // `decorator::vectorcall` at this offset (`Wrapper` is `repr(C)`
        // with it first, inside pyo3's fixed layout for the class); the
        // class has `__call__` (the same call, through `PyVectorcall_Call`)
        // and no subclasses; `__get__` binds like a function's.
        unsafe { enable_vectorcall(&py.get_type::<Wrapper>(), offset, true) };
        offset
    });
    if enabled != offset {
        return Err(PyTypeError::new_err(
            "bytecache: inconsistent Memoized layout",
        ));
    }
    Ok(w)
}

#[pymethods]
impl Wrapper {
    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kwargs = kwargs.map_or(std::ptr::null_mut(), |k| k.as_ptr());
        // SAFETY: GIL held; all three are live (borrowed) and of the types
        // `PyVectorcall_Call` takes; it returns a new reference or NULL with
        // an exception set.
        unsafe {
            let r = ffi::PyVectorcall_Call(slf.as_ptr(), args.as_ptr(), kwargs);
            Bound::from_owned_ptr_or_err(py, r)
        }
    }

    /// Bound to an instance like a function: `obj.method` is a method.
    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        obj: Option<&Bound<'py, PyAny>>,
        owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = owner;
        match obj.filter(|o| !o.is_none()) {
            None => Ok(slf.clone().into_any()),
            // SAFETY: GIL held; both live; a new reference or NULL with an
            // exception set.
            Some(o) => unsafe {
                Bound::from_owned_ptr_or_err(slf.py(), PyMethod_New(slf.as_ptr(), o.as_ptr()))
            },
        }
    }

    /// Pickled by reference, like the function it stands for.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.getattr(intern!(slf.py(), "__qualname__"))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let name = slf
            .getattr(intern!(slf.py(), "__qualname__"))
            .and_then(|n| n.extract::<String>())
            .unwrap_or_else(|_| "?".to_owned());
        format!("<memoized function {name} at {:#x}>", slf.as_ptr() as usize)
    }

    /// Hits, misses and time saved for this function in this process.
    fn cache_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.target
            .bind(py)
            .getattr(intern!(py, "counters"))?
            .call_method0(intern!(py, "as_dict"))
    }

    /// Drop this function's stored results (all versions); how many.
    fn cache_clear<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.import(intern!(py, "bytecache._memoize"))?
            .call_method1(intern!(py, "clear_group"), (self.target.bind(py),))
    }

    /// The function's `_core.Target`.
    #[getter]
    fn __bytecache_target__<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.target.bind(py).clone()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // The memo is traversed by its owner, `target.memo`.
        visit.call(&self.func)?;
        visit.call(&self.target)?;
        visit.call(&self.begin)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Wrapper>()?;
    m.add_function(wrap_pyfunction!(memoized, m)?)?;
    Ok(())
}
