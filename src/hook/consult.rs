//! What both mechanisms do with a call of a function they intercept: decide
//! once per code object whether it is marked, then consult the policy with
//! the call's bound arguments and act on its answer.
//!
//! Contract: nothing here unwinds into CPython (callers wrap these in
//! `catch_unwind`; on an internal failure the call runs normally). A
//! callback's `Exception` is a memoizer bug, reported with
//! `PyErr_WriteUnraisable`, and the call runs as if nothing intercepted it;
//! `KeyboardInterrupt` and `SystemExit` (any `BaseException` that is not an
//! `Exception`) are raised from the intercepted call.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi::{self, PyObject};
use pyo3::Python;

use super::mark::{self, Decision};
use super::{stack, EXTRA_INDEX, GENERATION, ON_CALL, ON_RETURN, SHOULD_MARK};
use crate::cpython::code;
use crate::identity::Recalled;

/// Per-thread state, one thread-local so the fast path does one TLS lookup.
pub struct PerThread {
    /// True while this thread runs one of our callbacks (re-entry guard).
    pub in_callback: Cell<bool>,
    /// C-stack guard.
    pub stack: stack::Stack,
}

thread_local! {
    pub static THREAD: PerThread = const {
        PerThread { in_callback: Cell::new(false), stack: stack::Stack::new() }
    };
}

/// True while this thread runs one of our callbacks.
#[inline]
pub fn in_callback() -> bool {
    THREAD.with(|t| t.in_callback.get())
}

/// Runs `f` with the re-entry guard set (restoring the previous value).
#[inline]
pub fn guarded<R>(f: impl FnOnce() -> R) -> R {
    let was = THREAD.with(|t| t.in_callback.replace(true));
    let r = f();
    THREAD.with(|t| t.in_callback.set(was));
    r
}

/// A callback was interrupted (`KeyboardInterrupt`, `SystemExit`: not an
/// `Exception`); the exception is set and must reach the program.
pub struct Interrupted;

/// What to do with a call of a marked function after `on_call`.
pub enum Action {
    /// Run the call; nothing else.
    Run,
    /// Return this value (new reference) without running the call.
    Hit(*mut PyObject),
    /// Run the call, then report its result with this token (new reference).
    Miss(*mut PyObject),
    /// Raise the exception that is set from the call.
    Interrupt,
}

/// After a callback failed: an `Exception` is a memoizer bug and is
/// reported with `PyErr_WriteUnraisable`; anything else stays set
/// (`Err(Interrupted)`).
///
/// # Safety
/// GIL held; an exception is set; `context` is live (borrowed).
unsafe fn callback_error(context: *mut PyObject) -> Result<(), Interrupted> {
    // SAFETY: forwarded.
    unsafe {
        if ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) == 0 {
            return Err(Interrupted);
        }
        ffi::PyErr_WriteUnraisable(context);
    }
    Ok(())
}

/// The decision cached for `code` under the current generation, if any.
/// Known unmarked (every frame of unmarked code on 3.11) costs one load and
/// one compare.
///
/// # Safety
/// GIL held; `code` is a live code object.
#[inline(always)]
pub unsafe fn cached(code: *mut PyObject) -> Option<Decision> {
    let generation = GENERATION.load(Ordering::Relaxed);
    // SAFETY: forwarded; the index was requested in `install`.
    let raw = unsafe { code::extra(code, EXTRA_INDEX.load(Ordering::Relaxed)) } as usize;
    if raw == mark::skip_value(generation) {
        return Some(Decision::Skip);
    }
    mark::decode(raw, generation)
}

/// The decision for `func` running `code`: `cached` (what [`cached`]
/// returned), or made now (static filters, then `should_mark(func)`) and
/// cached. Must run with the re-entry guard set.
///
/// # Safety
/// GIL held; `func` (any object) and `code` (a code object) are live.
pub unsafe fn decide(
    func: *mut PyObject,
    code: *mut PyObject,
    cached: Option<Decision>,
) -> Result<Decision, Interrupted> {
    if let Some(d) = cached {
        return Ok(d);
    }
    let index = EXTRA_INDEX.load(Ordering::Relaxed);
    let generation = GENERATION.load(Ordering::Relaxed);
    // SAFETY: forwarded.
    let d = unsafe { classify(func, code) }?;
    // The callbacks may have been replaced while `should_mark` ran: only
    // cache a decision made under the current generation. A failed store
    // (memory) means classifying again next time.
    if GENERATION.load(Ordering::Relaxed) == generation {
        // SAFETY: forwarded; our slot holds tagged integers (no free function).
        unsafe { code::set_extra(code, index, mark::encode(d, generation) as *mut _) };
    }
    Ok(d)
}

/// Static filters, then `should_mark(func)`.
///
/// # Safety
/// As [`decide`].
unsafe fn classify(func: *mut PyObject, code: *mut PyObject) -> Result<Decision, Interrupted> {
    // SAFETY: `code` is a live code object.
    let flags = unsafe { code::flags(code) };
    if flags & code::CO_RESUMABLE != 0
        || flags & code::CO_OPTIMIZED_NEWLOCALS != code::CO_OPTIMIZED_NEWLOCALS
    {
        return Ok(Decision::Skip);
    }
    // SAFETY: `co_name` is a live str owned by the code object.
    unsafe {
        let name = code::name(code);
        if ffi::PyUnicode_Check(name) == 0 {
            return Ok(Decision::Skip);
        }
        if ffi::PyUnicode_GetLength(name) > 0
            && ffi::PyUnicode_ReadChar(name, 0) == u32::from('<')
            && ffi::PyUnicode_CompareWithASCIIString(name, c"<lambda>".as_ptr()) != 0
        {
            return Ok(Decision::Skip);
        }
    }
    // SAFETY: `func` is a live object.
    if func.is_null() || unsafe { ffi::PyFunction_Check(func) } == 0 {
        return Ok(Decision::Skip);
    }
    // SAFETY: `code` is a live code object.
    let mut nargs = unsafe { code::named_params(code) };
    if flags & code::CO_VARARGS != 0 {
        nargs += 1;
    }
    if flags & code::CO_VARKEYWORDS != 0 {
        nargs += 1;
    }
    // SAFETY: `code` is a live code object.
    if nargs > unsafe { code::nlocalsplus(code) } {
        return Ok(Decision::Skip);
    }
    let Some(cb) = take_ref(&SHOULD_MARK) else {
        return Ok(Decision::Skip);
    };
    // SAFETY: GIL held; `cb` is a new reference, `func` borrowed.
    let marked = unsafe {
        let r = ffi::PyObject_CallOneArg(cb, func);
        let marked = if r.is_null() {
            callback_error(cb).map(|()| false)
        } else {
            let t = ffi::PyObject_IsTrue(r);
            ffi::Py_DECREF(r);
            if t < 0 {
                callback_error(cb).map(|()| false)
            } else {
                Ok(t > 0)
            }
        };
        ffi::Py_DECREF(cb);
        marked
    }?;
    Ok(if marked {
        Decision::Marked { nargs }
    } else {
        Decision::Skip
    })
}

/// Consults the policy about a call of the marked function `func` whose
/// bound arguments are `args` (frame order: named parameters, then the
/// `*args` tuple and the `**kwargs` dict): a result kept in Rust answers at
/// once; else `on_call(func, args)`. Must run with the re-entry guard set.
///
/// # Safety
/// GIL held; `func` and every pointer in `args` are live (borrowed, and
/// stay live while this runs).
pub unsafe fn consult(func: *mut PyObject, args: &[*mut PyObject]) -> Action {
    if args.iter().any(|v| v.is_null()) {
        return Action::Run;
    }
    // A result kept in this process (or a plain stored one) answers
    // without leaving Rust; a function whose calls are not stored for now
    // runs as is.
    // SAFETY: GIL held (so `assume_attached` is sound); forwarded.
    match unsafe { crate::identity::recall_call(Python::assume_attached(), func, args) } {
        Recalled::Hit(value) => return Action::Hit(value),
        Recalled::Run => return Action::Run,
        Recalled::Interrupted => return Action::Interrupt,
        Recalled::Ask => {}
    }
    let Some(cb) = take_ref(&ON_CALL) else {
        return Action::Run;
    };
    let Ok(n) = ffi::Py_ssize_t::try_from(args.len()) else {
        // SAFETY: `cb` is a new reference we own.
        unsafe { ffi::Py_DECREF(cb) };
        return Action::Run;
    };
    // SAFETY: GIL held; each stored item gets its own reference; `cb` is a
    // new reference.
    unsafe {
        let tuple = ffi::PyTuple_New(n);
        if tuple.is_null() {
            ffi::PyErr_Clear();
            ffi::Py_DECREF(cb);
            return Action::Run;
        }
        for (i, &v) in args.iter().enumerate() {
            ffi::Py_INCREF(v);
            // `i < n`, which fits in Py_ssize_t (checked above).
            ffi::PyTuple_SET_ITEM(tuple, i as ffi::Py_ssize_t, v);
        }
        let argv = [func, tuple];
        let r = ffi::PyObject_Vectorcall(cb, argv.as_ptr(), 2, std::ptr::null_mut());
        ffi::Py_DECREF(tuple);
        let action = answer(r, cb);
        ffi::Py_DECREF(cb);
        action
    }
}

/// What the policy's answer `r` says: `None` (run), an exact 1-tuple
/// `(value,)` (a hit) or a token (a miss). `r` is a new reference, which
/// this takes, or NULL when `cb` raised (see [`callback_error`]).
///
/// # Safety
/// GIL held; `cb` live (borrowed); with `r` NULL an exception is set.
pub unsafe fn answer(r: *mut PyObject, cb: *mut PyObject) -> Action {
    // SAFETY: forwarded; `r` is ours to release or hand on.
    unsafe {
        if r.is_null() {
            return match callback_error(cb) {
                Ok(()) => Action::Run,
                Err(Interrupted) => Action::Interrupt,
            };
        }
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

/// After a missed call returned `result` (a new reference, NULL when it
/// raised): `on_return(token, box)` when it returned, then drops the token.
/// Returns the call's result, or NULL with the exception set when
/// `on_return` was interrupted. Runs the callbacks with the re-entry guard
/// set (a token's `__del__` may run marked Python code).
///
/// # Safety
/// GIL held; `token` is the new reference `on_call` returned.
pub unsafe fn finish(token: *mut PyObject, mut result: *mut PyObject) -> *mut PyObject {
    guarded(|| {
        if !result.is_null() {
            if let Some(cb) = take_ref(&ON_RETURN) {
                let owned = result;
                // A panic cannot happen between the box taking `owned` and
                // giving it back (only FFI calls), so NULL here loses nothing.
                result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: GIL held; `cb` and `token` live; `owned` is our
                    // new reference, which `report` takes; the call is a
                    // plain vectorcall of `cb`.
                    unsafe {
                        report(token, owned, cb, |argv| {
                            ffi::PyObject_Vectorcall(cb, argv.as_ptr(), 2, std::ptr::null_mut())
                        })
                    }
                }))
                .unwrap_or(std::ptr::null_mut());
                // SAFETY: `cb` is the new reference `take_ref` returned.
                unsafe { ffi::Py_DECREF(cb) };
            }
        }
        // SAFETY: `token` is a new reference we own. Deallocation may run
        // Python code; CPython deallocators preserve a pending exception.
        unsafe { ffi::Py_DECREF(token) };
    });
    result
}

/// Hands `result` to the policy: `call(argv)` with `argv` = `[token, box]`,
/// `box` a one-element list holding our only reference to `result` (so the
/// callback can tell whether anything else refers to it: see
/// `_core.Miss.commit`); `call` is `on_return(token, box)` for the hook,
/// `token.commit(box)` for the decorator. Errors other than interrupts are
/// reported, not propagated (`context` names the callback). Returns the
/// result (a new reference), or NULL when the callback was interrupted (the
/// exception is set).
///
/// # Safety
/// GIL held; `token` and `context` are live (borrowed); `result` is a new
/// reference, which this function takes; no exception set; `call` returns a
/// new reference, or NULL with an exception set.
pub unsafe fn report(
    token: *mut PyObject,
    result: *mut PyObject,
    context: *mut PyObject,
    call: impl FnOnce(&[*mut PyObject; 2]) -> *mut PyObject,
) -> *mut PyObject {
    // SAFETY: GIL held; the box is a new reference released here;
    // `PyList_SET_ITEM` steals `result`, and the box keeps it alive until we
    // take our reference back.
    unsafe {
        let boxed = ffi::PyList_New(1);
        if boxed.is_null() {
            ffi::PyErr_Clear();
            return result;
        }
        ffi::PyList_SET_ITEM(boxed, 0, result);
        let r = call(&[token, boxed]);
        let interrupted = if r.is_null() {
            callback_error(context).is_err()
        } else {
            ffi::Py_DECREF(r);
            false
        };
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
fn take_ref(slot: &AtomicPtr<PyObject>) -> Option<*mut PyObject> {
    let p = slot.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: GIL held by every caller; slots only hold strong references,
    // released (with the GIL) after being swapped out.
    unsafe { ffi::Py_INCREF(p) };
    Some(p)
}
