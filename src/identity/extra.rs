//! Code analyses kept on the code objects themselves, in a `co_extra` slot
//! (PEP 523's per-code storage): found without a lock or a global table,
//! freed with the code object.
use std::ffi::c_void;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyCode;

use super::code::CodeInfo;

/// Our slot; -1 until requested, -2 when none could be had.
static INDEX: AtomicIsize = AtomicIsize::new(-1);

/// Called by CPython when a code object holding one of our analyses is
/// deallocated (with the GIL held).
unsafe extern "C" fn free_info(p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: every non-NULL value in our slot came from `Arc::into_raw`
        // in `set`, and CPython calls this once per stored value.
        drop(unsafe { Arc::from_raw(p.cast_const().cast::<CodeInfo>()) });
    }
}

fn index(_py: Python<'_>) -> Option<ffi::Py_ssize_t> {
    let i = INDEX.load(Ordering::Relaxed);
    if i >= 0 {
        return Some(i);
    }
    if i == -2 {
        return None;
    }
    // SAFETY: the GIL is held (`_py`), which also serializes this first
    // request; `free_info` matches what `set` stores.
    let i = unsafe { ffi::PyUnstable_Eval_RequestCodeExtraIndex(free_info) };
    INDEX.store(if i < 0 { -2 } else { i }, Ordering::Relaxed);
    (i >= 0).then_some(i)
}

/// The analysis stored on `code`, if any.
pub fn get(code: &Bound<'_, PyCode>) -> Option<Arc<CodeInfo>> {
    let i = index(code.py())?;
    let mut p: *mut c_void = std::ptr::null_mut();
    // SAFETY: GIL held; `code` is a live code object; `i` is our slot.
    if unsafe { ffi::PyUnstable_Code_GetExtra(code.as_ptr(), i, &mut p) } != 0 {
        // SAFETY: GIL held; the failure set an exception.
        unsafe { ffi::PyErr_Clear() };
        return None;
    }
    if p.is_null() {
        return None;
    }
    let p = p.cast_const().cast::<CodeInfo>();
    // SAFETY: `p` came from `Arc::into_raw` in `set` and the slot still owns
    // that reference (the code object is alive), so adding one is sound.
    unsafe {
        Arc::increment_strong_count(p);
        Some(Arc::from_raw(p))
    }
}

/// Stores `info` on `code` (nothing happens if no slot is available).
pub fn set(code: &Bound<'_, PyCode>, info: &Arc<CodeInfo>) {
    let Some(i) = index(code.py()) else {
        return;
    };
    let p = Arc::into_raw(info.clone()).cast_mut().cast::<c_void>();
    // SAFETY: GIL held; live code object; our slot, whose free function
    // drops what `Arc::into_raw` made. Only called when `get` found the slot
    // empty, so no stored value is overwritten (and leaked).
    let rc = unsafe { ffi::PyUnstable_Code_SetExtra(code.as_ptr(), i, p) };
    if rc != 0 {
        // SAFETY: not stored: take the reference back; clear the error.
        unsafe {
            drop(Arc::from_raw(p.cast_const().cast::<CodeInfo>()));
            ffi::PyErr_Clear();
        }
    }
}
