//! Everything that depends on the CPython minor version, in one file.
//!
//! This is the only file that uses the `Py_3_x` cfgs (emitted by `build.rs`).
//! It mirrors torch dynamo's `cpython_includes.h`: `#[repr(C)]` copies of the
//! private `_PyInterpreterFrame` and of `PyCodeObject` and `PyThreadState`
//! prefixes, checked field by field against offsets printed by
//! `tools/hook_offsets.c` compiled with each version's internal headers
//! (x86-64 / aarch64 Linux, release builds), plus per-version accessors.
//!
//! Supported: 3.11, 3.12, 3.13 (release, GIL builds). On anything else
//! `SUPPORT` is an error and `hook_install` refuses before any accessor is
//! called; later versions reuse the 3.13 declarations only so that the
//! crate builds (and the rest of the extension works) there.
//!
//! Reference ownership of every accessor: all returned `*mut PyObject` are
//! **borrowed** from the frame or code object unless stated otherwise.
#![allow(non_snake_case)]

use std::ffi::{c_char, c_int, c_void};
use std::mem::offset_of;

use pyo3::ffi::{self, PyObject, PyThreadState, PyVarObject, Py_ssize_t};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCode, PyString, PyTuple};

/// An opaque `_PyInterpreterFrame`. Only this module knows its layout.
#[repr(C)]
pub struct Frame {
    _private: [u8; 0],
}

/// `_PyFrameEvalFunction` with our opaque frame type.
pub type EvalFn = unsafe extern "C" fn(*mut PyThreadState, *mut Frame, c_int) -> *mut PyObject;

/// `CO_OPTIMIZED | CO_NEWLOCALS`: set on function bodies, not on module or
/// class bodies or `exec`'d code.
pub const CO_OPTIMIZED_NEWLOCALS: c_int = 0x0001 | 0x0002;
pub const CO_VARARGS: c_int = 0x0004;
pub const CO_VARKEYWORDS: c_int = 0x0008;
/// `CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR`.
pub const CO_RESUMABLE: c_int = 0x0020 | 0x0080 | 0x0100 | 0x0200;

const FRAME_OWNED_BY_THREAD: c_char = 0;

/// A short name of the running interpreter's frame layout, for messages.
#[cfg(all(Py_3_11, not(Py_3_12)))]
pub const LAYOUT: &str = "3.11";
#[cfg(all(Py_3_12, not(Py_3_13)))]
pub const LAYOUT: &str = "3.12";
#[cfg(all(Py_3_13, not(Py_3_14)))]
pub const LAYOUT: &str = "3.13";
#[cfg(any(not(Py_3_11), Py_3_14))]
pub const LAYOUT: &str = "unsupported";

/// Whether this build knows the frame layout of the interpreter it was built
/// for: release, GIL-enabled CPython 3.11–3.13 (offsets, C recursion limits
/// and the single-GIL assumption of our globals differ elsewhere).
pub const SUPPORT: Result<(), &str> = if !cfg!(all(Py_3_11, not(Py_3_14))) {
    Err("the bytecache frame hook supports CPython 3.11, 3.12 and 3.13 only")
} else if cfg!(Py_GIL_DISABLED) {
    Err("the bytecache frame hook does not support free-threaded CPython builds")
} else if cfg!(py_sys_config = "Py_DEBUG") {
    Err("the bytecache frame hook does not support debug CPython builds")
} else {
    Ok(())
};

/// True when the calling thread runs the main interpreter (the hook's state
/// is process-global; subinterpreters are refused).
///
/// # Safety
/// The GIL must be held.
pub unsafe fn in_main_interpreter() -> bool {
    // SAFETY: GIL held (caller).
    unsafe { ffi::PyInterpreterState_Get() == ffi::PyInterpreterState_Main() }
}

/// `struct _ts` (3.11 `Include/cpython/pystate.h`) up to the recursion limit.
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
struct RawThreadState311 {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    _initialized: c_int,
    _static: c_int,
    recursion_remaining: c_int,
    recursion_limit: c_int,
}

#[cfg(all(Py_3_11, not(Py_3_12)))]
const _: () = {
    assert!(offset_of!(RawThreadState311, recursion_remaining) == 32);
    assert!(offset_of!(RawThreadState311, recursion_limit) == 36);
};

/// How many Python frames (3.11: also C recursion levels) this thread has
/// entered: `recursion_limit - recursion_remaining`.
///
/// # Safety
/// `tstate` is the live current thread state.
#[inline(always)]
pub unsafe fn python_depth(tstate: *mut PyThreadState) -> c_int {
    #[cfg(all(Py_3_11, not(Py_3_12)))]
    let ts = tstate.cast::<RawThreadState311>();
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    let ts = tstate.cast::<py312::RawThreadState>();
    #[cfg(Py_3_13)]
    let ts = tstate.cast::<RawThreadState313>();
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

// ---------------------------------------------------------------------------
// Layouts
// ---------------------------------------------------------------------------

/// `_PyInterpreterFrame`, 3.11 (`Include/internal/pycore_frame.h`).
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
struct RawFrame {
    f_func: *mut PyObject,
    f_globals: *mut PyObject,
    f_builtins: *mut PyObject,
    f_locals: *mut PyObject,
    f_code: *mut PyObject,
    frame_obj: *mut PyObject,
    previous: *mut c_void,
    prev_instr: *mut u16,
    stacktop: c_int,
    is_entry: bool,
    owner: c_char,
    localsplus: [*mut PyObject; 1],
}

#[cfg(all(Py_3_11, not(Py_3_12)))]
const _: () = {
    assert!(offset_of!(RawFrame, f_func) == 0);
    assert!(offset_of!(RawFrame, f_locals) == 24);
    assert!(offset_of!(RawFrame, f_code) == 32);
    assert!(offset_of!(RawFrame, frame_obj) == 40);
    assert!(offset_of!(RawFrame, previous) == 48);
    assert!(offset_of!(RawFrame, prev_instr) == 56);
    assert!(offset_of!(RawFrame, stacktop) == 64);
    assert!(offset_of!(RawFrame, is_entry) == 68);
    assert!(offset_of!(RawFrame, owner) == 69);
    assert!(offset_of!(RawFrame, localsplus) == 72);
    assert!(std::mem::size_of::<RawFrame>() == 80);
};

/// `_PyInterpreterFrame`, 3.12 and 3.13 (same offsets; 3.13 renames
/// `f_code` → `f_executable` and `prev_instr` → `instr_ptr`).
#[cfg(Py_3_12)]
#[repr(C)]
struct RawFrame {
    f_code: *mut PyObject,
    previous: *mut c_void,
    f_funcobj: *mut PyObject,
    f_globals: *mut PyObject,
    f_builtins: *mut PyObject,
    f_locals: *mut PyObject,
    frame_obj: *mut PyObject,
    prev_instr: *mut u16,
    stacktop: c_int,
    return_offset: u16,
    owner: c_char,
    localsplus: [*mut PyObject; 1],
}

#[cfg(Py_3_12)]
const _: () = {
    assert!(offset_of!(RawFrame, f_code) == 0);
    assert!(offset_of!(RawFrame, previous) == 8);
    assert!(offset_of!(RawFrame, f_funcobj) == 16);
    assert!(offset_of!(RawFrame, f_locals) == 40);
    assert!(offset_of!(RawFrame, frame_obj) == 48);
    assert!(offset_of!(RawFrame, prev_instr) == 56);
    assert!(offset_of!(RawFrame, stacktop) == 64);
    assert!(offset_of!(RawFrame, return_offset) == 68);
    assert!(offset_of!(RawFrame, owner) == 70);
    assert!(offset_of!(RawFrame, localsplus) == 72);
    assert!(std::mem::size_of::<RawFrame>() == 80);
};

/// `PyCodeObject` up to `co_code_adaptive`, 3.11 (`Include/cpython/code.h`).
#[cfg(all(Py_3_11, not(Py_3_12)))]
#[repr(C)]
struct RawCode {
    ob_base: PyVarObject,
    co_consts: *mut PyObject,
    co_names: *mut PyObject,
    co_exceptiontable: *mut PyObject,
    co_flags: c_int,
    co_warmup: i16,
    _co_linearray_entry_size: i16,
    co_argcount: c_int,
    co_posonlyargcount: c_int,
    co_kwonlyargcount: c_int,
    co_stacksize: c_int,
    co_firstlineno: c_int,
    co_nlocalsplus: c_int,
    co_nlocals: c_int,
    co_nplaincellvars: c_int,
    co_ncellvars: c_int,
    co_nfreevars: c_int,
    co_localsplusnames: *mut PyObject,
    co_localspluskinds: *mut PyObject,
    co_filename: *mut PyObject,
    co_name: *mut PyObject,
    co_qualname: *mut PyObject,
    co_linetable: *mut PyObject,
    co_weakreflist: *mut PyObject,
    _co_code: *mut PyObject,
    _co_linearray: *mut c_char,
    _co_firsttraceable: c_int,
    co_extra: *mut c_void,
    co_code_adaptive: [u16; 0],
}

#[cfg(all(Py_3_11, not(Py_3_12)))]
const _: () = {
    assert!(offset_of!(RawCode, co_flags) == 48);
    assert!(offset_of!(RawCode, co_argcount) == 56);
    assert!(offset_of!(RawCode, co_kwonlyargcount) == 64);
    assert!(offset_of!(RawCode, co_nlocalsplus) == 76);
    assert!(offset_of!(RawCode, co_name) == 120);
    assert!(offset_of!(RawCode, co_extra) == 176);
    assert!(offset_of!(RawCode, co_code_adaptive) == 184);
};

/// `PyCodeObject` up to `co_code_adaptive`, 3.12 and 3.13.
#[cfg(Py_3_12)]
#[repr(C)]
struct RawCode {
    ob_base: PyVarObject,
    co_consts: *mut PyObject,
    co_names: *mut PyObject,
    co_exceptiontable: *mut PyObject,
    co_flags: c_int,
    co_argcount: c_int,
    co_posonlyargcount: c_int,
    co_kwonlyargcount: c_int,
    co_stacksize: c_int,
    co_firstlineno: c_int,
    co_nlocalsplus: c_int,
    co_framesize: c_int,
    co_nlocals: c_int,
    co_ncellvars: c_int,
    co_nfreevars: c_int,
    co_version: u32,
    co_localsplusnames: *mut PyObject,
    co_localspluskinds: *mut PyObject,
    co_filename: *mut PyObject,
    co_name: *mut PyObject,
    co_qualname: *mut PyObject,
    co_linetable: *mut PyObject,
    co_weakreflist: *mut PyObject,
    #[cfg(Py_3_13)]
    co_executors: *mut c_void,
    _co_cached: *mut c_void,
    _co_instrumentation_version: u64,
    _co_monitoring: *mut c_void,
    _co_firsttraceable: c_int,
    co_extra: *mut c_void,
    co_code_adaptive: [u16; 0],
}

#[cfg(Py_3_12)]
const _: () = {
    assert!(offset_of!(RawCode, co_flags) == 48);
    assert!(offset_of!(RawCode, co_argcount) == 52);
    assert!(offset_of!(RawCode, co_kwonlyargcount) == 60);
    assert!(offset_of!(RawCode, co_nlocalsplus) == 72);
    assert!(offset_of!(RawCode, co_framesize) == 76);
    assert!(offset_of!(RawCode, co_name) == 120);
};
#[cfg(all(Py_3_12, not(Py_3_13)))]
const _: () = {
    assert!(offset_of!(RawCode, co_extra) == 184);
    assert!(offset_of!(RawCode, co_code_adaptive) == 192);
};
#[cfg(Py_3_13)]
const _: () = {
    assert!(offset_of!(RawCode, co_extra) == 192);
    assert!(offset_of!(RawCode, co_code_adaptive) == 200);
};

// ---------------------------------------------------------------------------
// Private CPython functions (pyo3-ffi treats frames as opaque and does not
// declare `_PyEval_EvalFrameDefault`).
// ---------------------------------------------------------------------------

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
    #[cfg_attr(not(Py_3_12), link_name = "_PyEval_RequestCodeExtraIndex")]
    fn PyUnstable_Eval_RequestCodeExtraIndex(free: Option<ffi::freefunc>) -> Py_ssize_t;
    #[cfg_attr(not(Py_3_12), link_name = "_PyCode_SetExtra")]
    fn PyUnstable_Code_SetExtra(
        code: *mut PyObject,
        index: Py_ssize_t,
        extra: *mut c_void,
    ) -> c_int;
    // Not referenced on later versions: an unresolved symbol would make the
    // whole extension fail to import there, not just the hook.
    #[cfg(all(Py_3_13, not(Py_3_14)))]
    fn _PyEval_FrameClearAndPop(tstate: *mut PyThreadState, frame: *mut Frame);
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

/// Reserves a `co_extra` slot with no free function (our values are tagged
/// integers, not pointers). Returns -1 on failure (no exception set).
///
/// # Safety
/// The GIL must be held.
pub unsafe fn request_code_extra_index() -> Py_ssize_t {
    // SAFETY: GIL held (caller).
    unsafe { PyUnstable_Eval_RequestCodeExtraIndex(None) }
}

/// `_PyCodeObjectExtra` (private to `Objects/codeobject.c`, unchanged
/// since 3.7): a size and an inline array of slots.
#[repr(C)]
struct RawCodeExtra {
    ce_size: Py_ssize_t,
    ce_extras: [*mut c_void; 1],
}

/// Reads slot `index` of `code`'s `co_extra` (0 when never set). This is
/// `PyUnstable_Code_GetExtra` without the type check and the call: the eval
/// function runs it for every frame.
///
/// # Safety
/// GIL held; `code` a live code object (borrowed); `index >= 0` obtained
/// from [`request_code_extra_index`].
#[inline]
pub unsafe fn code_get_extra(code: *mut PyObject, index: Py_ssize_t) -> usize {
    // SAFETY: `code` is a live code object (caller), so `co_extra` is NULL
    // or a live `_PyCodeObjectExtra` with `ce_size` slots.
    unsafe {
        let extra = (*code.cast::<RawCode>()).co_extra.cast::<RawCodeExtra>();
        if extra.is_null() || index < 0 || index >= (*extra).ce_size {
            return 0;
        }
        let slots = std::ptr::addr_of!((*extra).ce_extras).cast::<*mut c_void>();
        *slots.offset(index) as usize
    }
}

/// Stores `value` in slot `index` of `code`'s `co_extra`. Failure (memory)
/// is ignored: the code object is simply classified again next time.
///
/// # Safety
/// As [`code_get_extra`].
pub unsafe fn code_set_extra(code: *mut PyObject, index: Py_ssize_t, value: usize) {
    // SAFETY: forwarded to caller; no free function is registered, so a
    // tagged integer is a valid value.
    if unsafe { PyUnstable_Code_SetExtra(code, index, value as *mut c_void) } != 0 {
        // SAFETY: GIL held.
        unsafe { ffi::PyErr_Clear() };
    }
}

// ---------------------------------------------------------------------------
// Frame accessors
// ---------------------------------------------------------------------------

#[inline]
fn raw(frame: *mut Frame) -> *mut RawFrame {
    frame.cast()
}

/// The frame's code object (borrowed), or NULL if the frame does not run a
/// code object (3.13 shim frames have `f_executable = None`).
///
/// # Safety
/// `frame` is the live frame passed to the eval function.
#[inline]
pub unsafe fn frame_code(frame: *mut Frame) -> *mut PyObject {
    // SAFETY: `frame` is live (caller) and has our layout.
    let code = unsafe { (*raw(frame)).f_code };
    // SAFETY: `code` is a live object (the frame holds a strong reference).
    if unsafe { ffi::Py_TYPE(code) } == std::ptr::addr_of_mut!(ffi::PyCode_Type) {
        code
    } else {
        std::ptr::null_mut()
    }
}

/// The frame's function object (borrowed; may not be a function in theory).
///
/// # Safety
/// As [`frame_code`].
#[inline]
pub unsafe fn frame_func(frame: *mut Frame) -> *mut PyObject {
    #[cfg(not(Py_3_12))]
    // SAFETY: `frame` is live (caller).
    let func = unsafe { (*raw(frame)).f_func };
    #[cfg(Py_3_12)]
    // SAFETY: `frame` is live (caller).
    let func = unsafe { (*raw(frame)).f_funcobj };
    func
}

/// Pointer to `localsplus[0]` (the bound arguments come first).
///
/// # Safety
/// As [`frame_code`]; reads are valid for `co_nlocalsplus` entries.
#[inline]
pub unsafe fn frame_localsplus(frame: *mut Frame) -> *mut *mut PyObject {
    // SAFETY: `frame` is live (caller); no reference is created.
    unsafe { std::ptr::addr_of_mut!((*raw(frame)).localsplus).cast() }
}

/// True for a frame that is owned by the thread (not a generator or frame
/// object), has not started executing yet, has no frame object and no
/// `f_locals` mapping. Only such frames are ever intercepted.
///
/// # Safety
/// As [`frame_code`]; `code` is [`frame_code`]`(frame)`, non-NULL.
#[inline]
pub unsafe fn is_fresh_frame(frame: *mut Frame, code: *mut PyObject) -> bool {
    let f = raw(frame);
    // SAFETY: `frame` is live; `code` is its live code object.
    unsafe {
        let first =
            std::ptr::addr_of_mut!((*code.cast::<RawCode>()).co_code_adaptive).cast::<u16>();
        #[cfg(not(Py_3_13))]
        let fresh = (*f).prev_instr == first.wrapping_sub(1);
        #[cfg(Py_3_13)]
        let fresh = (*f).prev_instr == first;
        fresh
            && (*f).owner == FRAME_OWNED_BY_THREAD
            && (*f).frame_obj.is_null()
            && (*f).f_locals.is_null()
    }
}

/// `co_flags`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn code_flags(code: *mut PyObject) -> c_int {
    // SAFETY: caller.
    unsafe { (*code.cast::<RawCode>()).co_flags }
}

/// `co_argcount + co_kwonlyargcount`: the named parameters, which come
/// first in `localsplus`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn code_named_params(code: *mut PyObject) -> usize {
    // SAFETY: caller.
    let c = unsafe { &*code.cast::<RawCode>() };
    usize::try_from(c.co_argcount).unwrap_or(0) + usize::try_from(c.co_kwonlyargcount).unwrap_or(0)
}

/// `co_nlocalsplus` (an upper bound for argument slots).
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn code_nlocalsplus(code: *mut PyObject) -> usize {
    // SAFETY: caller.
    usize::try_from(unsafe { (*code.cast::<RawCode>()).co_nlocalsplus }).unwrap_or(0)
}

/// `co_name` (borrowed).
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn code_name(code: *mut PyObject) -> *mut PyObject {
    // SAFETY: caller.
    unsafe { (*code.cast::<RawCode>()).co_name }
}

/// `CO_FAST_LOCAL`: a `co_localspluskinds` entry that is a local variable
/// (what `co_varnames` lists).
pub const CO_FAST_LOCAL: u8 = 0x20;

/// What a fingerprint reads from a code object, straight from its struct:
/// no attribute lookups, and none of the tuples `co_varnames`,
/// `co_cellvars` and `co_freevars` build on every access since 3.11.
pub struct CodeParts<'py> {
    pub consts: Bound<'py, PyTuple>,
    pub names: Bound<'py, PyTuple>,
    pub exceptiontable: Bound<'py, PyBytes>,
    /// Every local, cell and free variable name, in frame order.
    pub localsplusnames: Bound<'py, PyTuple>,
    /// One kind byte per `localsplusnames` entry (`CO_FAST_*`).
    pub localspluskinds: Bound<'py, PyBytes>,
    pub name: Bound<'py, PyString>,
    pub flags: u32,
    pub argcount: u32,
    pub posonlyargcount: u32,
    pub kwonlyargcount: u32,
    pub ncellvars: u32,
    pub nfreevars: u32,
}

/// The fields of `code` a fingerprint reads (new references to the objects).
pub fn code_parts<'py>(code: &Bound<'py, PyCode>) -> CodeParts<'py> {
    let py = code.py();
    // SAFETY: `code` is a live code object (its type was checked by the cast
    // that made the `Bound<PyCode>`), so it has the `RawCode` layout of the
    // version we were built for; the GIL is held.
    let c = unsafe { &*code.as_ptr().cast::<RawCode>() };
    // SAFETY: CPython's code constructor sets each of these fields to a
    // live object of the stated type (tuple, bytes, str) and never changes
    // it afterwards; we take a new reference to each.
    let field = |p: *mut PyObject| unsafe { Bound::from_borrowed_ptr(py, p) };
    let count = |n: c_int| u32::try_from(n).unwrap_or(0);
    // SAFETY: each `cast_into_unchecked` is to the type named above.
    unsafe {
        CodeParts {
            consts: field(c.co_consts).cast_into_unchecked(),
            names: field(c.co_names).cast_into_unchecked(),
            exceptiontable: field(c.co_exceptiontable).cast_into_unchecked(),
            localsplusnames: field(c.co_localsplusnames).cast_into_unchecked(),
            localspluskinds: field(c.co_localspluskinds).cast_into_unchecked(),
            name: field(c.co_name).cast_into_unchecked(),
            flags: count(c.co_flags),
            argcount: count(c.co_argcount),
            posonlyargcount: count(c.co_posonlyargcount),
            kwonlyargcount: count(c.co_kwonlyargcount),
            ncellvars: count(c.co_ncellvars),
            nfreevars: count(c.co_nfreevars),
        }
    }
}

// ---------------------------------------------------------------------------
// Running a frame through the previous eval function
// ---------------------------------------------------------------------------

/// Runs `frame` with the eval function we chain to.
///
/// 3.12+: any PEP 523 hook disables call inlining, and every non-inlined
/// Python call costs two units of the C recursion budget (1500 in 3.12.1,
/// 10000 in 3.13.0), so with a hook installed plain Python recursion stops
/// at ~750 (3.12) or ~5000 (3.13) frames, below the default recursion limit
/// on 3.12. For the duration of the frame we set the budget to
/// `min(remaining + 2, LIMIT * share)`, where `share` is the free fraction
/// of this thread's C stack: Python frames no longer drain it, and C code
/// below never gets more units than CPython would grant for the stack that
/// is actually left (CPython sizes LIMIT for a whole, empty stack). Python
/// frames themselves are stopped by the stack guard in `stack.rs`.
/// 3.11: a plain (tail) call; `share` is unused.
///
/// # Safety
/// As for calling `prev` directly: GIL held, CPython's own arguments.
#[inline(always)]
pub unsafe fn chain(
    prev: EvalFn,
    tstate: *mut PyThreadState,
    frame: *mut Frame,
    throwflag: c_int,
    share: u32,
) -> *mut PyObject {
    #[cfg(Py_3_12)]
    {
        let budget = c_recursion_remaining(tstate);
        // LIMIT * share / 65536; both factors fit in 32 bits.
        let cap = ((i64::from(C_RECURSION_LIMIT) * i64::from(share)) >> 16) as c_int;
        // SAFETY: `tstate` is the live current thread state (caller); the
        // counter is only touched by this thread. Every path through the
        // evaluator leaves the counter as it found it, so restoring
        // `saved` undoes exactly our adjustment.
        unsafe {
            let saved = *budget;
            *budget = saved.saturating_add(C_UNITS_PER_CALL).min(cap);
            let r = prev(tstate, frame, throwflag);
            *budget = saved;
            r
        }
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = share;
        // SAFETY: forwarded.
        unsafe { prev(tstate, frame, throwflag) }
    }
}

/// Units of the C recursion budget one non-inlined Python call costs
/// (`_Py_EnterRecursiveCallTstate` twice on the call path).
#[cfg(Py_3_12)]
const C_UNITS_PER_CALL: c_int = 2;

/// A thread's initial C recursion budget, Linux release builds:
/// `C_RECURSION_LIMIT` (3.12 `Include/cpython/pystate.h`) and
/// `Py_C_RECURSION_LIMIT` (3.13).
#[cfg(all(Py_3_12, not(Py_3_13)))]
const C_RECURSION_LIMIT: c_int = 1500;
#[cfg(Py_3_13)]
const C_RECURSION_LIMIT: c_int = 10000;

/// `&tstate->c_recursion_remaining`.
#[cfg(all(Py_3_12, not(Py_3_13)))]
#[inline(always)]
fn c_recursion_remaining(tstate: *mut PyThreadState) -> *mut c_int {
    py312::c_recursion_remaining(tstate)
}

/// `struct _ts` (3.13 `Include/cpython/pystate.h`) up to the C budget.
#[cfg(Py_3_13)]
#[repr(C)]
struct RawThreadState313 {
    prev: *mut c_void,
    next: *mut c_void,
    interp: *mut c_void,
    eval_breaker: usize,
    _status: u32,
    _whence: c_int,
    state: c_int,
    py_recursion_remaining: c_int,
    py_recursion_limit: c_int,
    c_recursion_remaining: c_int,
}

#[cfg(Py_3_13)]
const _: () = {
    assert!(offset_of!(RawThreadState313, py_recursion_remaining) == 44);
    assert!(offset_of!(RawThreadState313, py_recursion_limit) == 48);
    assert!(offset_of!(RawThreadState313, c_recursion_remaining) == 52);
};

/// `&tstate->c_recursion_remaining`.
#[cfg(Py_3_13)]
#[inline(always)]
fn c_recursion_remaining(tstate: *mut PyThreadState) -> *mut c_int {
    let ts = tstate.cast::<RawThreadState313>();
    // SAFETY: no dereference; a field address inside the thread state.
    unsafe { std::ptr::addr_of_mut!((*ts).c_recursion_remaining) }
}

// ---------------------------------------------------------------------------
// Skipping a frame (returning without running it)
// ---------------------------------------------------------------------------

/// Whether [`skip_frame`] can dispose of this fresh frame.
///
/// # Safety
/// GIL held; `frame` passed [`is_fresh_frame`] and was given to the eval
/// function on `tstate`.
#[inline]
pub unsafe fn can_skip(tstate: *mut PyThreadState, frame: *mut Frame) -> bool {
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    {
        // SAFETY: forwarded.
        unsafe { py312::can_pop(tstate, frame) }
    }
    #[cfg(not(all(Py_3_12, not(Py_3_13))))]
    {
        let _ = (tstate, frame);
        true
    }
}

/// Prepares a fresh frame that will not be run so the eval function can
/// return (a value or NULL with an exception set).
///
/// 3.11: nothing to do, `_PyEval_Vector` clears and pops the frame.
/// 3.12: the evaluator owns that job, so clear and pop it here (a copy of
/// `clear_thread_frame`/`_PyThreadState_PopFrame`, restricted by
/// [`can_skip`] to frames without frame object or locals in a non-first
/// data-stack slot). 3.13: `_PyEval_FrameClearAndPop` (exported).
///
/// # Safety
/// GIL held; [`can_skip`] returned true for this frame; the frame is not
/// used afterwards.
#[inline]
pub unsafe fn skip_frame(tstate: *mut PyThreadState, frame: *mut Frame) {
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    // SAFETY: forwarded.
    unsafe {
        py312::clear_and_pop(tstate, frame)
    };
    #[cfg(all(Py_3_13, not(Py_3_14)))]
    // SAFETY: forwarded; the function is exported by libpython3.13.
    unsafe {
        _PyEval_FrameClearAndPop(tstate, frame)
    };
    // Before 3.12 the caller pops; 3.14+ is refused by `SUPPORT`.
    #[cfg(any(not(Py_3_12), Py_3_14))]
    let _ = (tstate, frame);
}

#[cfg(all(Py_3_12, not(Py_3_13)))]
mod py312 {
    use super::{Frame, RawCode, RawFrame};
    use pyo3::ffi::{self, PyObject, PyThreadState};
    use std::ffi::{c_int, c_uint, c_ulong, c_void};
    use std::mem::offset_of;

    /// `struct _ts` (3.12 `Include/cpython/pystate.h`) up to `datastack_limit`.
    #[repr(C)]
    pub(super) struct RawThreadState {
        prev: *mut c_void,
        next: *mut c_void,
        interp: *mut c_void,
        _status: c_uint,
        pub(super) py_recursion_remaining: c_int,
        pub(super) py_recursion_limit: c_int,
        c_recursion_remaining: c_int,
        recursion_headroom: c_int,
        tracing: c_int,
        what_event: c_int,
        cframe: *mut c_void,
        c_profilefunc: *mut c_void,
        c_tracefunc: *mut c_void,
        c_profileobj: *mut PyObject,
        c_traceobj: *mut PyObject,
        current_exception: *mut PyObject,
        exc_info: *mut c_void,
        dict: *mut PyObject,
        gilstate_counter: c_int,
        async_exc: *mut PyObject,
        thread_id: c_ulong,
        native_thread_id: c_ulong,
        trash_delete_nesting: c_int,
        trash_delete_later: *mut PyObject,
        on_delete: *mut c_void,
        on_delete_data: *mut c_void,
        coroutine_origin_tracking_depth: c_int,
        async_gen_firstiter: *mut PyObject,
        async_gen_finalizer: *mut PyObject,
        context: *mut PyObject,
        context_ver: u64,
        id: u64,
        datastack_chunk: *mut RawStackChunk,
        datastack_top: *mut *mut PyObject,
        datastack_limit: *mut *mut PyObject,
    }

    /// `_PyStackChunk`.
    #[repr(C)]
    struct RawStackChunk {
        previous: *mut RawStackChunk,
        size: usize,
        top: usize,
        data: [*mut PyObject; 1],
    }

    const _: () = {
        assert!(offset_of!(RawThreadState, py_recursion_remaining) == 28);
        assert!(offset_of!(RawThreadState, py_recursion_limit) == 32);
        assert!(offset_of!(RawThreadState, c_recursion_remaining) == 36);
        assert!(offset_of!(RawThreadState, datastack_chunk) == 232);
        assert!(offset_of!(RawThreadState, datastack_top) == 240);
        assert!(offset_of!(RawThreadState, datastack_limit) == 248);
        assert!(offset_of!(RawStackChunk, data) == 24);
    };

    /// `&tstate->c_recursion_remaining`.
    #[inline(always)]
    pub fn c_recursion_remaining(tstate: *mut PyThreadState) -> *mut c_int {
        let ts = tstate.cast::<RawThreadState>();
        // SAFETY: no dereference; a field address inside the thread state.
        unsafe { std::ptr::addr_of_mut!((*ts).c_recursion_remaining) }
    }

    /// True when the frame is the top of the data stack and not the first
    /// slot of a chunk (popping a chunk would need `_PyObject_VirtualFree`;
    /// such frames, rare, are simply run instead).
    ///
    /// # Safety
    /// GIL held; `frame` is a fresh frame just pushed on `tstate`.
    pub unsafe fn can_pop(tstate: *mut PyThreadState, frame: *mut Frame) -> bool {
        let ts = tstate.cast::<RawThreadState>();
        let base = frame.cast::<*mut PyObject>();
        // SAFETY: `tstate` is the live thread state (caller); the chunk is
        // the live current chunk; `frame`'s code is live.
        unsafe {
            let chunk = (*ts).datastack_chunk;
            if chunk.is_null() || base == std::ptr::addr_of_mut!((*chunk).data).cast() {
                return false;
            }
            let code = (*frame.cast::<RawFrame>()).f_code.cast::<RawCode>();
            let framesize = usize::try_from((*code).co_framesize).unwrap_or(usize::MAX);
            base.wrapping_add(framesize) == (*ts).datastack_top
        }
    }

    /// `clear_thread_frame` + `_PyThreadState_PopFrame` of 3.12
    /// (`Python/ceval.c`, `Python/frame.c`, `Python/pystate.c`) for a frame
    /// with `frame_obj == NULL` (checked by `is_fresh_frame`).
    ///
    /// Ownership: releases the frame's strong references (locals, function,
    /// code).
    ///
    /// # Safety
    /// [`can_pop`] returned true; the frame is not used afterwards.
    pub unsafe fn clear_and_pop(tstate: *mut PyThreadState, frame: *mut Frame) {
        let ts = tstate.cast::<RawThreadState>();
        let f = frame.cast::<RawFrame>();
        // SAFETY: the frame is live, unlinked and owned by this thread; its
        // first `stacktop` slots hold strong references or NULL. Finalizers
        // run by the decrefs push frames above `datastack_top`, which still
        // lies above this frame until the final store.
        unsafe {
            (*ts).c_recursion_remaining -= 1;
            let locals = std::ptr::addr_of_mut!((*f).localsplus).cast::<*mut PyObject>();
            let n = usize::try_from((*f).stacktop).unwrap_or(0);
            for i in 0..n {
                let slot = locals.add(i);
                let v = *slot;
                *slot = std::ptr::null_mut();
                ffi::Py_XDECREF(v);
            }
            (*f).stacktop = 0;
            ffi::Py_XDECREF((*f).f_locals);
            ffi::Py_DECREF((*f).f_funcobj);
            ffi::Py_DECREF((*f).f_code);
            (*ts).c_recursion_remaining += 1;
            (*ts).datastack_top = frame.cast();
        }
    }
}
