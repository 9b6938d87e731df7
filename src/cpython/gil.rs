//! `GilCell`: state touched only while this thread holds the GIL, so it
//! needs no lock and no atomic operations (each of which costs tens of
//! nanoseconds on a call path that has a few hundred).
//!
//! The extension does not declare free-threading support (pyo3 modules
//! default to `gil_used = true`), so a GIL exists whenever our code runs,
//! and a `Python` token proves the current thread holds it.
use std::cell::UnsafeCell;

use pyo3::Python;

pub struct GilCell<T>(UnsafeCell<T>);

// SAFETY: the contents are only reached through `with`, which requires a
// `Python` token: the GIL serializes every access, across threads too.
unsafe impl<T> Sync for GilCell<T> {}
// SAFETY: as above; moving the cell between threads moves no access.
unsafe impl<T> Send for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        GilCell(UnsafeCell::new(value))
    }

    /// Runs `f` with exclusive access to the contents.
    ///
    /// # Safety
    /// `f` must not run Python code (no calls into Python, no Python
    /// allocation, no drop of an object whose deallocation can run Python
    /// code): Python code could re-enter and reach the same cell.
    pub unsafe fn with<R>(&self, _py: Python<'_>, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the GIL (`_py`) excludes other threads; the caller
        // guarantees `f` does not re-enter.
        f(unsafe { &mut *self.0.get() })
    }

    /// Shared access for the garbage collector's traversal, which runs with
    /// the GIL held and never inside `with` (`f` allocates no Python object,
    /// so it cannot trigger a collection).
    ///
    /// # Safety
    /// Call only from `__traverse__`.
    pub unsafe fn peek(&self) -> &T {
        // SAFETY: see above.
        unsafe { &*self.0.get() }
    }
}
