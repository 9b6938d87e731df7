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

/// Begins observing the files native code opens (in every thread) for a
/// miss; returns its start in the log, or raises `OSError` saying why they
/// cannot be observed on this platform.
#[pyfunction]
fn observe_native_begin() -> PyResult<usize> {
    observe::native_io::begin().map_err(pyo3::exceptions::PyOSError::new_err)
}

/// Ends an observation begun at `start`: `([(path, flags, state), ...],
/// complete)`, `state` being `(S_IFMT, size, mtime_ns)` at open or None when
/// the open failed; `complete` is False when some opens could not be logged.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn observe_native_end(
    py: Python<'_>,
    start: usize,
) -> (
    Vec<(
        Bound<'_, pyo3::types::PyBytes>,
        i32,
        Option<(u32, i64, i64)>,
    )>,
    bool,
) {
    let (opened, complete) = observe::native_io::end(start);
    let out = opened
        .into_iter()
        .map(|o| (pyo3::types::PyBytes::new(py, &o.path), o.flags, o.state))
        .collect();
    (out, complete)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The `flags` of a logged getenv in `observe_native_end` (its path is the name).
    m.add("OBSERVE_NATIVE_GETENV", observe::native_io::GETENV)?;
    m.add_function(wrap_pyfunction!(observe_native_begin, m)?)?;
    m.add_function(wrap_pyfunction!(observe_native_end, m)?)?;
    m.add_function(wrap_pyfunction!(observe_install, m)?)?;
    m.add_function(wrap_pyfunction!(observe_watch, m)?)?;
    m.add_function(wrap_pyfunction!(observe_unwatch_all, m)?)?;
    m.add_function(wrap_pyfunction!(observe_internal, m)?)?;
    m.add_function(wrap_pyfunction!(observe_rng_state, m)?)?;
    m.add_function(wrap_pyfunction!(observe_is_internal, m)?)?;
    Ok(())
}
