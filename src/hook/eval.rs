//! The `extern "C"` eval function.
//!
//! Contract: nothing here may unwind into CPython. The Rust code avoids
//! panicking operations, and the two places that run Rust logic around
//! callbacks are wrapped in `catch_unwind`; on an internal failure the frame
//! is run normally. A memoizer bug must never change program behaviour, so
//! callback exceptions are reported with `PyErr_WriteUnraisable` and the
//! frame runs as if the hook were absent.
//!
//! Flow for one frame:
//! 1. not active, `throwflag`, not a fresh thread-owned frame → chain;
//! 2. C stack nearly exhausted → `RecursionError` (frame skipped; the
//!    thread-local stack bounds are only looked up from `SHALLOW_DEPTH`
//!    Python frames);
//! 3. per-code decision from `co_extra`: known unmarked → chain (the fast
//!    path: a few loads and compares, no call); unknown → classify once per
//!    generation;
//! 4. inside a callback on this thread (re-entry guard) → chain;
//! 5. marked: `on_call(func, args)`; `None` → chain; `(value,)` → return
//!    `value` without running the frame; other `token` → run the frame, then
//!    `on_return(token, result)` if it returned normally.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use pyo3::ffi::{self, PyObject, PyThreadState};
use pyo3::Python;

use super::compat::{self, Frame};
use super::mark::{self, Decision};
use super::{stack, ACTIVE, EXTRA_INDEX, GENERATION, ON_CALL, ON_RETURN, SHOULD_MARK};

/// Per-thread state, one thread-local so the fast path does one TLS lookup.
struct PerThread {
    /// True while this thread runs one of our callbacks (re-entry guard).
    in_callback: Cell<bool>,
    /// C-stack guard.
    stack: stack::Stack,
}

thread_local! {
    static THREAD: PerThread = const {
        PerThread { in_callback: Cell::new(false), stack: stack::Stack::new() }
    };
}

/// Runs `f` with the re-entry guard set (restoring the previous value).
#[inline]
fn guarded<R>(f: impl FnOnce() -> R) -> R {
    let was = THREAD.with(|t| t.in_callback.replace(true));
    let r = f();
    THREAD.with(|t| t.in_callback.set(was));
    r
}

/// What to do with a marked frame after `on_call`.
enum Action {
    /// Run the frame; nothing else.
    Run,
    /// Return this value (new reference) without running the frame.
    Hit(*mut PyObject),
    /// Run the frame, then report its result with this token (new reference).
    Miss(*mut PyObject),
    /// A callback was interrupted (`KeyboardInterrupt`, `SystemExit`: not an
    /// `Exception`); the exception is set: raise it from the call.
    Interrupt,
}

/// After a callback failed: an `Exception` is a memoizer bug and is
/// reported with `PyErr_WriteUnraisable` (returns false); anything else
/// (`KeyboardInterrupt`, `SystemExit`) stays set for the caller to raise
/// (returns true).
///
/// # Safety
/// GIL held; an exception is set; `context` is live (borrowed).
unsafe fn handle_callback_error(context: *mut PyObject) -> bool {
    // SAFETY: forwarded.
    unsafe {
        if ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) == 0 {
            return true;
        }
        ffi::PyErr_WriteUnraisable(context);
    }
    false
}

/// The PEP 523 eval function installed by `install`.
///
/// # Safety
/// Called by CPython with the GIL held, a live thread state and a frame
/// that was just pushed for evaluation.
pub unsafe extern "C" fn eval_frame(
    tstate: *mut PyThreadState,
    frame: *mut Frame,
    throwflag: c_int,
) -> *mut PyObject {
    let prev = super::previous();
    // SAFETY: `tstate` is the live current thread state (CPython contract).
    let room = if unsafe { compat::python_depth(tstate) } < stack::SHALLOW_DEPTH {
        stack::Room::AMPLE
    } else {
        THREAD.with(|t| t.stack.room())
    };
    if throwflag != 0 || !ACTIVE.load(Ordering::Relaxed) {
        // SAFETY: chaining with CPython's own arguments.
        return unsafe { compat::chain(prev, tstate, frame, throwflag, room.share) };
    }
    // SAFETY: `frame` is live (CPython contract).
    let code = unsafe { compat::frame_code(frame) };
    // SAFETY: `code` is the frame's live code object.
    if code.is_null() || !unsafe { compat::is_fresh_frame(frame, code) } {
        // SAFETY: as above.
        return unsafe { compat::chain(prev, tstate, frame, throwflag, room.share) };
    }
    if room.exhausted {
        // SAFETY: fresh thread-owned frame on `tstate`.
        return unsafe { recursion_error(prev, tstate, frame, room.share) };
    }
    // Fast path: a code object already known not to be marked.
    let generation = GENERATION.load(Ordering::Relaxed);
    // SAFETY: GIL held; `code` live; the index was requested in `install`.
    let raw = unsafe { compat::code_get_extra(code, EXTRA_INDEX.load(Ordering::Relaxed)) };
    if raw == mark::skip_value(generation) {
        // SAFETY: as above.
        return unsafe { compat::chain(prev, tstate, frame, 0, room.share) };
    }
    // SAFETY: as above.
    unsafe {
        intercept(
            prev,
            tstate,
            frame,
            code,
            mark::decode(raw, generation),
            room.share,
        )
    }
}

/// The C stack is nearly exhausted: raise `RecursionError` instead of
/// running the frame (or run it when it cannot be disposed of here).
///
/// # Safety
/// As [`eval_frame`], for a fresh thread-owned frame.
#[cold]
#[inline(never)]
unsafe fn recursion_error(
    prev: compat::EvalFn,
    tstate: *mut PyThreadState,
    frame: *mut Frame,
    share: u32,
) -> *mut PyObject {
    // SAFETY: fresh thread-owned frame on `tstate` (caller).
    if !unsafe { compat::can_skip(tstate, frame) } {
        // SAFETY: chaining with CPython's arguments.
        return unsafe { compat::chain(prev, tstate, frame, 0, share) };
    }
    // SAFETY: GIL held; the frame is disposed of and not used again.
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_RecursionError,
            c"maximum recursion depth exceeded (C stack nearly exhausted under bytecache's frame hook)"
                .as_ptr(),
        );
        compat::skip_frame(tstate, frame);
    }
    std::ptr::null_mut()
}

/// A fresh frame of a marked or not yet classified code object, outside
/// any callback: classify if needed, consult `on_call`, act on its answer.
///
/// # Safety
/// As [`eval_frame`]; `frame` passed `is_fresh_frame`, `code` is its code.
#[inline(never)]
unsafe fn intercept(
    prev: compat::EvalFn,
    tstate: *mut PyThreadState,
    frame: *mut Frame,
    code: *mut PyObject,
    cached: Option<Decision>,
    share: u32,
) -> *mut PyObject {
    if THREAD.with(|t| t.in_callback.get()) {
        // Re-entry from a callback: run normally.
        // SAFETY: chaining with CPython's arguments.
        return unsafe { compat::chain(prev, tstate, frame, 0, share) };
    }
    // The guard covers the callbacks and every deallocation we cause
    // (a token's or result's `__del__` may be marked Python code).
    let action = guarded(|| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: GIL held; `frame`/`code` live (caller).
            unsafe { decide(tstate, frame, code, cached) }
        }))
    })
    .unwrap_or(Action::Run);
    match action {
        // SAFETY: chaining with CPython's arguments (throwflag is 0 here).
        Action::Run => unsafe { compat::chain(prev, tstate, frame, 0, share) },
        Action::Hit(value) => {
            // `decide` checked `can_skip` before `on_call`; the callback's
            // own frames are popped (LIFO), so this holds again, but an
            // unexpected data-stack state means: run the frame instead.
            // SAFETY: GIL held; fresh frame on `tstate`.
            if !unsafe { compat::can_skip(tstate, frame) } {
                // SAFETY: `value` is a new reference we own.
                unsafe { ffi::Py_DECREF(value) };
                // SAFETY: chaining with CPython's arguments.
                return unsafe { compat::chain(prev, tstate, frame, 0, share) };
            }
            // SAFETY: checked just above; the frame is not used again.
            unsafe { compat::skip_frame(tstate, frame) };
            value
        }
        Action::Interrupt => {
            // SAFETY: as for Hit; the exception stays set for the caller.
            if !unsafe { compat::can_skip(tstate, frame) } {
                // SAFETY: GIL held; run normally without the interrupt.
                unsafe { ffi::PyErr_Clear() };
                // SAFETY: chaining with CPython's arguments.
                return unsafe { compat::chain(prev, tstate, frame, 0, share) };
            }
            // SAFETY: checked just above; the frame is not used again.
            unsafe { compat::skip_frame(tstate, frame) };
            std::ptr::null_mut()
        }
        Action::Miss(token) => {
            // SAFETY: running the frame with CPython's arguments.
            let mut result = unsafe { compat::chain(prev, tstate, frame, 0, share) };
            guarded(|| {
                if !result.is_null() {
                    let owned = result;
                    result = catch_unwind(AssertUnwindSafe(|| {
                        // SAFETY: GIL held; `token` live; `owned` is our new
                        // reference, which `report` takes.
                        unsafe { report(token, owned) }
                    }))
                    .unwrap_or(std::ptr::null_mut());
                }
                // SAFETY: `token` is the new reference returned by `on_call`.
                // Deallocation may run Python code; CPython deallocators
                // preserve a pending exception.
                unsafe { ffi::Py_DECREF(token) };
            });
            result
        }
    }
}

/// Classifies the code object (unless `cached`) and consults `on_call`.
/// Runs with the re-entry guard set. Never inlined: its stack frame (keys
/// are computed below it) must not stay on the C stack while `intercept`
/// runs the frame, or deep recursion runs out of stack sooner.
///
/// # Safety
/// GIL held; `frame` is a fresh frame on `tstate` whose code is `code`.
#[inline(never)]
unsafe fn decide(
    tstate: *mut PyThreadState,
    frame: *mut Frame,
    code: *mut PyObject,
    cached: Option<Decision>,
) -> Action {
    let decision = match cached {
        Some(d) => d,
        None => {
            let index = EXTRA_INDEX.load(Ordering::Relaxed);
            let generation = GENERATION.load(Ordering::Relaxed);
            // SAFETY: as above.
            let d = unsafe { classify(frame, code) };
            // The callbacks may have been replaced while `should_mark` ran:
            // only cache a decision made under the current generation.
            if GENERATION.load(Ordering::Relaxed) == generation {
                // SAFETY: as above.
                unsafe { compat::code_set_extra(code, index, mark::encode(d, generation)) };
            }
            d
        }
    };
    let Decision::Marked { nargs } = decision else {
        return Action::Run;
    };
    // SAFETY: GIL held; frame fresh on `tstate`.
    if !unsafe { compat::can_skip(tstate, frame) } {
        return Action::Run;
    }
    // SAFETY: as above.
    unsafe { consult(frame, nargs) }
}

/// Static filters, then `should_mark(func)`.
///
/// # Safety
/// GIL held; `frame` live with code `code`.
unsafe fn classify(frame: *mut Frame, code: *mut PyObject) -> Decision {
    // SAFETY: `code` is a live code object.
    let flags = unsafe { compat::code_flags(code) };
    if flags & compat::CO_RESUMABLE != 0
        || flags & compat::CO_OPTIMIZED_NEWLOCALS != compat::CO_OPTIMIZED_NEWLOCALS
    {
        return Decision::Skip;
    }
    // SAFETY: `co_name` is a live str owned by the code object.
    unsafe {
        let name = compat::code_name(code);
        if ffi::PyUnicode_Check(name) == 0 {
            return Decision::Skip;
        }
        if ffi::PyUnicode_GetLength(name) > 0
            && ffi::PyUnicode_ReadChar(name, 0) == u32::from('<')
            && ffi::PyUnicode_CompareWithASCIIString(name, c"<lambda>".as_ptr()) != 0
        {
            return Decision::Skip;
        }
    }
    // SAFETY: borrowed from the live frame.
    let func = unsafe { compat::frame_func(frame) };
    // SAFETY: `func` is a live object.
    if func.is_null() || unsafe { ffi::PyFunction_Check(func) } == 0 {
        return Decision::Skip;
    }
    // SAFETY: `code` is a live code object.
    let mut nargs = unsafe { compat::code_named_params(code) };
    if flags & compat::CO_VARARGS != 0 {
        nargs += 1;
    }
    if flags & compat::CO_VARKEYWORDS != 0 {
        nargs += 1;
    }
    // SAFETY: `code` is a live code object.
    if nargs > unsafe { compat::code_nlocalsplus(code) } {
        return Decision::Skip;
    }
    let Some(cb) = take_ref(&SHOULD_MARK) else {
        return Decision::Skip;
    };
    // SAFETY: GIL held; `cb` is a new reference, `func` borrowed.
    let marked = unsafe {
        let r = ffi::PyObject_CallOneArg(cb, func);
        let marked = if r.is_null() {
            ffi::PyErr_WriteUnraisable(cb);
            false
        } else {
            let t = ffi::PyObject_IsTrue(r);
            ffi::Py_DECREF(r);
            if t < 0 {
                ffi::PyErr_WriteUnraisable(cb);
            }
            t > 0
        };
        ffi::Py_DECREF(cb);
        marked
    };
    if marked {
        Decision::Marked { nargs }
    } else {
        Decision::Skip
    }
}

/// Builds the argument tuple and calls `on_call(func, args)`.
///
/// # Safety
/// GIL held; `frame` fresh, its first `nargs` localsplus slots are the
/// bound arguments (borrowed references).
unsafe fn consult(frame: *mut Frame, nargs: usize) -> Action {
    let Some(cb) = take_ref(&ON_CALL) else {
        return Action::Run;
    };
    // SAFETY: GIL held (so `assume_attached` is sound); the first `nargs`
    // slots are within `co_nlocalsplus` and stay live while the frame does
    // (the slice is dropped before the frame runs or is skipped); each stored
    // item gets its own reference; `cb` is a new reference.
    unsafe {
        let func = compat::frame_func(frame);
        let locals = compat::frame_localsplus(frame);
        let Ok(n) = ffi::Py_ssize_t::try_from(nargs) else {
            ffi::Py_DECREF(cb);
            return Action::Run;
        };
        let slots = std::slice::from_raw_parts(locals, nargs);
        if slots.iter().any(|v| v.is_null()) {
            ffi::Py_DECREF(cb);
            return Action::Run;
        }
        // A result kept in this process answers without leaving Rust.
        if let Some(value) = crate::identity::recall_call(Python::assume_attached(), func, slots) {
            ffi::Py_DECREF(cb);
            return Action::Hit(value);
        }
        let args = ffi::PyTuple_New(n);
        if args.is_null() {
            ffi::PyErr_Clear();
            ffi::Py_DECREF(cb);
            return Action::Run;
        }
        for (i, &v) in slots.iter().enumerate() {
            ffi::Py_INCREF(v);
            // `i < nargs`, which fits in Py_ssize_t (checked above).
            ffi::PyTuple_SET_ITEM(args, i as ffi::Py_ssize_t, v);
        }
        let argv = [func, args];
        let r = ffi::PyObject_Vectorcall(cb, argv.as_ptr(), 2, std::ptr::null_mut());
        ffi::Py_DECREF(args);
        if r.is_null() {
            let interrupted = handle_callback_error(cb);
            ffi::Py_DECREF(cb);
            return if interrupted {
                Action::Interrupt
            } else {
                Action::Run
            };
        }
        ffi::Py_DECREF(cb);
        if r == ffi::Py_None() {
            ffi::Py_DECREF(r);
            return Action::Run;
        }
        if ffi::PyTuple_CheckExact(r) != 0 && ffi::PyTuple_GET_SIZE(r) == 1 {
            let value = ffi::PyTuple_GET_ITEM(r, 0);
            ffi::Py_INCREF(value);
            ffi::Py_DECREF(r);
            return Action::Hit(value);
        }
        Action::Miss(r)
    }
}

/// Calls `on_return(token, box)` with `box` a one-element list holding our
/// only reference to `result` (so the callback can tell whether anything
/// else refers to it), reporting (not propagating) errors. Returns the
/// result (a new reference), or NULL when the callback was interrupted (the
/// exception is set, see `handle_callback_error`).
///
/// # Safety
/// GIL held; `token` is live (borrowed); `result` is a new reference, which
/// this function takes; no exception set.
unsafe fn report(token: *mut PyObject, result: *mut PyObject) -> *mut PyObject {
    let Some(cb) = take_ref(&ON_RETURN) else {
        return result;
    };
    // SAFETY: GIL held; `cb` and the box are new references released here;
    // `PyList_SET_ITEM` steals `result`, and the box keeps it alive until we
    // take our reference back.
    unsafe {
        let boxed = ffi::PyList_New(1);
        if boxed.is_null() {
            ffi::PyErr_Clear();
            ffi::Py_DECREF(cb);
            return result;
        }
        ffi::PyList_SET_ITEM(boxed, 0, result);
        let argv = [token, boxed];
        let r = ffi::PyObject_Vectorcall(cb, argv.as_ptr(), 2, std::ptr::null_mut());
        let interrupted = if r.is_null() {
            handle_callback_error(cb)
        } else {
            ffi::Py_DECREF(r);
            false
        };
        ffi::Py_DECREF(cb);
        let value = ffi::PyList_GetItem(boxed, 0);
        let value = if value.is_null() {
            ffi::PyErr_Clear();
            std::ptr::null_mut()
        } else {
            ffi::Py_NewRef(value)
        };
        ffi::Py_DECREF(boxed);
        if interrupted {
            ffi::Py_XDECREF(value);
            return std::ptr::null_mut();
        }
        value
    }
}

/// A new reference to the callback in `slot`, if any (GIL held).
#[inline]
fn take_ref(slot: &std::sync::atomic::AtomicPtr<PyObject>) -> Option<*mut PyObject> {
    let p = slot.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: GIL held by every caller; slots only hold strong references,
    // released (with the GIL) after being swapped out.
    unsafe { ffi::Py_INCREF(p) };
    Some(p)
}
