//! The interpreter's frame-evaluation function (PEP 523), which the frame
//! hook replaces on 3.11.
//!
//! On 3.11 `_PyEval_Vector` clears and pops a frame after the eval function
//! returns, whether or not the frame ran, so an eval function may answer a
//! fresh frame without running it. From 3.12 the evaluator owns that job;
//! bytecache does not use the frame hook there (see [`super::INTERCEPT`]).

use std::ffi::c_int;

use pyo3::ffi::{self, PyObject, PyThreadState};

use super::frame::Frame;

/// `_PyFrameEvalFunction` with our opaque frame type.
pub type EvalFn = unsafe extern "C" fn(*mut PyThreadState, *mut Frame, c_int) -> *mut PyObject;

// pyo3-ffi treats frames as opaque and declares none of these.
extern "C" {
    fn _PyInterpreterState_GetEvalFrameFunc(interp: *mut ffi::PyInterpreterState)
        -> Option<EvalFn>;
    fn _PyInterpreterState_SetEvalFrameFunc(
        interp: *mut ffi::PyInterpreterState,
        eval_frame: Option<EvalFn>,
    );
    fn _PyEval_EvalFrameDefault(
        tstate: *mut PyThreadState,
        frame: *mut Frame,
        throwflag: c_int,
    ) -> *mut PyObject;
}

/// CPython's default evaluator, as an [`EvalFn`].
pub fn default_eval() -> EvalFn {
    _PyEval_EvalFrameDefault
}

/// The current interpreter's eval function (never NULL on 3.11+: CPython
/// returns `_PyEval_EvalFrameDefault` when none is set).
///
/// # Safety
/// The GIL must be held.
pub unsafe fn get_eval_frame() -> EvalFn {
    // SAFETY: GIL held (caller); the interpreter pointer is the current one.
    unsafe { _PyInterpreterState_GetEvalFrameFunc(ffi::PyInterpreterState_Get()) }
        .unwrap_or(_PyEval_EvalFrameDefault)
}

/// Sets the current interpreter's eval function. Setting
/// `_PyEval_EvalFrameDefault` stores NULL, which re-enables call inlining.
///
/// # Safety
/// The GIL must be held; `f` must be a valid eval function.
pub unsafe fn set_eval_frame(f: EvalFn) {
    // SAFETY: GIL held (caller).
    unsafe { _PyInterpreterState_SetEvalFrameFunc(ffi::PyInterpreterState_Get(), Some(f)) }
}
