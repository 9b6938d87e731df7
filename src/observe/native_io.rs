//! Files that native code opens, and environment variables it reads, while
//! a miss runs: a library that reads a file in C, C++ or Rust (pyarrow,
//! polars, HDF5...) never passes through Python's `open`, so its reads would
//! not be dependencies. Its imports of libc's `open` family, `fopen`,
//! `getenv` and `dlopen` are rebound ([`crate::got`]) to the functions here,
//! which call the real ones and, while an observation is active in any
//! thread, log the path (made absolute), the flags and the file's state at
//! open (`fstat`), or the variable's name.
//!
//! The log is a fixed array written without locks or allocation (an open
//! can happen in a signal handler or a thread the GIL does not cover):
//! a slot is reserved with one `fetch_add` and published with its sequence
//! number. An observation reads the slots reserved since it began; a slot it
//! cannot read (overflow, a path too long, a writer still running) makes it
//! incomplete, and the call is then not stored. Every thread's opens are
//! attributed to every observation running (conservative).
//!
//! What is not seen: opens by libc itself or by the interpreter's own
//! binary (those are Python's `open`, seen by the audit hook), direct system
//! calls, `stat` without an open, and what a library's initializer reads
//! while `dlopen` runs.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, CStr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::got;

const CAP: usize = 2048;
const PATH: usize = 1024;

struct Slot {
    /// `generation << 32 | index + 1` once written; anything else: not ready.
    seq: AtomicU64,
    flags: UnsafeCell<c_int>,
    /// (S_IFMT, size, mtime_ns) from `fstat` when the open succeeded.
    state: UnsafeCell<Option<(u32, i64, i64)>>,
    len: UnsafeCell<usize>,
    path: UnsafeCell<[u8; PATH]>,
}

// SAFETY: a slot's cells are written only by the thread that reserved its
// index (one `fetch_add`), and read only after its `seq` is published with
// Release and observed with Acquire.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    seq: AtomicU64::new(0),
    flags: UnsafeCell::new(0),
    state: UnsafeCell::new(None),
    len: UnsafeCell::new(0),
    path: UnsafeCell::new([0; PATH]),
};

static SLOTS: [Slot; CAP] = [EMPTY; CAP];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static GENERATION: AtomicU64 = AtomicU64::new(1);
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static LOST: AtomicBool = AtomicBool::new(false);
static BOOK: Mutex<()> = Mutex::new(());

/// An open native code made while observed.
pub struct Opened {
    pub path: Vec<u8>,
    pub flags: c_int,
    pub state: Option<(u32, i64, i64)>,
}

/// Begins an observation: rebinds the imports of objects loaded since the
/// last one; returns where its log starts, or why native opens cannot be
/// observed here.
pub fn begin() -> Result<usize, &'static str> {
    let _book = BOOK.lock().unwrap_or_else(|e| e.into_inner());
    real::resolve()?;
    got::rebind_new(choose)?;
    ACTIVE.fetch_add(1, Ordering::SeqCst);
    Ok(NEXT.load(Ordering::SeqCst))
}

/// Ends an observation begun at `from`: what was opened since, and whether
/// that is all of it.
pub fn end(from: usize) -> (Vec<Opened>, bool) {
    let _book = BOOK.lock().unwrap_or_else(|e| e.into_inner());
    let generation = GENERATION.load(Ordering::SeqCst);
    let until = NEXT.load(Ordering::SeqCst);
    let mut complete = !LOST.load(Ordering::SeqCst) && until <= CAP;
    let mut out = Vec::new();
    for (index, slot) in SLOTS.iter().enumerate().take(until.min(CAP)).skip(from) {
        let want = generation << 32 | (index as u64 + 1);
        let mut ready = slot.seq.load(Ordering::Acquire) == want;
        for _ in 0..2000 {
            if ready {
                break;
            }
            std::thread::yield_now();
            ready = slot.seq.load(Ordering::Acquire) == want;
        }
        if !ready {
            complete = false;
            continue;
        }
        // SAFETY: published (`seq` seen with Acquire); its writer is done
        // and no other writer gets this index before the next reset, which
        // needs `BOOK`.
        unsafe {
            let len = *slot.len.get();
            let path = &*slot.path.get();
            out.push(Opened {
                path: path[..len].to_vec(),
                flags: *slot.flags.get(),
                state: *slot.state.get(),
            });
        }
    }
    if ACTIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
        // The last observation ended: start the log over. A writer that
        // checked ACTIVE before this and writes later publishes under the
        // old generation, which no reader accepts.
        GENERATION.fetch_add(1, Ordering::SeqCst);
        NEXT.store(0, Ordering::SeqCst);
        LOST.store(false, Ordering::SeqCst);
    }
    (out, complete)
}

/// Which imports an object gets rebound: none in the loader, libc and
/// bytecache itself; only `dlopen` in the interpreter (its opens are
/// Python's, seen by the audit hook) and in SQLite (observed at
/// `sqlite3.connect`); the `open` family too everywhere else.
fn choose(name: &[u8]) -> Option<got::Table<'static>> {
    let has = |part: &[u8]| name.windows(part.len()).any(|w| w == part);
    if has(b"linux-vdso")
        || has(b"ld-linux")
        || has(b"/libc.so")
        || has(b"libpthread.so")
        || has(b"libdl.so")
    {
        return None;
    }
    if real::is_own(name) {
        return None;
    }
    if name.is_empty() || has(b"libpython") || has(b"libsqlite3") || has(b"/_sqlite3") {
        return Some(real::DLOPEN_ONLY);
    }
    Some(real::ALL)
}

/// The `flags` of a logged `getenv`: the path is the variable's name.
pub const GETENV: c_int = c_int::MIN;

/// Logs an open made while observed.
fn note(dirfd: c_int, path: *const c_char, flags: c_int, fd: c_int) {
    if path.is_null() {
        return;
    }
    // SAFETY: `path` is the NUL-terminated string the caller passed to open.
    let path = unsafe { CStr::from_ptr(path) }.to_bytes();
    log(|buf| absolute(dirfd, path, buf), flags, fd);
}

/// Logs a `getenv` of `name` made while observed.
fn note_env(name: *const c_char) {
    if name.is_null() {
        return;
    }
    // SAFETY: getenv's argument is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    log(
        |buf| {
            let slot = buf.get_mut(..name.len())?;
            slot.copy_from_slice(name);
            Some(name.len())
        },
        GETENV,
        -1,
    );
}

/// Writes one slot while an observation is active: `fill` puts the path in
/// it, `fd` (when open) gives the file's state. Async-signal-safe: no
/// allocation, no lock; `errno` is kept for the caller.
fn log(fill: impl FnOnce(&mut [u8; PATH]) -> Option<usize>, flags: c_int, fd: c_int) {
    if ACTIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    // SAFETY: errno is thread-local; read and restored around our calls.
    let errno = unsafe { *libc::__errno_location() };
    let generation = GENERATION.load(Ordering::SeqCst);
    let index = NEXT.fetch_add(1, Ordering::SeqCst);
    if index >= CAP {
        LOST.store(true, Ordering::SeqCst);
        return;
    }
    let slot = &SLOTS[index];
    // SAFETY: this thread reserved `index` (no other writer gets it before
    // the next reset); readers wait for `seq`.
    unsafe {
        match fill(&mut *slot.path.get()) {
            Some(len) => *slot.len.get() = len,
            None => {
                LOST.store(true, Ordering::SeqCst);
                *libc::__errno_location() = errno;
                return;
            }
        }
        *slot.flags.get() = flags;
        let mut st: libc::stat = std::mem::zeroed();
        *slot.state.get() = if fd >= 0 && libc::fstat(fd, &mut st) == 0 {
            Some((
                st.st_mode & libc::S_IFMT,
                st.st_size,
                st.st_mtime
                    .saturating_mul(1_000_000_000)
                    .saturating_add(st.st_mtime_nsec),
            ))
        } else {
            None
        };
        slot.seq
            .store(generation << 32 | (index as u64 + 1), Ordering::Release);
        *libc::__errno_location() = errno;
    }
}

/// `path` made absolute in `buf` (against the working directory or the
/// directory `dirfd` is open on); its length, or None when it does not fit.
fn absolute(dirfd: c_int, path: &[u8], buf: &mut [u8; PATH]) -> Option<usize> {
    let mut len = 0;
    if path.first() != Some(&b'/') {
        if dirfd == libc::AT_FDCWD {
            // SAFETY: `buf` is PATH bytes; getcwd writes a NUL-terminated
            // string within them or fails.
            if unsafe { libc::getcwd(buf.as_mut_ptr().cast(), PATH) }.is_null() {
                return None;
            }
            len = buf.iter().position(|&b| b == 0)?;
        } else {
            let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
            let mut digits = [0u8; 11];
            let (mut n, mut k) = (dirfd as u32, digits.len());
            loop {
                k -= 1;
                digits[k] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let d = &digits[k..];
            link[14..14 + d.len()].copy_from_slice(d);
            // SAFETY: `link` is NUL-terminated; readlink writes at most
            // PATH bytes into `buf`.
            let n = unsafe { libc::readlink(link.as_ptr().cast(), buf.as_mut_ptr().cast(), PATH) };
            if n <= 0 || n as usize >= PATH {
                return None;
            }
            len = n as usize;
        }
        if len + 1 + path.len() > PATH {
            return None;
        }
        buf[len] = b'/';
        len += 1;
    }
    if len + path.len() > PATH {
        return None;
    }
    buf[len..len + path.len()].copy_from_slice(path);
    Some(len + path.len())
}

fn fopen_flags(mode: *const c_char) -> c_int {
    if mode.is_null() {
        return 0;
    }
    // SAFETY: fopen's mode is a NUL-terminated string.
    let m = unsafe { CStr::from_ptr(mode) }.to_bytes();
    let plus = m.contains(&b'+');
    match m.first() {
        Some(b'r') if plus => libc::O_RDWR,
        Some(b'r') => libc::O_RDONLY,
        Some(b'a') => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
        _ => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
    }
}

/// The replacements: each calls libc's function of the same name as this
/// extension's own import binds it (the global scope's, as every object's
/// import was bound), then logs the call.
mod real {
    use super::{fopen_flags, note, note_env};
    use crate::got;
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::sync::OnceLock;

    /// This extension's own file (its imports stay as they are).
    static OWN: OnceLock<Option<Vec<u8>>> = OnceLock::new();

    /// Finds this extension's file; false when the loader cannot say.
    pub fn resolve() -> Result<(), &'static str> {
        let own = OWN.get_or_init(|| {
            let mut info = libc::Dl_info {
                dli_fname: std::ptr::null(),
                dli_fbase: std::ptr::null_mut(),
                dli_sname: std::ptr::null(),
                dli_saddr: std::ptr::null_mut(),
            };
            // SAFETY: dladdr reads the loader's tables for an address of
            // this object's code; `info` is written on success.
            let found = unsafe { libc::dladdr(resolve as *const c_void, &mut info) } != 0;
            if !found || info.dli_fname.is_null() {
                return None;
            }
            // SAFETY: on success, a NUL-terminated string the loader owns.
            Some(
                unsafe { CStr::from_ptr(info.dli_fname) }
                    .to_bytes()
                    .to_vec(),
            )
        });
        own.as_ref()
            .map(|_| ())
            .ok_or("bytecache's own file was not found")
    }

    pub fn is_own(name: &[u8]) -> bool {
        matches!(OWN.get(), Some(Some(own)) if own == name)
    }

    // SAFETY (every replacement below): the caller's arguments are passed on
    // unchanged to the libc function with the same contract (`__open_2` and
    // `__openat_2` are `open`/`openat` with a check for a missing mode: the
    // mode passed is 0, read only with O_CREAT/O_TMPFILE, which they refuse).
    unsafe extern "C" fn open(p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: see above.
        let fd = unsafe { libc::open(p, f, m) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn open64(p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: see above.
        let fd = unsafe { libc::open64(p, f, m) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat(d: c_int, p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: see above.
        let fd = unsafe { libc::openat(d, p, f, m) };
        note(d, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat64(d: c_int, p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: see above.
        let fd = unsafe { libc::openat64(d, p, f, m) };
        note(d, p, f, fd);
        fd
    }
    unsafe extern "C" fn open_2(p: *const c_char, f: c_int) -> c_int {
        // SAFETY: see above.
        unsafe { open64(p, f, 0) }
    }
    unsafe extern "C" fn openat_2(d: c_int, p: *const c_char, f: c_int) -> c_int {
        // SAFETY: see above.
        unsafe { openat64(d, p, f, 0) }
    }
    fn fd_of(fp: *mut libc::FILE) -> c_int {
        if fp.is_null() {
            return -1;
        }
        // SAFETY: a FILE that fopen returned, not closed yet.
        unsafe { libc::fileno(fp) }
    }
    unsafe extern "C" fn fopen(p: *const c_char, m: *const c_char) -> *mut libc::FILE {
        // SAFETY: see above.
        let fp = unsafe { libc::fopen(p, m) };
        note(libc::AT_FDCWD, p, fopen_flags(m), fd_of(fp));
        fp
    }
    unsafe extern "C" fn fopen64(p: *const c_char, m: *const c_char) -> *mut libc::FILE {
        // SAFETY: see above.
        let fp = unsafe { libc::fopen64(p, m) };
        note(libc::AT_FDCWD, p, fopen_flags(m), fd_of(fp));
        fp
    }
    unsafe extern "C" fn getenv(name: *const c_char) -> *mut c_char {
        // SAFETY: see above.
        let value = unsafe { libc::getenv(name) };
        note_env(name);
        value
    }
    unsafe extern "C" fn dlopen(p: *const c_char, f: c_int) -> *mut c_void {
        // SAFETY: see above.
        let handle = unsafe { libc::dlopen(p, f) };
        if !handle.is_null() {
            // The object (and what it needs) is rebound before its code is
            // called. Its initializers have run already.
            let _ = got::rebind_new(super::choose);
        }
        handle
    }

    pub const DLOPEN_ONLY: got::Table<'static> = &[(b"dlopen", dlopen as *const ())];
    pub const ALL: got::Table<'static> = &[
        (b"dlopen", dlopen as *const ()),
        (b"open", open as *const ()),
        (b"open64", open64 as *const ()),
        (b"openat", openat as *const ()),
        (b"openat64", openat64 as *const ()),
        (b"__open_2", open_2 as *const ()),
        (b"__open64_2", open_2 as *const ()),
        (b"__openat_2", openat_2 as *const ()),
        (b"__openat64_2", openat_2 as *const ()),
        (b"fopen", fopen as *const ()),
        (b"fopen64", fopen64 as *const ()),
        (b"getenv", getenv as *const ()),
    ];
}
