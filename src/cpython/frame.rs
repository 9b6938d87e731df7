//! `_PyInterpreterFrame` (`Include/internal/pycore_frame.h`) and its
//! accessors: what the frame hook reads from a frame it is handed. Any
//! other frame read (the previous frame, the current instruction) belongs
//! here too, beside the layouts it depends on.

use std::ffi::{c_char, c_int, c_void};
use std::mem::offset_of;

use pyo3::ffi::{self, PyObject};

use super::code;

/// An opaque `_PyInterpreterFrame`. Only this module knows its layout.
#[repr(C)]
pub struct Frame {
    _private: [u8; 0],
}

/// `FRAME_OWNED_BY_THREAD`.
const OWNED_BY_THREAD: c_char = 0;

/// `_PyInterpreterFrame`, 3.11.
#[cfg(not(Py_3_12))]
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

#[cfg(not(Py_3_12))]
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

/// The offsets above, by C field name, for the layout test.
pub(super) fn offsets() -> Vec<(&'static str, usize)> {
    let mut v = vec![
        (
            "_PyInterpreterFrame.localsplus",
            offset_of!(RawFrame, localsplus),
        ),
        ("_PyInterpreterFrame.owner", offset_of!(RawFrame, owner)),
        (
            "_PyInterpreterFrame.stacktop",
            offset_of!(RawFrame, stacktop),
        ),
        (
            "_PyInterpreterFrame.previous",
            offset_of!(RawFrame, previous),
        ),
        (
            "_PyInterpreterFrame.frame_obj",
            offset_of!(RawFrame, frame_obj),
        ),
        (
            "_PyInterpreterFrame.f_locals",
            offset_of!(RawFrame, f_locals),
        ),
        (
            "sizeof _PyInterpreterFrame",
            std::mem::size_of::<RawFrame>(),
        ),
    ];
    #[cfg(not(Py_3_12))]
    v.extend([
        ("_PyInterpreterFrame.f_func", offset_of!(RawFrame, f_func)),
        ("_PyInterpreterFrame.f_code", offset_of!(RawFrame, f_code)),
        (
            "_PyInterpreterFrame.prev_instr",
            offset_of!(RawFrame, prev_instr),
        ),
        (
            "_PyInterpreterFrame.is_entry",
            offset_of!(RawFrame, is_entry),
        ),
    ]);
    #[cfg(all(Py_3_12, not(Py_3_13)))]
    v.extend([
        ("_PyInterpreterFrame.f_code", offset_of!(RawFrame, f_code)),
        (
            "_PyInterpreterFrame.prev_instr",
            offset_of!(RawFrame, prev_instr),
        ),
    ]);
    #[cfg(Py_3_13)]
    v.extend([
        (
            "_PyInterpreterFrame.f_executable",
            offset_of!(RawFrame, f_code),
        ),
        (
            "_PyInterpreterFrame.instr_ptr",
            offset_of!(RawFrame, prev_instr),
        ),
    ]);
    #[cfg(Py_3_12)]
    v.extend([
        (
            "_PyInterpreterFrame.f_funcobj",
            offset_of!(RawFrame, f_funcobj),
        ),
        (
            "_PyInterpreterFrame.return_offset",
            offset_of!(RawFrame, return_offset),
        ),
    ]);
    v
}

#[inline(always)]
fn raw(frame: *mut Frame) -> *mut RawFrame {
    frame.cast()
}

/// The frame's code object (borrowed), or NULL if the frame does not run a
/// code object (3.13 shim frames have `f_executable = None`).
///
/// # Safety
/// `frame` is a live frame.
#[inline]
pub unsafe fn code(frame: *mut Frame) -> *mut PyObject {
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
/// As [`code`].
#[inline]
pub unsafe fn func(frame: *mut Frame) -> *mut PyObject {
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
/// As [`code`]; reads are valid for `co_nlocalsplus` entries.
#[inline]
pub unsafe fn localsplus(frame: *mut Frame) -> *mut *mut PyObject {
    // SAFETY: `frame` is live (caller); no reference is created.
    unsafe { std::ptr::addr_of_mut!((*raw(frame)).localsplus).cast() }
}

/// True for a frame that is owned by the thread (not a generator or frame
/// object), has not started executing yet, has no frame object and no
/// `f_locals` mapping. Only such frames are ever intercepted.
///
/// # Safety
/// As [`code`]; `code` is [`code`]`(frame)`, non-NULL.
#[inline]
pub unsafe fn is_fresh(frame: *mut Frame, code: *mut PyObject) -> bool {
    let f = raw(frame);
    // SAFETY: `frame` is live; `code` is its live code object.
    unsafe {
        let first = code::first_instruction(code);
        #[cfg(not(Py_3_13))]
        let fresh = (*f).prev_instr == first.wrapping_sub(1);
        #[cfg(Py_3_13)]
        let fresh = (*f).prev_instr == first;
        fresh
            && (*f).owner == OWNED_BY_THREAD
            && (*f).frame_obj.is_null()
            && (*f).f_locals.is_null()
    }
}
