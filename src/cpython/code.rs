//! `PyCodeObject`: the struct prefix up to `co_code_adaptive`, per version
//! (`Include/cpython/code.h`), the fields read from it, the `co_extra` slots
//! (PEP 523's per-code storage) and `co_version`.
#![allow(non_snake_case)]

#[cfg(not(Py_3_12))]
use std::ffi::c_char;
use std::ffi::{c_int, c_void};
use std::mem::offset_of;

use pyo3::ffi::{self, PyObject, PyVarObject, Py_ssize_t};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyCode, PyString, PyTuple};

/// `CO_OPTIMIZED | CO_NEWLOCALS`: set on function bodies, not on module or
/// class bodies or `exec`'d code.
pub const CO_OPTIMIZED_NEWLOCALS: c_int = 0x0001 | 0x0002;
pub const CO_VARARGS: c_int = 0x0004;
pub const CO_VARKEYWORDS: c_int = 0x0008;
/// `CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR`.
pub const CO_RESUMABLE: c_int = 0x0020 | 0x0080 | 0x0100 | 0x0200;
/// `CO_FAST_LOCAL`: a `co_localspluskinds` entry that is a local variable
/// (what `co_varnames` lists).
pub const CO_FAST_LOCAL: u8 = 0x20;

/// `PyCodeObject` up to `co_code_adaptive`, 3.11.
#[cfg(not(Py_3_12))]
#[repr(C)]
pub(super) struct RawCode {
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

#[cfg(not(Py_3_12))]
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
pub(super) struct RawCode {
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
    assert!(offset_of!(RawCode, co_version) == 92);
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

/// The offsets above, by C field name, for the layout test.
pub(super) fn offsets() -> Vec<(&'static str, usize)> {
    #[cfg_attr(not(Py_3_12), allow(unused_mut))]
    let mut v = vec![
        ("PyCodeObject.co_flags", offset_of!(RawCode, co_flags)),
        ("PyCodeObject.co_argcount", offset_of!(RawCode, co_argcount)),
        (
            "PyCodeObject.co_kwonlyargcount",
            offset_of!(RawCode, co_kwonlyargcount),
        ),
        (
            "PyCodeObject.co_nlocalsplus",
            offset_of!(RawCode, co_nlocalsplus),
        ),
        ("PyCodeObject.co_name", offset_of!(RawCode, co_name)),
        ("PyCodeObject.co_extra", offset_of!(RawCode, co_extra)),
        (
            "PyCodeObject.co_code_adaptive",
            offset_of!(RawCode, co_code_adaptive),
        ),
    ];
    #[cfg(Py_3_12)]
    v.extend([
        (
            "PyCodeObject.co_framesize",
            offset_of!(RawCode, co_framesize),
        ),
        ("PyCodeObject.co_version", offset_of!(RawCode, co_version)),
    ]);
    v
}

#[inline(always)]
fn raw(code: *mut PyObject) -> *mut RawCode {
    code.cast()
}

/// `co_flags`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn flags(code: *mut PyObject) -> c_int {
    // SAFETY: a live code object has the `RawCode` prefix of this version.
    unsafe { (*raw(code)).co_flags }
}

/// `co_argcount + co_kwonlyargcount`: the named parameters, which come
/// first in `localsplus`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn named_params(code: *mut PyObject) -> usize {
    // SAFETY: as in `flags`.
    let c = unsafe { &*raw(code) };
    usize::try_from(c.co_argcount).unwrap_or(0) + usize::try_from(c.co_kwonlyargcount).unwrap_or(0)
}

/// `co_nlocalsplus` (an upper bound for argument slots).
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn nlocalsplus(code: *mut PyObject) -> usize {
    // SAFETY: as in `flags`.
    usize::try_from(unsafe { (*raw(code)).co_nlocalsplus }).unwrap_or(0)
}

/// `co_name` (borrowed).
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn name(code: *mut PyObject) -> *mut PyObject {
    // SAFETY: as in `flags`.
    unsafe { (*raw(code)).co_name }
}

/// A code object's parameters, read from its struct.
#[derive(Clone, Copy)]
pub struct Params {
    /// Positional parameters (positional-only ones first).
    pub argcount: usize,
    pub posonlyargcount: usize,
    pub kwonlyargcount: usize,
    pub flags: c_int,
    /// `co_localsplusnames` (borrowed): the parameter names come first, in
    /// frame order.
    pub names: *mut PyObject,
}

/// The parameters of `code`.
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub unsafe fn params(code: *mut PyObject) -> Params {
    // SAFETY: as in `flags`.
    let c = unsafe { &*raw(code) };
    let count = |n: c_int| usize::try_from(n).unwrap_or(0);
    Params {
        argcount: count(c.co_argcount),
        posonlyargcount: count(c.co_posonlyargcount),
        kwonlyargcount: count(c.co_kwonlyargcount),
        flags: c.co_flags,
        names: c.co_localsplusnames,
    }
}

/// The address of the first code unit (`_PyCode_CODE(code)`).
///
/// # Safety
/// `code` is a live code object.
#[inline]
pub(super) unsafe fn first_instruction(code: *mut PyObject) -> *mut u16 {
    // SAFETY: a field address inside the live code object; no read.
    unsafe { std::ptr::addr_of_mut!((*raw(code)).co_code_adaptive).cast::<u16>() }
}

/// What a fingerprint and an argument binder read from a code object,
/// straight from its struct: no attribute lookups, and none of the tuples
/// `co_varnames`, `co_cellvars` and `co_freevars` build on every access.
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
    let c = unsafe { &*raw(code.as_ptr()) };
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
// co_extra
// ---------------------------------------------------------------------------

extern "C" {
    // pyo3-ffi declares these from 3.12 on only; 3.11 spells them privately.
    #[cfg_attr(not(Py_3_12), link_name = "_PyEval_RequestCodeExtraIndex")]
    fn PyUnstable_Eval_RequestCodeExtraIndex(free: Option<ffi::freefunc>) -> Py_ssize_t;
    #[cfg_attr(not(Py_3_12), link_name = "_PyCode_SetExtra")]
    fn PyUnstable_Code_SetExtra(
        code: *mut PyObject,
        index: Py_ssize_t,
        extra: *mut c_void,
    ) -> c_int;
}

/// Reserves a `co_extra` slot; CPython calls `free` with each non-NULL value
/// stored in it when its code object is deallocated (`None`: values are not
/// pointers). `None` when no slot is left.
pub fn request_extra_index(_py: Python<'_>, free: Option<ffi::freefunc>) -> Option<Py_ssize_t> {
    // SAFETY: the GIL is held (`_py`).
    let i = unsafe { PyUnstable_Eval_RequestCodeExtraIndex(free) };
    (i >= 0).then_some(i)
}

/// `_PyCodeObjectExtra` (private to `Objects/codeobject.c`, unchanged since
/// 3.7): a size and an inline array of slots.
#[repr(C)]
struct RawCodeExtra {
    ce_size: Py_ssize_t,
    ce_extras: [*mut c_void; 1],
}

/// The value in slot `index` of `code` (NULL when never set). This is
/// `PyUnstable_Code_GetExtra` without the type check and the call: the frame
/// hook runs it for every frame.
///
/// # Safety
/// GIL held; `code` a live code object; `index` from
/// [`request_extra_index`].
#[inline]
pub unsafe fn extra(code: *mut PyObject, index: Py_ssize_t) -> *mut c_void {
    // SAFETY: `code` is a live code object (caller), so `co_extra` is NULL
    // or a live `_PyCodeObjectExtra` with `ce_size` slots.
    unsafe {
        let extra = (*raw(code)).co_extra.cast::<RawCodeExtra>();
        if extra.is_null() || index < 0 || index >= (*extra).ce_size {
            return std::ptr::null_mut();
        }
        let slots = std::ptr::addr_of!((*extra).ce_extras).cast::<*mut c_void>();
        *slots.offset(index)
    }
}

/// Stores `value` in slot `index` of `code`; false when it could not
/// (memory; no exception is left set). A value already in the slot is
/// replaced without being freed.
///
/// # Safety
/// As [`extra`]; `value` is what the slot's free function expects.
pub unsafe fn set_extra(code: *mut PyObject, index: Py_ssize_t, value: *mut c_void) -> bool {
    // SAFETY: forwarded to the caller.
    if unsafe { PyUnstable_Code_SetExtra(code, index, value) } == 0 {
        return true;
    }
    // SAFETY: GIL held; the failure set an exception.
    unsafe { ffi::PyErr_Clear() };
    false
}

// ---------------------------------------------------------------------------
// co_version
// ---------------------------------------------------------------------------

/// Makes the functions `MAKE_FUNCTION` creates from `code` until
/// [`release_version`] unversioned: 3.12 and 3.13 copy `co_version` into a
/// new function's `func_version` *after* function watchers have seen it, and
/// a versioned function can be specialized into calls that never read its
/// vectorcall. Returns the version to restore (0 on 3.11, which has no such
/// field and whose vectorcalls bytecache does not use).
///
/// # Safety
/// GIL held; `code` a live code object. Restore before anything else can
/// deallocate `code` (3.13 clears its function-version cache by
/// `co_version` when a code object dies).
pub unsafe fn hold_version(code: *mut PyObject) -> u32 {
    #[cfg(Py_3_12)]
    // SAFETY: live code object (caller); a plain field, written under the GIL.
    unsafe {
        let c = raw(code);
        let v = (*c).co_version;
        (*c).co_version = 0;
        v
    }
    #[cfg(not(Py_3_12))]
    {
        let _ = code;
        0
    }
}

/// Puts back the version [`hold_version`] took (a no-op for 0).
///
/// # Safety
/// GIL held; `code` the live code object `version` came from.
pub unsafe fn release_version(code: *mut PyObject, version: u32) {
    #[cfg(Py_3_12)]
    if version != 0 {
        // SAFETY: as in `hold_version`.
        unsafe { (*raw(code)).co_version = version };
    }
    #[cfg(not(Py_3_12))]
    let _ = (code, version);
}

/// A `co_extra` slot holding an `Arc<T>` per code object: found without a
/// lock or a global table, dropped with the code object.
pub struct ArcSlot<T> {
    /// -1 until requested, -2 when none could be had.
    index: std::sync::atomic::AtomicIsize,
    _values: std::marker::PhantomData<fn() -> T>,
}

impl<T> ArcSlot<T> {
    pub const fn new() -> Self {
        ArcSlot {
            index: std::sync::atomic::AtomicIsize::new(-1),
            _values: std::marker::PhantomData,
        }
    }

    /// Called by CPython when a code object holding a value is deallocated
    /// (with the GIL held).
    unsafe extern "C" fn free(p: *mut c_void) {
        if !p.is_null() {
            // SAFETY: every non-NULL value in the slot came from
            // `Arc::into_raw` in `set`, and CPython calls this once per
            // stored value.
            drop(unsafe { std::sync::Arc::from_raw(p.cast_const().cast::<T>()) });
        }
    }

    fn index(&self, py: Python<'_>) -> Option<Py_ssize_t> {
        use std::sync::atomic::Ordering;
        let i = self.index.load(Ordering::Relaxed);
        if i >= 0 {
            return Some(i);
        }
        if i == -2 {
            return None;
        }
        // The GIL (`py`) serializes this first request.
        let i = request_extra_index(py, Some(Self::free));
        self.index.store(i.unwrap_or(-2), Ordering::Relaxed);
        i
    }

    /// The value stored on `code`, if any.
    pub fn get(&self, code: &Bound<'_, PyCode>) -> Option<std::sync::Arc<T>> {
        let i = self.index(code.py())?;
        // SAFETY: GIL held; `code` is a live code object; `i` is our slot.
        let p = unsafe { extra(code.as_ptr(), i) };
        if p.is_null() {
            return None;
        }
        let p = p.cast_const().cast::<T>();
        // SAFETY: `p` came from `Arc::into_raw` in `set` and the slot still
        // owns that reference (the code object is alive), so adding one is
        // sound.
        unsafe {
            std::sync::Arc::increment_strong_count(p);
            Some(std::sync::Arc::from_raw(p))
        }
    }

    /// Stores `value` on `code` (nothing happens when no slot is available).
    /// Call only when `get` found nothing: a stored value is not replaced.
    pub fn set(&self, code: &Bound<'_, PyCode>, value: &std::sync::Arc<T>) {
        let Some(i) = self.index(code.py()) else {
            return;
        };
        // SAFETY: GIL held; live code object; our slot.
        if !unsafe { extra(code.as_ptr(), i) }.is_null() {
            return;
        }
        let p = std::sync::Arc::into_raw(value.clone())
            .cast_mut()
            .cast::<c_void>();
        // SAFETY: GIL held; live code object; our slot, whose free function
        // drops what `Arc::into_raw` made; the slot is empty (checked above).
        if !unsafe { set_extra(code.as_ptr(), i, p) } {
            // SAFETY: not stored: take the reference back.
            drop(unsafe { std::sync::Arc::from_raw(p.cast_const().cast::<T>()) });
        }
    }
}
