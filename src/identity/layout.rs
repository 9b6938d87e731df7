//! Raw reads of how an instance is laid out, for hashing it by its true
//! state: whether a class was made by a `class` statement (its instances'
//! own state is then their `__dict__` and slots), and an instance's
//! `__dict__` read without running any attribute hook.
use pyo3::exceptions::PyAttributeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// `tp_dealloc` of classes made by `class` statements (`subtype_dealloc`),
/// read once from a class made for the purpose.
static CLASS_STATEMENT_DEALLOC: PyOnceLock<usize> = PyOnceLock::new();

/// The address in slot `slot` of `t` (0 when empty).
fn slot(t: &Bound<'_, PyType>, slot: std::ffi::c_int) -> usize {
    // SAFETY: `t` is a live type object (borrowed) and the GIL is held;
    // `PyType_GetSlot` accepts static and heap types (3.10+) and only reads
    // the slot: nothing runs, and the address is only compared.
    unsafe { ffi::PyType_GetSlot(t.as_type_ptr(), slot) as usize }
}

fn dealloc(t: &Bound<'_, PyType>) -> usize {
    slot(t, ffi::Py_tp_dealloc)
}

/// Whether instances of `t` can be called (`tp_call` is set).
pub fn instances_callable(t: &Bound<'_, PyType>) -> bool {
    slot(t, ffi::Py_tp_call) != 0
}

/// Whether `t` was made by a `class` statement, so that all its instances
/// add to their bases' state is in their `__dict__` and slots. Native types
/// (built in, or from extension modules, which bring a deallocator of their
/// own for their C fields) are not.
pub fn class_statement(t: &Bound<'_, PyType>) -> PyResult<bool> {
    Ok(dealloc(t) == class_statement_dealloc(t.py())?)
}

/// Makes the class [`class_statement`] compares with (running Python code
/// once): from then on `class_statement` runs none.
pub fn prepare(py: Python<'_>) -> PyResult<()> {
    class_statement_dealloc(py).map(drop)
}

fn class_statement_dealloc(py: Python<'_>) -> PyResult<usize> {
    CLASS_STATEMENT_DEALLOC
        .get_or_try_init(py, || -> PyResult<usize> {
            // `type(name, bases, dict)` called, not compiled (an `eval`
            // compiled source: a sixth of a first call's keying).
            let probe = py
                .get_type::<PyType>()
                .call1(("probe", PyTuple::empty(py), PyDict::new(py)))?
                .cast_into::<PyType>()?;
            Ok(dealloc(&probe))
        })
        .copied()
}

/// The `__dict__` of `obj`, or `None` when its type gives it none. Read as
/// `object.__dict__` does, without `__getattribute__`, `__getattr__` or a
/// property named `__dict__` getting a say.
pub fn instance_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    let py = obj.py();
    // SAFETY: `obj` is a live borrowed reference and the GIL is held; the
    // call returns a new reference, or NULL with an exception set.
    let p = unsafe { ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut()) };
    if p.is_null() {
        let e = PyErr::fetch(py);
        return if e.is_instance_of::<PyAttributeError>(py) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: `p` is a non-NULL new reference, owned from here on.
    let d = unsafe { Bound::from_owned_ptr(py, p) };
    Ok(d.cast_into::<PyDict>().ok())
}
