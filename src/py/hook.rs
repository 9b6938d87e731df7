//! Low-level Python API of the frame hook (`bytecache._bytecache.hook_*`).
//! `python/bytecache/_auto.py` builds `enable()`/`disable()` on it.
use pyo3::prelude::*;

use crate::hook;

/// Install the PEP 523 hook with three callbacks (replaces earlier ones).
///
/// * `should_mark(func) -> bool`: asked once per code object (cached in
///   `co_extra` until the callbacks change or `hook_reset_marks()`), only for
///   plain functions and lambdas (never generators, coroutines, async
///   generators, module/class bodies, comprehensions or `exec` code).
/// * `on_call(func, args)`: for each call of a marked function; `args` holds
///   the bound parameters in `co_varnames` order (defaults and keywords
///   applied), then the `*args` tuple and the `**kwargs` dict; closure cells
///   are not included. Returns `None` (run normally), an exact 1-tuple
///   `(value,)` (hit: return `value`, the body does not run) or any other
///   object as a token (miss: run, then `on_return(token, result)` if the call
///   returned; nothing if it raised). A token must not be an exact 1-tuple.
///
/// Callbacks run with the hook disabled on their thread. An `Exception` they
/// raise is reported through `sys.unraisablehook` and the call runs normally;
/// `KeyboardInterrupt`/`SystemExit` is raised from the intercepted call.
/// Raises `RuntimeError` on interpreters the hook does not support.
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
