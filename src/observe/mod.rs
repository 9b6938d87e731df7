//! The observer: what a call reads or does at run time through C functions
//! it cannot be fingerprinted for (the clock, entropy, the file system's
//! metadata, the working directory, thread starts), reported while a miss
//! runs and at no cost otherwise.
//!
//! An observation is active in a context (thread, asyncio task) while the
//! context variable given to [`install`] holds a non-empty tuple (the
//! recorders of the misses running there). Calls of the watched C functions
//! made in such a context are passed to the handler, which decides what they
//! mean (`python/bytecache/_observe.py` holds the table).
mod interpose;
pub mod native_io;
pub mod rng;

use std::cell::Cell;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;

pub use interpose::{Mode, Refused};

/// Sets the context variable and the handler (replacing earlier ones).
pub fn install(var: &Bound<'_, PyAny>, handler: &Bound<'_, PyAny>) {
    for (slot, obj) in [(&interpose::VAR, var), (&interpose::HANDLER, handler)] {
        let old = slot.swap(obj.clone().into_ptr(), Ordering::AcqRel);
        if !old.is_null() {
            // SAFETY: a strong reference the slot owned; the GIL is held
            // (`obj.py()`).
            drop(unsafe { Bound::from_owned_ptr(obj.py(), old) });
        }
    }
}

/// Watches `func` (a builtin function, a method descriptor or a Cython
/// function): its calls in an observed context reach the handler with `tag`.
pub fn watch(func: &Bound<'_, PyAny>, tag: &Bound<'_, PyAny>, mode: Mode) -> Result<(), Refused> {
    // SAFETY: GIL held (the `Bound`s); both objects are live.
    unsafe { interpose::patch(func.as_ptr(), tag.as_ptr(), mode) }
}

/// Stops watching every function.
pub fn unwatch_all(_py: Python<'_>) {
    // SAFETY: GIL held (`_py`).
    unsafe { interpose::unpatch_all() }
}

/// Enters (`true`) or leaves bytecache's own work on this thread.
pub fn set_internal(on: bool) {
    interpose::INTERNAL.with(|c: &Cell<u32>| {
        c.set(if on {
            c.get() + 1
        } else {
            c.get().saturating_sub(1)
        })
    });
}

/// True inside bytecache's own work on this thread.
pub fn is_internal() -> bool {
    interpose::INTERNAL.with(|c| c.get() > 0)
}
