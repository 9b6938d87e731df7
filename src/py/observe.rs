//! Python API of the observer (`bytecache._bytecache.observe_*`);
//! `python/bytecache/_observe.py` builds on it.
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::observe::{self, Mode, Refused};

/// Sets the context variable that marks observed contexts and the handler
/// `handler(recorders, tag, self, args, kwargs, result, error)`.
#[pyfunction]
fn observe_install(var: &Bound<'_, PyAny>, handler: &Bound<'_, PyAny>) {
    observe::install(var, handler);
}

/// Watches a builtin function or method descriptor. `before=True`: the
/// handler is called before the call and returns a replacement for its
/// first argument (or None). Returns None when watched, else why not.
#[pyfunction]
#[pyo3(signature = (func, tag, before = false))]
fn observe_watch(
    func: &Bound<'_, PyAny>,
    tag: &Bound<'_, PyAny>,
    before: bool,
) -> PyResult<Option<&'static str>> {
    let mode = if before {
        Mode::WrapFirst
    } else {
        Mode::Notify
    };
    Ok(match observe::watch(func, tag, mode) {
        Ok(()) => None,
        Err(Refused::NotBuiltin) => {
            return Err(PyValueError::new_err(
                "not a builtin function or method descriptor",
            ))
        }
        Err(Refused::Convention) => Some("unsupported calling convention"),
        Err(Refused::ReadOnly) => Some("its method definition is read-only"),
        Err(Refused::Full) => Some("no free slot"),
    })
}

/// Stops watching every function.
#[pyfunction]
fn observe_unwatch_all(py: Python<'_>) {
    observe::unwatch_all(py);
}

/// Enters (`True`) or leaves (`False`) bytecache's own work on this thread:
/// watched calls made there are not reported.
#[pyfunction]
fn observe_internal(on: bool) {
    observe::set_internal(on);
}

/// True inside bytecache's own work on this thread.
#[pyfunction]
fn observe_is_internal() -> bool {
    observe::is_internal()
}

/// The raw state of a generator: `kind` "random" (a `_random.Random`
/// instance) or "mt19937" (numpy's MT19937 bit generator).
#[pyfunction]
fn observe_rng_state<'py>(
    obj: &Bound<'py, PyAny>,
    kind: &str,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let raw = match kind {
        "random" => observe::rng::random_state(obj)?,
        "mt19937" => observe::rng::mt19937_state(obj)?,
        _ => return Err(PyValueError::new_err("kind is 'random' or 'mt19937'")),
    };
    Ok(pyo3::types::PyBytes::new(obj.py(), &raw))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(observe_install, m)?)?;
    m.add_function(wrap_pyfunction!(observe_watch, m)?)?;
    m.add_function(wrap_pyfunction!(observe_unwatch_all, m)?)?;
    m.add_function(wrap_pyfunction!(observe_internal, m)?)?;
    m.add_function(wrap_pyfunction!(observe_rng_state, m)?)?;
    m.add_function(wrap_pyfunction!(observe_is_internal, m)?)?;
    Ok(())
}
