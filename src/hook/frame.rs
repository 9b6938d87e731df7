//! The PEP 523 mechanism (3.11): an eval function that sees every frame.
//!
//! Flow for one frame:
//! 1. not active, `throwflag`, not a fresh thread-owned frame → chain;
//! 2. C stack nearly exhausted → `RecursionError` (frame skipped; the
//!    thread-local stack bounds are only looked up from `SHALLOW_DEPTH`
//!    Python frames);
//! 3. per-code decision from `co_extra`: known unmarked → chain (the fast
//!    path: a few loads and compares, no call);
//! 4. inside a callback on this thread (re-entry guard) → chain;
//! 5. otherwise `consult::decide`, then `consult::consult` with the frame's
//!    bound arguments (its first `localsplus` slots): run, answer without
//!    running the frame, or run and report.
//!
//! On 3.11 `_PyEval_Vector` clears and pops a frame the eval function did
//! not run (`cpython::eval`), so answering a hit is returning its value.
//!
//! Chaining: `link` saves the eval function that was current and calls it
//! for every frame it runs (intercepted or not). `unlink` restores it when
//! we are still the current function; if another tool installed itself on
//! top of us (and chains to us), we stay linked as a pure pass-through.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi::{PyObject, PyThreadState};

use super::consult::{self, Action, THREAD};
use super::mark::Decision;
use super::{stack, ACTIVE};
use crate::cpython::eval::{self, EvalFn};
use crate::cpython::frame::{self, Frame};
use crate::cpython::thread;

/// True while our eval function is in the interpreter's chain.
static LINKED: AtomicBool = AtomicBool::new(false);
/// The eval function we chain to (an `EvalFn` as usize; valid when LINKED).
static PREVIOUS: AtomicUsize = AtomicUsize::new(0);

/// Puts our eval function in the interpreter's chain (once).
///
/// # Safety
/// The GIL must be held.
pub unsafe fn link() {
    if LINKED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: GIL held (caller); `eval_frame` chains to PREVIOUS, which is
    // stored before it is linked.
    unsafe {
        PREVIOUS.store(eval::get_eval_frame() as usize, Ordering::Release);
        eval::set_eval_frame(eval_frame);
    }
    LINKED.store(true, Ordering::Release);
}

/// Restores the previous eval function when ours is still the current one.
///
/// # Safety
/// The GIL must be held.
pub unsafe fn unlink() {
    if !LINKED.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: GIL held (caller); PREVIOUS holds the function that was
    // current when we linked ourselves.
    unsafe {
        if eval::get_eval_frame() as usize == (eval_frame as EvalFn) as usize {
            eval::set_eval_frame(previous());
            LINKED.store(false, Ordering::Release);
        }
    }
}

/// The eval function to chain to.
#[inline]
fn previous() -> EvalFn {
    let p = PREVIOUS.load(Ordering::Acquire);
    if p == 0 {
        eval::default_eval()
    } else {
        // SAFETY: PREVIOUS only ever holds 0 or a value stored from an
        // `EvalFn` in `link`.
        unsafe { std::mem::transmute::<usize, EvalFn>(p) }
    }
}

/// The PEP 523 eval function.
///
/// # Safety
/// Called by CPython with the GIL held, a live thread state and a frame
/// that was just pushed for evaluation.
unsafe extern "C" fn eval_frame(
    tstate: *mut PyThreadState,
    f: *mut Frame,
    throwflag: c_int,
) -> *mut PyObject {
    let prev = previous();
    if throwflag != 0 || !ACTIVE.load(Ordering::Relaxed) {
        // SAFETY: chaining with CPython's own arguments.
        return unsafe { prev(tstate, f, throwflag) };
    }
    // SAFETY: `f` is live (CPython contract).
    let code = unsafe { frame::code(f) };
    // SAFETY: `code` is the frame's live code object.
    if code.is_null() || !unsafe { frame::is_fresh(f, code) } {
        // SAFETY: as above.
        return unsafe { prev(tstate, f, throwflag) };
    }
    // SAFETY: `tstate` is the live current thread state (CPython contract).
    if unsafe { thread::python_depth(tstate) } >= stack::SHALLOW_DEPTH
        && THREAD.with(|t| t.stack.room()).exhausted
    {
        // SAFETY: GIL held; returning NULL with an exception set is how an
        // eval function fails a fresh frame (the caller pops it, 3.11).
        unsafe { stack::recursion_error() };
        return std::ptr::null_mut();
    }
    // Fast path: a code object already known not to be marked.
    // SAFETY: GIL held; `code` live.
    let cached = unsafe { consult::cached(code) };
    if cached == Some(Decision::Skip) {
        // SAFETY: as above.
        return unsafe { prev(tstate, f, 0) };
    }
    // SAFETY: as above.
    unsafe { intercept(prev, tstate, f, code, cached) }
}

/// A fresh frame of a marked or not yet classified code object (run as is
/// inside one of our callbacks).
///
/// # Safety
/// As [`eval_frame`]; `f` passed `is_fresh`, `code` is its code.
#[inline(never)]
unsafe fn intercept(
    prev: EvalFn,
    tstate: *mut PyThreadState,
    f: *mut Frame,
    code: *mut PyObject,
    cached: Option<Decision>,
) -> *mut PyObject {
    if consult::in_callback() {
        // Re-entry from a callback: run normally.
        // SAFETY: chaining with CPython's arguments.
        return unsafe { prev(tstate, f, 0) };
    }
    // The guard covers the callbacks and every deallocation we cause (a
    // token's or result's `__del__` may be marked Python code).
    let action = consult::guarded(|| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: GIL held; `f`/`code` live (caller).
            unsafe { decide(f, code, cached) }
        }))
    })
    .unwrap_or(Action::Run);
    match action {
        // SAFETY: chaining with CPython's arguments (throwflag is 0 here).
        Action::Run => unsafe { prev(tstate, f, 0) },
        // The caller clears and pops the frame we did not run.
        Action::Hit(value) => value,
        Action::Interrupt => std::ptr::null_mut(),
        Action::Miss(token) => {
            // SAFETY: running the frame with CPython's arguments; `token` is
            // the new reference `on_call` returned.
            unsafe { consult::finish(token, prev(tstate, f, 0)) }
        }
    }
}

/// Classifies the code object if needed and consults the policy. Never
/// inlined: its stack frame (keys are computed below it) must not stay on
/// the C stack while the frame runs, or deep recursion runs out of stack
/// sooner.
///
/// # Safety
/// GIL held; `f` is a fresh frame whose code is `code`.
#[inline(never)]
unsafe fn decide(f: *mut Frame, code: *mut PyObject, cached: Option<Decision>) -> Action {
    // SAFETY: borrowed from the live frame.
    let func = unsafe { frame::func(f) };
    // SAFETY: forwarded.
    match unsafe { consult::decide(func, code, cached) } {
        Ok(Decision::Marked { nargs }) => {
            // SAFETY: the first `nargs <= co_nlocalsplus` slots are the bound
            // arguments, live while the frame is (the slice is dropped
            // before the frame runs or is answered).
            let args = unsafe { std::slice::from_raw_parts(frame::localsplus(f), nargs) };
            // SAFETY: forwarded.
            unsafe { consult::consult(func, args) }
        }
        Ok(Decision::Skip) => Action::Run,
        Err(consult::Interrupted) => Action::Interrupt,
    }
}
