//! Dicts: when one last changed, and walking one in place.
//!
//! A [`Stamp`] gives a number that moves with every mutation of one dict,
//! which is how a plan's guards know that the globals, module and class
//! dicts they read are unchanged. [`items_where`] walks a dict without
//! copying it, and [`prefetch_tables`] asks for dicts before they are walked
//! (a new process's first walk of a library's modules is mostly cache
//! misses).
//!
//! 3.11 reads the dict's `ma_version_tag` (one field, no callback). From
//! 3.12 the tag is deprecated (PEP 699; gone in 3.14), so a dict watcher
//! keeps a counter per watched dict instead. It takes one of the
//! interpreter's eight dict-watcher slots, the first time a dict is watched,
//! and is called on each mutation of a watched dict (a counter increment).
//! A watched dict stays watched until it is deallocated.

use pyo3::ffi::PyObject;
use pyo3::prelude::*;
use pyo3::types::PyDict;

#[cfg(not(Py_3_12))]
pub use tag::Stamp;
#[cfg(Py_3_12)]
pub use watcher::Stamp;

#[cfg(not(Py_3_12))]
mod tag {
    use super::*;
    use pyo3::ffi;

    /// Nothing to hold: the tag is in the dict.
    pub struct Stamp;

    impl Stamp {
        /// Starts watching `d` (always possible here).
        pub fn watch(_d: &Bound<'_, PyDict>) -> Option<Stamp> {
            Some(Stamp)
        }

        /// The current stamp of `d`, the dict given to [`Stamp::watch`].
        #[inline]
        pub fn now(&self, d: &Bound<'_, PyDict>) -> u64 {
            // SAFETY: `d` is a live dict or dict subclass (its type was
            // checked by the cast that produced the `Bound<PyDict>`), so it
            // has the `PyDictObject` layout; reading a field needs the GIL.
            #[allow(deprecated)]
            unsafe {
                (*d.as_ptr().cast::<ffi::PyDictObject>()).ma_version_tag
            }
        }
    }
}

#[cfg(Py_3_12)]
mod watcher {
    use std::ffi::c_int;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use ahash::AHashMap;
    use pyo3::ffi::{self, PyObject};
    use pyo3::sync::PyOnceLock;

    use super::*;
    use crate::cpython::GilCell;

    /// `PyDict_EVENT_DEALLOCATED`.
    const DEALLOCATED: c_int = 5;

    type Callback =
        unsafe extern "C" fn(c_int, *mut PyObject, *mut PyObject, *mut PyObject) -> c_int;

    extern "C" {
        fn PyDict_AddWatcher(cb: Callback) -> c_int;
    }

    /// Our watcher id (`None`: no slot was free).
    static WATCHER: PyOnceLock<Option<c_int>> = PyOnceLock::new();
    /// Watched dict address -> its counter.
    static COUNTERS: GilCell<Option<AHashMap<usize, Arc<AtomicU64>>>> = GilCell::new(None);

    /// A watched dict's counter.
    pub struct Stamp(Arc<AtomicU64>);

    impl Stamp {
        /// Starts watching `d`; `None` when no watcher slot is free.
        pub fn watch(d: &Bound<'_, PyDict>) -> Option<Stamp> {
            let py = d.py();
            let id = (*WATCHER.get_or_init(py, || {
                // SAFETY: GIL held; `on_event` is a static function.
                let id = unsafe { PyDict_AddWatcher(on_event) };
                if id < 0 {
                    // SAFETY: GIL held; the failure set an exception.
                    unsafe { ffi::PyErr_Clear() };
                }
                (id >= 0).then_some(id)
            }))?;
            let key = d.as_ptr() as usize;
            // SAFETY: map operations and an `Arc` clone run no Python code.
            let (counter, new) = unsafe {
                COUNTERS.with(py, |m| {
                    let m = m.get_or_insert_with(AHashMap::new);
                    match m.get(&key) {
                        Some(c) => (c.clone(), false),
                        None => {
                            let c = Arc::new(AtomicU64::new(0));
                            m.insert(key, c.clone());
                            (c, true)
                        }
                    }
                })
            };
            // SAFETY: GIL held; `d` is a live dict; `id` is our watcher.
            if new && unsafe { ffi::PyDict_Watch(id, d.as_ptr()) } != 0 {
                // SAFETY: GIL held; the failure set an exception. Forget the
                // counter, which no event would move.
                unsafe {
                    ffi::PyErr_Clear();
                    COUNTERS.with(py, |m| m.as_mut().map(|m| m.remove(&key)));
                }
                return None;
            }
            Some(Stamp(counter))
        }

        /// The current stamp of `d`, the dict given to [`Stamp::watch`].
        #[inline]
        pub fn now(&self, _d: &Bound<'_, PyDict>) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// `PyDict_WatchCallback`: called before each mutation of a watched dict
    /// (and when it is deallocated), with the GIL held.
    unsafe extern "C" fn on_event(
        event: c_int,
        dict: *mut PyObject,
        _key: *mut PyObject,
        _new_value: *mut PyObject,
    ) -> c_int {
        // Nothing here panics; the guard keeps that true for later edits.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: CPython calls watchers with the GIL held.
            let py = unsafe { Python::assume_attached() };
            // SAFETY: map operations; a removed counter is an `Arc` whose
            // drop runs no Python code.
            unsafe {
                COUNTERS.with(py, |m| {
                    let Some(m) = m.as_mut() else { return };
                    if event == DEALLOCATED {
                        m.remove(&(dict as usize));
                    } else if let Some(c) = m.get(&(dict as usize)) {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                })
            }
        }));
        0
    }
}

/// The (key, value) pairs of `d` that `select` takes, with a reference to
/// each taken pair only: `d` is walked in place, not copied, and an item
/// `select` passes over is never referenced (a first walk of a library's
/// modules in a new process is a cache miss per object a reference count
/// is written to).
///
/// # Safety
/// `select` runs no Python code (no call, attribute read or comparison that
/// could reach one; reading type pointers, slots, struct fields and a `str`'s
/// text is fine): then nothing can change `d` under the walk, and the
/// borrowed key and value stay alive while `select` looks at them.
pub unsafe fn items_where<'py>(
    d: &Bound<'py, PyDict>,
    mut select: impl FnMut(&Bound<'py, PyAny>, &Bound<'py, PyAny>) -> bool,
) -> Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let py = d.py();
    let mut out = Vec::new();
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let mut key = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // A second walk, `AHEAD` items in front, asks for each key's and value's
    // header early: `select` reads a value's type or a key's text, and on a
    // first walk those reads are misses that would otherwise wait one after
    // the other.
    const AHEAD: usize = 8;
    let (mut ahead, mut k2, mut v2) = (0, std::ptr::null_mut(), std::ptr::null_mut());
    let mut prefetch = || {
        // SAFETY: as for the main walk below: `d` is unchanged throughout.
        if unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut ahead, &mut k2, &mut v2) } != 0 {
            prefetch_line(k2.cast_const());
            prefetch_line(v2.cast_const());
        }
    };
    for _ in 0..AHEAD {
        prefetch();
    }
    // SAFETY: `d` is a live dict and the GIL is held; no Python code runs in
    // the loop (the caller's promise for `select`; the rest is reference
    // increments), so `d` cannot change under `pos`.
    while unsafe { pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        prefetch();
        // SAFETY: `PyDict_Next` returned 1: both are non-NULL borrowed
        // references held by `d`, alive while it is unchanged (see above).
        let (k, v) = unsafe {
            (
                pyo3::Borrowed::from_ptr(py, key),
                pyo3::Borrowed::from_ptr(py, value),
            )
        };
        if select(&k, &v) {
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    out
}

/// Asks for the header of `o` (a hint).
pub fn prefetch_object(o: &Bound<'_, PyAny>) {
    prefetch_line(o.as_ptr());
}

/// Asks for each dict of `dicts` and the start of its table (the header,
/// the index and the first entries; a hint), before they are walked.
pub fn prefetch_tables(dicts: &[Bound<'_, PyDict>]) {
    /// Cache lines asked for per table: a small module's whole table.
    const LINES: usize = 16;
    for d in dicts {
        prefetch_line(d.as_ptr());
    }
    for d in dicts {
        // SAFETY: `d` is a live dict (the cast that made the `Bound` checked
        // its type), so it has the `PyDictObject` layout; `ma_keys` is read
        // with the GIL held, and only used as an address to prefetch.
        let keys = unsafe { (*d.as_ptr().cast::<pyo3::ffi::PyDictObject>()).ma_keys };
        for line in 0..LINES {
            prefetch_line(keys.cast::<u8>().wrapping_add(line * 64).cast());
        }
    }
}

/// Asks the CPU to bring the cache line at `p` in (a hint: nothing is read,
/// and no address faults).
#[inline(always)]
fn prefetch_line(p: *const PyObject) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads no memory and cannot fault, whatever `p` is;
    // SSE is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
