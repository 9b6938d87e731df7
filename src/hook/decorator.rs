//! The decorator's calls (`@bytecache.memoize`): the vectorcall of its
//! wrapper (`identity::Wrapper`). It binds the arguments as a frame would
//! (`bind`), keys them from the memo's cached plan and answers from a result
//! kept in this process, or a plain one in the store (`identity::source`),
//! without leaving Rust. Any other call goes to the
//! wrapper's `begin(arguments, key, absent)` in Python, which answers as the hook's
//! `on_call` does (`consult::answer`): run the function, a hit, or a miss
//! whose token is then given the result (`commit`, in a box: see
//! `consult::report`) or told that the function raised (`abort`).
//!
//! Nothing here unwinds into CPython: a panic of ours means "run the
//! function" (before it ran) or a lost result (`SystemError`, after).

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi::{self, PyObject};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyString};

use super::bind::{bind, parameter_names, Call};
use super::consult::{answer, report, Action};
use crate::cpython::function;
use crate::identity::{self, Loaded, Wrapper};

/// The vectorcall of `Memoized` instances.
///
/// # Safety
/// Called by CPython, with the GIL held, as the vectorcall of a live
/// `Wrapper` (the type's `tp_vectorcall_offset` points at its
/// `vectorcall` field, which only instances of that type have).
pub unsafe extern "C" fn vectorcall(
    callable: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: CPython calls vectorcalls with the GIL held.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `callable` is a live `Wrapper` (contract above), borrowed for
    // this call.
    let this = unsafe { Bound::from_borrowed_ptr(py, callable) };
    // SAFETY: the type was checked by the vectorcall slot itself (only our
    // type has it); `cast_unchecked` avoids checking again.
    let this = unsafe { this.cast_unchecked::<Wrapper>() };
    let w = this.get();
    let call = Call {
        callable: w.func.as_ptr(),
        args,
        nargsf,
        kwnames,
    };
    let action = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: forwarded; the arguments are live for the call.
        unsafe { lookup(py, w, call) }
    }))
    .unwrap_or(Action::Run);
    // SAFETY: the call's own arguments, forwarded to the function.
    let run = || unsafe { call.forward(w.func.as_ptr()) };
    match action {
        Action::Run => run(),
        Action::Hit(value) => value,
        Action::Interrupt => std::ptr::null_mut(),
        // SAFETY: `token` is the new reference `begin` returned.
        Action::Miss(token) => unsafe { finish(py, token, run()) },
    }
}

/// Binds and keys the call; a kept result, or `begin`'s answer.
///
/// # Safety
/// GIL held; the call's arguments are live.
#[inline(never)]
unsafe fn lookup(py: Python<'_>, w: &Wrapper, call: Call) -> Action {
    if w.off || identity::is_disabled() || w.memo.skipping(py) {
        return Action::Run;
    }
    let func = w.func.bind(py);
    // SAFETY: `func` is a live Python function (checked when the wrapper was
    // made; `__code__` only ever holds a code object); the values live as
    // long as the call.
    unsafe {
        let code = function::code(func.as_ptr());
        let (values, npos) = call.values();
        let Some(bound) = bind(func.as_ptr(), code, values, npos, call.kwnames) else {
            return Action::Run; // the function raises its own TypeError
        };
        let slots = bound.slots();
        if slots.iter().any(|v| v.is_null()) {
            return Action::Run;
        }
        let Some(names) = parameter_names(py, code, slots.len()) else {
            return Action::Run;
        };
        let pairs = || {
            slots.iter().enumerate().map(|(i, &v)| {
                let name = names.get_borrowed_item_unchecked(i).to_owned();
                (name, Bound::from_borrowed_ptr(py, v))
            })
        };
        let key = w.memo.key_of(func, pairs(), false, None).ok().map(|k| k.0);
        let mut absent = false;
        if let Some(k) = key {
            match w.memo.answer(py, k) {
                Loaded::Hit(value, _) => return Action::Hit(value.into_ptr()),
                Loaded::Absent => absent = true,
                Loaded::Other => {}
                Loaded::Interrupted => return Action::Interrupt,
            }
        }
        // The full path, in Python: the arguments by name, the key (None
        // when it failed: `begin` keys again and reports why), and whether
        // the local store was just found to hold nothing at the key.
        let arguments = PyDict::new(py);
        for (name, value) in pairs() {
            if arguments.set_item(name, value).is_err() {
                return Action::Run;
            }
        }
        let key = match key {
            Some(k) => PyBytes::new(py, &k.to_le_bytes()).into_any(),
            None => py.None().into_bound(py),
        };
        let absent = PyBool::new(py, absent);
        let begin = w.begin.as_ptr();
        let argv = [arguments.as_ptr(), key.as_ptr(), absent.as_ptr()];
        let r = ffi::PyObject_Vectorcall(begin, argv.as_ptr(), 3, std::ptr::null_mut());
        answer(r, begin)
    }
}

/// After a missed call: `token.commit(box)` with its result, or
/// `token.abort()` when it raised (the exception stays the function's; one
/// raised by `abort` is reported). Returns the call's result, or NULL with
/// an exception set.
///
/// # Safety
/// GIL held; `token` is a new reference (taken); `result` a new reference
/// or NULL with the function's exception set.
unsafe fn finish(py: Python<'_>, token: *mut PyObject, result: *mut PyObject) -> *mut PyObject {
    // SAFETY: `token` is a new reference we own from here on.
    let token = unsafe { Bound::from_owned_ptr(py, token) };
    if result.is_null() {
        let raised = PyErr::take(py);
        if let Err(e) = token.call_method0(intern!(py, "abort")) {
            e.write_unraisable(py, Some(&token));
        }
        if let Some(e) = raised {
            e.restore(py);
        }
        return std::ptr::null_mut();
    }
    let commit: &Bound<'_, PyString> = intern!(py, "commit");
    // A panic cannot happen between the box taking `result` and giving it
    // back (only FFI calls), so NULL here loses nothing.
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: GIL held; `token` live; `result` is our new reference,
        // which `report` takes; the call is `token.commit(box)`.
        unsafe {
            report(token.as_ptr(), result, token.as_ptr(), |argv| {
                ffi::PyObject_VectorcallMethod(
                    commit.as_ptr(),
                    argv.as_ptr(),
                    2,
                    std::ptr::null_mut(),
                )
            })
        }
    }))
    .unwrap_or_else(|_| {
        pyo3::exceptions::PySystemError::new_err("bytecache: internal error").restore(py);
        std::ptr::null_mut()
    })
}
