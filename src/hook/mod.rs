//! PEP 523 frame-evaluation hook. The only module that touches CPython's
//! private frame layout; per-version accessors live in `compat.rs`.
//!
//! Safe API (all functions need the GIL, which a `Python<'_>` token proves):
//! [`install`], [`uninstall`], [`installed`], [`reset_marks`].
//!
//! State is process-global (one eval-function pointer per interpreter; we
//! support the main interpreter) and only mutated with the GIL held. The
//! callbacks are strong references kept in atomics so that the eval function
//! can read them without locking; it takes its own reference before calling
//! one, so a callback may replace or uninstall the callbacks while it runs.
//!
//! Chaining: `install` saves the eval function that was current and calls it
//! for every frame it runs (intercepted or not). `uninstall` restores it when
//! we are still the current function; if another tool installed itself on
//! top of us (and chains to us), we stay linked as a pure pass-through.

mod compat;
pub(crate) use compat::{code_parts, CodeParts, CO_FAST_LOCAL, CO_VARARGS, CO_VARKEYWORDS};
mod eval;
mod mark;
mod stack;

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

/// Callbacks (strong references, NULL when not installed).
static SHOULD_MARK: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
static ON_CALL: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
static ON_RETURN: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
/// True while callbacks are installed (the eval function intercepts).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// True while our eval function is in the interpreter's chain.
static LINKED: AtomicBool = AtomicBool::new(false);
/// The eval function we chain to (an `EvalFn` as usize; valid when LINKED).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);
/// Generation of the cached per-code decisions (see `mark.rs`).
static GENERATION: AtomicU32 = AtomicU32::new(1);
/// Our `co_extra` slot, -1 until requested.
static EXTRA_INDEX: AtomicIsize = AtomicIsize::new(-1);

/// Installs (or replaces) the callbacks and links our eval function.
///
/// * `should_mark(func) -> bool` is called once per code object (per
///   generation) for frames that pass the static filters;
/// * `on_call(func, args) -> None | (value,) | token` for each fresh call of
///   a marked function;
/// * `on_return(token, value)` after a missed call returned normally.
pub fn install(
    py: Python<'_>,
    should_mark: Bound<'_, PyAny>,
    on_call: Bound<'_, PyAny>,
    on_return: Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Err(msg) = compat::SUPPORT {
        return Err(PyRuntimeError::new_err(format!(
            "{msg} (this build: {}, running {})",
            compat::LAYOUT,
            Python::version_str()
        )));
    }
    // SAFETY: the GIL is held (`py`).
    if !unsafe { compat::in_main_interpreter() } {
        return Err(PyRuntimeError::new_err(
            "the bytecache frame hook can only be installed in the main interpreter",
        ));
    }
    for (name, cb) in [
        ("should_mark", &should_mark),
        ("on_call", &on_call),
        ("on_return", &on_return),
    ] {
        if !cb.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{name} must be callable"
            )));
        }
    }
    if EXTRA_INDEX.load(Ordering::Relaxed) < 0 {
        // SAFETY: the GIL is held (`py`).
        let index = unsafe { compat::request_code_extra_index() };
        if index < 0 {
            return Err(PyRuntimeError::new_err("no free co_extra slot"));
        }
        EXTRA_INDEX.store(index, Ordering::Relaxed);
    }
    let old = [
        SHOULD_MARK.swap(should_mark.into_ptr(), Ordering::AcqRel),
        ON_CALL.swap(on_call.into_ptr(), Ordering::AcqRel),
        ON_RETURN.swap(on_return.into_ptr(), Ordering::AcqRel),
    ];
    bump_generation();
    ACTIVE.store(true, Ordering::Release);
    if !LINKED.load(Ordering::Relaxed) {
        // SAFETY: GIL held; `eval::eval_frame` is a valid eval function
        // that chains to PREVIOUS, which is stored before it is linked.
        unsafe {
            let prev = compat::get_eval_frame();
            PREVIOUS.store(prev as usize, Ordering::Release);
            compat::set_eval_frame(eval::eval_frame);
        }
        LINKED.store(true, Ordering::Release);
    }
    release(py, old);
    Ok(())
}

/// Drops the callbacks and restores the previous eval function (when we are
/// still the current one). A no-op when not installed.
pub fn uninstall(py: Python<'_>) {
    ACTIVE.store(false, Ordering::Release);
    let old = [
        SHOULD_MARK.swap(std::ptr::null_mut(), Ordering::AcqRel),
        ON_CALL.swap(std::ptr::null_mut(), Ordering::AcqRel),
        ON_RETURN.swap(std::ptr::null_mut(), Ordering::AcqRel),
    ];
    bump_generation();
    if LINKED.load(Ordering::Relaxed) {
        // SAFETY: GIL held; PREVIOUS holds the function that was current
        // when we linked ourselves.
        unsafe {
            if compat::get_eval_frame() as usize == (eval::eval_frame as compat::EvalFn) as usize {
                compat::set_eval_frame(previous());
                LINKED.store(false, Ordering::Release);
            }
        }
    }
    release(py, old);
}

/// True while callbacks are installed.
pub fn installed() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// Forgets every cached per-code decision: `should_mark` is asked again.
pub fn reset_marks() {
    bump_generation();
}

fn bump_generation() {
    // 0 is never used so that a zeroed slot never matches.
    let g = GENERATION.load(Ordering::Relaxed).wrapping_add(1).max(1);
    GENERATION.store(g, Ordering::Release);
}

/// Drops the old callbacks (after the new ones are visible).
fn release(_py: Python<'_>, old: [*mut PyObject; 3]) {
    for p in old {
        // SAFETY: GIL held (`_py`); each non-NULL pointer is a strong
        // reference this module owned.
        unsafe { ffi::Py_XDECREF(p) };
    }
}

/// The eval function to chain to.
#[inline]
fn previous() -> compat::EvalFn {
    let p = PREVIOUS.load(Ordering::Acquire);
    if p == 0 {
        compat::default_eval()
    } else {
        // SAFETY: PREVIOUS only ever holds 0 or a value stored from an
        // `EvalFn` in `install`.
        unsafe { std::mem::transmute::<usize, compat::EvalFn>(p) }
    }
}
