//! C-stack guard.
//!
//! With any PEP 523 hook installed, CPython stops inlining Python→Python
//! calls, so every Python call nests a few C frames. With a high
//! `sys.setrecursionlimit` deep recursion then overflows the C stack long
//! before the Python limit (measured: SIGSEGV at 20–30k frames on 3.11 with
//! an 8 MiB stack). The eval function checks the remaining stack of the
//! current thread and raises `RecursionError` when less than a margin is left.

use std::cell::Cell;

/// Headroom kept free for callbacks and C code between two Python frames.
const MARGIN: usize = 512 * 1024;

/// Per-thread stack limit, kept by the caller in its thread-local state
/// (one TLS lookup per frame: in a cdylib each costs a `__tls_get_addr` call).
pub struct Limit(Cell<usize>);

impl Limit {
    /// Not computed yet.
    pub const fn new() -> Self {
        Limit(Cell::new(0))
    }

    /// True when the current thread's C stack is nearly exhausted.
    #[inline(always)]
    pub fn near(&self) -> bool {
        let marker = 0u8;
        let sp = std::ptr::addr_of!(marker) as usize;
        let mut limit = self.0.get();
        if limit == 0 {
            // 1: unknown, the guard is off for this thread.
            limit = compute_limit().unwrap_or(1);
            self.0.set(limit);
        }
        sp < limit
    }
}

#[cfg(target_os = "linux")]
#[cold]
#[inline(never)]
fn compute_limit() -> Option<usize> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before use and
    // destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut addr, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 || addr.is_null() || size == 0 {
            return None;
        }
        // Small thread stacks keep three quarters usable.
        let margin = MARGIN.min(size / 4);
        Some(addr as usize + margin)
    }
}

#[cfg(not(target_os = "linux"))]
fn compute_limit() -> Option<usize> {
    None
}
