//! Low-level Python API of call interception (`bytecache._bytecache.hook_*`).
//! `python/bytecache/_auto.py` builds `enable()`/`disable()` on it. No panic
//! crosses into Python from here (`errors::no_panic`).
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

use super::errors::no_panic;
use crate::hook::{self, InstallError};

/// Start intercepting calls with three callbacks (replaces earlier ones).
///
/// * `should_mark(func) -> bool`: asked once per code object (cached in
///   `co_extra` until the callbacks change or `hook_reset_marks()`), only for
///   plain functions and lambdas (never generators, coroutines, async
///   generators, module/class bodies, comprehensions or `exec` code). On
///   3.12+ it is asked when a function is created (or handed to
///   `hook_adopt`), so it must not assume the function was called.
/// * `on_call(func, args)`: for each call of a marked function; `args` holds
///   the bound parameters in `co_varnames` order (defaults and keywords
///   applied), then the `*args` tuple and the `**kwargs` dict; closure cells
///   are not included. Returns `None` (run normally), an exact 1-tuple
///   `(value,)` (hit: return `value`, the body does not run) or any other
///   object as a token (miss: run, then `on_return(token, result)` if the call
///   returned; nothing if it raised). A token must not be an exact 1-tuple.
///
/// Callbacks run with interception disabled on their thread. An `Exception`
/// they raise is reported through `sys.unraisablehook` and the call runs
/// normally; `KeyboardInterrupt`/`SystemExit` reaches the program (raised
/// from the intercepted call, or, for `should_mark` on 3.12+, at the next
/// instruction of the main thread). Raises `RuntimeError` on interpreters
/// where calls cannot be intercepted.
#[pyfunction]
fn hook_install(
    py: Python<'_>,
    should_mark: Bound<'_, PyAny>,
    on_call: Bound<'_, PyAny>,
    on_return: Bound<'_, PyAny>,
) -> PyResult<()> {
    no_panic(|| {
        hook::install(py, should_mark, on_call, on_return).map_err(|e| match e {
            InstallError::Unsupported(msg) => PyRuntimeError::new_err(msg),
            InstallError::NotCallable(name) => {
                PyTypeError::new_err(format!("{name} must be callable"))
            }
        })
    })
}

/// Remove the callbacks: restore the previous eval function (3.11) or every
/// replaced vectorcall (3.12+).
#[pyfunction]
fn hook_uninstall(py: Python<'_>) -> PyResult<()> {
    no_panic(|| {
        hook::uninstall(py);
        Ok(())
    })
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

/// How calls are intercepted here: `"frame"` (a PEP 523 hook sees every
/// frame; 3.11) or `"vectorcall"` (marked functions get their own
/// vectorcall; 3.12+, where functions that exist before `hook_install` must
/// be handed to `hook_adopt`).
#[pyfunction]
fn hook_mechanism() -> &'static str {
    hook::mechanism()
}

/// Intercept `func`, a function that existed before `hook_install`, when
/// `should_mark` marks it; returns whether it is intercepted. (Always False
/// with the frame mechanism, which needs no help.)
#[pyfunction]
fn hook_adopt(py: Python<'_>, func: Bound<'_, PyAny>) -> PyResult<bool> {
    no_panic(|| {
        hook::adopt(&func).map_err(|hook::Interrupted| {
            PyErr::take(py).unwrap_or_else(|| PyRuntimeError::new_err("interrupted"))
        })
    })
}

/// Every private CPython offset this build assumes, as `{"struct.field":
/// offset}` (compared with the interpreter's headers by the layout test).
#[pyfunction]
fn _cpython_layout() -> Vec<(&'static str, usize)> {
    crate::cpython::offsets()
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hook_install, m)?)?;
    m.add_function(wrap_pyfunction!(hook_uninstall, m)?)?;
    m.add_function(wrap_pyfunction!(hook_installed, m)?)?;
    m.add_function(wrap_pyfunction!(hook_reset_marks, m)?)?;
    m.add_function(wrap_pyfunction!(hook_mechanism, m)?)?;
    m.add_function(wrap_pyfunction!(hook_adopt, m)?)?;
    m.add_function(wrap_pyfunction!(_cpython_layout, m)?)?;
    Ok(())
}
