//! Interception of calls of marked functions, behind `enable()`: one policy
//! (three Python callbacks) and two mechanisms, chosen by
//! `cpython::INTERCEPT`:
//!
//! * `frame.rs` — a PEP 523 frame-evaluation hook (3.11), which sees every
//!   frame;
//! * `calls.rs` — a function watcher and per-function vectorcalls (3.12+),
//!   which see only the functions of marked code (unmarked code keeps
//!   CPython's inlined calls and pays nothing).
//!
//! Both decide once per code object whether it is marked (`mark.rs`, cached
//! in `co_extra`) and consult the policy the same way (`consult.rs`).
//!
//! Safe API (all functions need the GIL, which a `Python<'_>` token proves):
//! [`install`], [`uninstall`], [`installed`], [`reset_marks`], [`adopt`].
//!
//! State is process-global (we support the main interpreter) and only
//! mutated with the GIL held. The callbacks are strong references kept in
//! atomics so that the mechanisms can read them without locking; each takes
//! its own reference before calling one, so a callback may replace or
//! uninstall the callbacks while it runs.

mod bind;
mod calls;
mod consult;
mod frame;
mod mark;
mod stack;

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicU32, Ordering};

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

use crate::cpython::{self, code, Intercept};
pub use consult::Interrupted;

/// Callbacks (strong references, NULL when not installed).
static SHOULD_MARK: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
static ON_CALL: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
static ON_RETURN: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
/// True while callbacks are installed (calls are intercepted).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Generation of the cached per-code decisions (see `mark.rs`).
static GENERATION: AtomicU32 = AtomicU32::new(1);
/// Our `co_extra` slot, -1 until requested.
static EXTRA_INDEX: AtomicIsize = AtomicIsize::new(-1);

/// Why [`install`] refused.
#[derive(Debug)]
pub enum InstallError {
    /// This interpreter or build cannot be intercepted.
    Unsupported(String),
    /// A callback is not callable (its name).
    NotCallable(&'static str),
}

/// The mechanism of this build, for messages and the policy's scan.
pub fn mechanism() -> &'static str {
    match cpython::INTERCEPT {
        Intercept::FrameHook => "frame",
        Intercept::Vectorcall => "vectorcall",
    }
}

/// Installs (or replaces) the callbacks and starts intercepting.
///
/// * `should_mark(func) -> bool` is called once per code object (per
///   generation) for functions that pass the static filters;
/// * `on_call(func, args) -> None | (value,) | token` for each call of a
///   marked function;
/// * `on_return(token, value)` after a missed call returned normally.
pub fn install(
    py: Python<'_>,
    should_mark: Bound<'_, PyAny>,
    on_call: Bound<'_, PyAny>,
    on_return: Bound<'_, PyAny>,
) -> Result<(), InstallError> {
    let unsupported = |why: &str| {
        InstallError::Unsupported(format!(
            "{why} (this build: {}, running {})",
            cpython::LAYOUT,
            Python::version_str()
        ))
    };
    cpython::SUPPORT.map_err(unsupported)?;
    // SAFETY: the GIL is held (`py`).
    if !unsafe { cpython::in_main_interpreter() } {
        return Err(unsupported(
            "bytecache can only intercept calls in the main interpreter",
        ));
    }
    for (name, cb) in [
        ("should_mark", &should_mark),
        ("on_call", &on_call),
        ("on_return", &on_return),
    ] {
        if !cb.is_callable() {
            return Err(InstallError::NotCallable(name));
        }
    }
    if EXTRA_INDEX.load(Ordering::Relaxed) < 0 {
        let index = code::request_extra_index(py, None)
            .ok_or_else(|| unsupported("no free co_extra slot"))?;
        EXTRA_INDEX.store(index, Ordering::Relaxed);
    }
    if cpython::INTERCEPT == Intercept::Vectorcall {
        calls::link(py).map_err(unsupported)?;
    }
    let old = [
        SHOULD_MARK.swap(should_mark.into_ptr(), Ordering::AcqRel),
        ON_CALL.swap(on_call.into_ptr(), Ordering::AcqRel),
        ON_RETURN.swap(on_return.into_ptr(), Ordering::AcqRel),
    ];
    bump_generation();
    ACTIVE.store(true, Ordering::Release);
    if cpython::INTERCEPT == Intercept::FrameHook {
        // SAFETY: the GIL is held (`py`).
        unsafe { frame::link() };
    }
    release(py, old);
    Ok(())
}

/// Drops the callbacks and stops intercepting: restores the previous eval
/// function (when we are still the current one), or every replaced
/// vectorcall. A no-op when not installed.
pub fn uninstall(py: Python<'_>) {
    ACTIVE.store(false, Ordering::Release);
    let old = [
        SHOULD_MARK.swap(std::ptr::null_mut(), Ordering::AcqRel),
        ON_CALL.swap(std::ptr::null_mut(), Ordering::AcqRel),
        ON_RETURN.swap(std::ptr::null_mut(), Ordering::AcqRel),
    ];
    bump_generation();
    match cpython::INTERCEPT {
        // SAFETY: the GIL is held (`py`).
        Intercept::FrameHook => unsafe { frame::unlink() },
        Intercept::Vectorcall => calls::unlink(py),
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

/// A function that existed before [`install`]: intercepts it when its code
/// is marked (the vectorcall mechanism; the frame hook sees every frame and
/// needs no help). Returns whether it is intercepted now.
pub fn adopt(func: &Bound<'_, PyAny>) -> Result<bool, Interrupted> {
    if !installed() || cpython::INTERCEPT != Intercept::Vectorcall {
        return Ok(false);
    }
    calls::adopt(func)
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
