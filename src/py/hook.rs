//! Low-level Python API of the frame hook (`bytecache._bytecache.hook_*`).
//! `python/bytecache/_auto.py` builds `enable()`/`disable()` on it.
use pyo3::prelude::*;

use crate::hook;

/// Install the PEP 523 hook with three callbacks (replaces earlier ones).
///
/// `should_mark(func) -> bool` once per code object; `on_call(func, args)`
/// returns `None` (run normally), `(value,)` (hit: return value, skip the
/// frame) or a token (miss: run, then `on_return(token, result)` on success).
#[pyfunction]
fn hook_install(
    py: Python<'_>,
    should_mark: Bound<'_, PyAny>,
    on_call: Bound<'_, PyAny>,
    on_return: Bound<'_, PyAny>,
) -> PyResult<()> {
    hook::install(py, should_mark, on_call, on_return)
}

/// Remove the callbacks and restore the previous eval function.
#[pyfunction]
fn hook_uninstall(py: Python<'_>) {
    hook::uninstall(py);
}

/// True while callbacks are installed.
#[pyfunction]
fn hook_installed() -> bool {
    hook::installed()
}

/// Forget cached per-code decisions; `should_mark` is asked again.
#[pyfunction]
fn hook_reset_marks() {
    hook::reset_marks();
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hook_install, m)?)?;
    m.add_function(wrap_pyfunction!(hook_uninstall, m)?)?;
    m.add_function(wrap_pyfunction!(hook_installed, m)?)?;
    m.add_function(wrap_pyfunction!(hook_reset_marks, m)?)?;
    Ok(())
}
