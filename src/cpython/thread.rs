//! `PyThreadState` (`struct _ts`, `Include/cpython/pystate.h`): the prefix
//! up to the recursion counters, per version. Any other thread-state read
//! (the current frame) belongs here too.

#[cfg(Py_3_12)]
use std::ffi::c_uint;
use std::ffi::{c_int, c_void};
use std::mem::offset_of;

use pyo3::ffi::PyThreadState;

/// `struct _ts`, 3.11, up to the recursion limit.
#[cfg(not(Py_3_12))]
#[repr(C)]
struct RawThreadState {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    _initialized: c_int,
    _static: c_int,
    recursion_remaining: c_int,
    recursion_limit: c_int,
}

#[cfg(not(Py_3_12))]
const _: () = {
    assert!(offset_of!(RawThreadState, recursion_remaining) == 32);
    assert!(offset_of!(RawThreadState, recursion_limit) == 36);
};

/// `struct _ts`, 3.12, up to the C recursion budget.
#[cfg(all(Py_3_12, not(Py_3_13)))]
#[repr(C)]
struct RawThreadState {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    _status: c_uint,
    py_recursion_remaining: c_int,
    py_recursion_limit: c_int,
    c_recursion_remaining: c_int,
}

#[cfg(all(Py_3_12, not(Py_3_13)))]
const _: () = {
    assert!(offset_of!(RawThreadState, py_recursion_remaining) == 28);
    assert!(offset_of!(RawThreadState, py_recursion_limit) == 32);
    assert!(offset_of!(RawThreadState, c_recursion_remaining) == 36);
};

/// `struct _ts`, 3.13, up to the C recursion budget.
#[cfg(Py_3_13)]
#[repr(C)]
struct RawThreadState {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    eval_breaker: usize,
    _status: c_uint,
    _whence: c_int,
    state: c_int,
    py_recursion_remaining: c_int,
    py_recursion_limit: c_int,
    c_recursion_remaining: c_int,
}

#[cfg(Py_3_13)]
const _: () = {
    assert!(offset_of!(RawThreadState, py_recursion_remaining) == 44);
    assert!(offset_of!(RawThreadState, py_recursion_limit) == 48);
    assert!(offset_of!(RawThreadState, c_recursion_remaining) == 52);
};

/// The offsets above, by C field name, for the layout test.
pub(super) fn offsets() -> Vec<(&'static str, usize)> {
    #[cfg(not(Py_3_12))]
    let v = vec![
        (
            "PyThreadState.recursion_remaining",
            offset_of!(RawThreadState, recursion_remaining),
        ),
        (
            "PyThreadState.recursion_limit",
            offset_of!(RawThreadState, recursion_limit),
        ),
    ];
    #[cfg(Py_3_12)]
    let v = vec![
        (
            "PyThreadState.py_recursion_remaining",
            offset_of!(RawThreadState, py_recursion_remaining),
        ),
        (
            "PyThreadState.py_recursion_limit",
            offset_of!(RawThreadState, py_recursion_limit),
        ),
        (
            "PyThreadState.c_recursion_remaining",
            offset_of!(RawThreadState, c_recursion_remaining),
        ),
    ];
    v
}

/// How many Python frames (3.11: also C recursion levels) this thread has
/// entered: `recursion_limit - recursion_remaining`.
///
/// # Safety
/// `tstate` is the live current thread state.
#[inline(always)]
pub unsafe fn python_depth(tstate: *mut PyThreadState) -> c_int {
    let ts = tstate.cast::<RawThreadState>();
    // SAFETY: live thread state (caller); plain int fields.
    unsafe {
        #[cfg(not(Py_3_12))]
        let depth = (*ts)
            .recursion_limit
            .wrapping_sub((*ts).recursion_remaining);
        #[cfg(Py_3_12)]
        let depth = (*ts)
            .py_recursion_limit
            .wrapping_sub((*ts).py_recursion_remaining);
        depth
    }
}

/// Runs `call`, which evaluates one Python frame through a path the
/// interpreter does not inline, with `units` of the C recursion budget given
/// back for its duration.
///
/// 3.12+: every Python call that is not inlined spends units of a C
/// recursion budget (1500 in 3.12.1, 10000 in 3.13.0) that plain Python
/// recursion never touches, so without this, recursion of intercepted
/// functions stops far below the recursion limit (~750 frames on 3.12). The
/// budget is set to `min(remaining + units, LIMIT * share)`, where `share`
/// is the free fraction of this thread's C stack (1/65536 units): Python
/// frames stop draining it, and C code below never gets more units than
/// CPython would grant for the stack that is actually left (it sizes LIMIT
/// for a whole, empty stack). Python frames themselves are stopped by the
/// caller's stack guard. 3.11 counts Python frames alone: a plain call.
///
/// # Safety
/// `tstate` is the live current thread state; `call` runs on this thread.
#[inline(always)]
pub unsafe fn with_c_budget<R>(
    tstate: *mut PyThreadState,
    units: c_int,
    share: u32,
    call: impl FnOnce() -> R,
) -> R {
    #[cfg(Py_3_12)]
    {
        let ts = tstate.cast::<RawThreadState>();
        // LIMIT * share / 65536; both factors fit in 32 bits.
        let cap = ((i64::from(C_RECURSION_LIMIT) * i64::from(share)) >> 16) as c_int;
        // SAFETY: `tstate` is the live current thread state (caller); the
        // counter is only touched by this thread. Every path through the
        // evaluator leaves the counter as it found it, so restoring `saved`
        // undoes exactly our adjustment.
        unsafe {
            let budget = std::ptr::addr_of_mut!((*ts).c_recursion_remaining);
            let saved = *budget;
            *budget = saved.saturating_add(units).min(cap);
            let r = call();
            *budget = saved;
            r
        }
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = (tstate, units, share);
        call()
    }
}

/// A thread's initial C recursion budget, Linux release builds:
/// `C_RECURSION_LIMIT` (3.12 `Include/cpython/pystate.h`) and
/// `Py_C_RECURSION_LIMIT` (3.13).
#[cfg(all(Py_3_12, not(Py_3_13)))]
const C_RECURSION_LIMIT: c_int = 1500;
#[cfg(Py_3_13)]
const C_RECURSION_LIMIT: c_int = 10000;
