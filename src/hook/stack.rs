//! C-stack guard.
//!
//! Every call that goes through us nests a few C frames (with a PEP 523 hook
//! installed CPython stops inlining Python→Python calls altogether; an
//! intercepted function's vectorcall runs its frame in a new C-level
//! evaluation). With a high `sys.setrecursionlimit` deep recursion then
//! overflows the C stack long before the Python limit (measured: SIGSEGV at
//! 20–30k frames on 3.11 with an 8 MiB stack). Both mechanisms check the
//! remaining stack of the current thread and raise `RecursionError` when
//! less than a margin is left.

use std::cell::Cell;

use pyo3::ffi;

/// Headroom kept free for callbacks and C code between two Python frames.
const MARGIN: usize = 512 * 1024;

/// [`Room::share`] of a thread whose stack is entirely free (or unknown).
pub const FULL_SHARE: u32 = 1 << 16;

/// The current thread's stack as the eval function sees it.
#[derive(Clone, Copy)]
pub struct Room {
    /// Less than the margin is left: raise `RecursionError`.
    pub exhausted: bool,
    /// Free stack as a fraction of the whole stack, in units of 1/65536
    /// (scales CPython's C recursion budget: `cpython::thread`).
    pub share: u32,
}

impl Room {
    /// A thread known to be far from the end of its stack.
    pub const AMPLE: Room = Room {
        exhausted: false,
        share: FULL_SHARE,
    };
}

/// Below this many Python frames the thread is taken to be far from the end
/// of its C stack (a few hundred KiB at most are in use), and the stack
/// guard's thread-local lookup is skipped.
pub const SHALLOW_DEPTH: i32 = 128;

/// Sets the `RecursionError` raised instead of running a call when the C
/// stack is nearly exhausted.
///
/// # Safety
/// The GIL must be held.
#[cold]
pub unsafe fn recursion_error() {
    // SAFETY: GIL held (caller).
    unsafe {
        ffi::PyErr_SetString(
            ffi::PyExc_RecursionError,
            c"maximum recursion depth exceeded (C stack nearly exhausted under bytecache)".as_ptr(),
        );
    }
}

/// Per-thread stack bounds, kept by the caller in its thread-local state
/// (one TLS lookup per frame: in a cdylib each costs a `__tls_get_addr` call).
pub struct Stack {
    /// Lowest usable address; 0: not computed yet.
    bottom: Cell<usize>,
    /// `(1 << 48) / size`, so that `free * inv >> 32 == free * 65536 / size`;
    /// 0: bounds unknown, the guard is off for this thread.
    inv: Cell<u64>,
    /// Bytes that must stay free.
    margin: Cell<usize>,
}

impl Stack {
    /// Not computed yet.
    pub const fn new() -> Self {
        Stack {
            bottom: Cell::new(0),
            inv: Cell::new(0),
            margin: Cell::new(0),
        }
    }

    /// Where the current stack pointer stands.
    #[inline(always)]
    pub fn room(&self) -> Room {
        let marker = 0u8;
        let sp = std::ptr::addr_of!(marker) as usize;
        if self.bottom.get() == 0 {
            self.init();
        }
        let inv = self.inv.get();
        if inv == 0 {
            return Room {
                exhausted: false,
                share: FULL_SHARE,
            };
        }
        let free = sp.saturating_sub(self.bottom.get());
        let share = ((free as u64).saturating_mul(inv) >> 32).min(u64::from(FULL_SHARE));
        Room {
            exhausted: free < self.margin.get(),
            // At most FULL_SHARE, which fits in u32.
            share: share as u32,
        }
    }

    #[cold]
    #[inline(never)]
    fn init(&self) {
        match compute_bounds() {
            Some((bottom, size)) if bottom != 0 && size > 0 => {
                self.bottom.set(bottom);
                self.inv.set((1u64 << 48) / size as u64);
                // Small thread stacks keep three quarters usable.
                self.margin.set(MARGIN.min(size / 4));
            }
            _ => {
                self.bottom.set(1);
                self.inv.set(0);
            }
        }
    }
}

/// `(lowest address, size)` of the current thread's stack.
#[cfg(target_os = "linux")]
fn compute_bounds() -> Option<(usize, usize)> {
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
        Some((addr as usize, size))
    }
}

#[cfg(not(target_os = "linux"))]
fn compute_bounds() -> Option<(usize, usize)> {
    None
}
