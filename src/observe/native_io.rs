//! Files that native code opens while a miss runs: a library that reads a
//! file in C, C++ or Rust (pyarrow, polars, HDF5...) never passes through
//! Python's `open`, so its reads would not be dependencies. Its imports of
//! libc's `open` family, `fopen` and `dlopen` are rebound ([`super::got`])
//! to the functions here, which call the real ones and, while an
//! observation is active in any thread, log the path (made absolute), the
//! flags and the file's state at open (`fstat`).
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

use super::got;

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

/// Logs an open made while observed. Async-signal-safe: no allocation, no
/// lock; `errno` is kept for the caller.
fn note(dirfd: c_int, path: *const c_char, flags: c_int, fd: c_int) {
    if ACTIVE.load(Ordering::Relaxed) == 0 || path.is_null() {
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
    // SAFETY: this thread reserved `index`; readers wait for `seq`. `path`
    // is the NUL-terminated string the caller passed to open.
    unsafe {
        let buf = &mut *slot.path.get();
        match absolute(dirfd, CStr::from_ptr(path).to_bytes(), buf) {
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

/// The real functions (looked up once, as the global scope binds them) and
/// the replacements that call them.
mod real {
    use super::{fopen_flags, got, note};
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::sync::OnceLock;

    type Open = unsafe extern "C" fn(*const c_char, c_int, libc::mode_t) -> c_int;
    type OpenAt = unsafe extern "C" fn(c_int, *const c_char, c_int, libc::mode_t) -> c_int;
    type Open2 = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
    type OpenAt2 = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
    type FOpen = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
    type DlOpen = unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void;

    struct Real {
        open: Open,
        open64: Open,
        openat: OpenAt,
        openat64: OpenAt,
        open_2: Option<Open2>,
        open64_2: Option<Open2>,
        openat_2: Option<OpenAt2>,
        openat64_2: Option<OpenAt2>,
        fopen: FOpen,
        fopen64: FOpen,
        dlopen: DlOpen,
        /// This extension's own file.
        own: Vec<u8>,
    }

    static REAL: OnceLock<Result<Real, &'static str>> = OnceLock::new();

    fn lookup(name: &CStr) -> Option<usize> {
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT is the
        // global scope, where every object's import of `name` was bound.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p as usize)
    }

    pub fn resolve() -> Result<(), &'static str> {
        REAL.get_or_init(|| {
            let need = |name: &CStr| lookup(name).ok_or("libc's open functions were not found");
            let mut info = no_info();
            // SAFETY: dladdr reads the loader's tables for an address of
            // this object's code; `info` is written on success.
            let own = if unsafe { libc::dladdr(resolve as *const c_void, &mut info) } != 0
                && !info.dli_fname.is_null()
            {
                // SAFETY: a NUL-terminated string the loader owns.
                unsafe { CStr::from_ptr(info.dli_fname) }
                    .to_bytes()
                    .to_vec()
            } else {
                return Err("bytecache's own file was not found");
            };
            // SAFETY: each transmute: the symbol is the libc function of that
            // name, whose C type is the signature given (the variadic
            // `mode` of open/openat is passed in the same register as a
            // named argument on x86-64 and aarch64 Linux, and read only with
            // O_CREAT/O_TMPFILE).
            unsafe {
                Ok(Real {
                    open: std::mem::transmute::<usize, Open>(need(c"open")?),
                    open64: std::mem::transmute::<usize, Open>(need(c"open64")?),
                    openat: std::mem::transmute::<usize, OpenAt>(need(c"openat")?),
                    openat64: std::mem::transmute::<usize, OpenAt>(need(c"openat64")?),
                    open_2: lookup(c"__open_2").map(|p| std::mem::transmute::<usize, Open2>(p)),
                    open64_2: lookup(c"__open64_2").map(|p| std::mem::transmute::<usize, Open2>(p)),
                    openat_2: lookup(c"__openat_2")
                        .map(|p| std::mem::transmute::<usize, OpenAt2>(p)),
                    openat64_2: lookup(c"__openat64_2")
                        .map(|p| std::mem::transmute::<usize, OpenAt2>(p)),
                    fopen: std::mem::transmute::<usize, FOpen>(need(c"fopen")?),
                    fopen64: std::mem::transmute::<usize, FOpen>(need(c"fopen64")?),
                    dlopen: std::mem::transmute::<usize, DlOpen>(need(c"dlopen")?),
                    own,
                })
            }
        })
        .as_ref()
        .map(|_| ())
        .map_err(|e| *e)
    }

    fn no_info() -> libc::Dl_info {
        libc::Dl_info {
            dli_fname: std::ptr::null(),
            dli_fbase: std::ptr::null_mut(),
            dli_sname: std::ptr::null(),
            dli_saddr: std::ptr::null_mut(),
        }
    }

    fn get() -> &'static Real {
        match REAL.get() {
            Some(Ok(r)) => r,
            // Replacements are bound only after `resolve` succeeded.
            _ => unreachable!("rebound before the real functions were found"),
        }
    }

    pub fn is_own(name: &[u8]) -> bool {
        matches!(REAL.get(), Some(Ok(r)) if r.own == name)
    }

    unsafe extern "C" fn open(p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: the caller's arguments, passed on unchanged.
        let fd = unsafe { (get().open)(p, f, m) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn open64(p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: as `open`.
        let fd = unsafe { (get().open64)(p, f, m) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat(d: c_int, p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: as `open`.
        let fd = unsafe { (get().openat)(d, p, f, m) };
        note(d, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat64(d: c_int, p: *const c_char, f: c_int, m: libc::mode_t) -> c_int {
        // SAFETY: as `open`.
        let fd = unsafe { (get().openat64)(d, p, f, m) };
        note(d, p, f, fd);
        fd
    }
    unsafe extern "C" fn open_2(p: *const c_char, f: c_int) -> c_int {
        let r = get();
        // SAFETY: as `open`; bound only where libc has `__open_2`.
        let fd = unsafe { r.open_2.map_or_else(|| (r.open)(p, f, 0), |g| g(p, f)) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn open64_2(p: *const c_char, f: c_int) -> c_int {
        let r = get();
        // SAFETY: as `open_2`.
        let fd = unsafe { r.open64_2.map_or_else(|| (r.open64)(p, f, 0), |g| g(p, f)) };
        note(libc::AT_FDCWD, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat_2(d: c_int, p: *const c_char, f: c_int) -> c_int {
        let r = get();
        // SAFETY: as `open_2`.
        let fd = unsafe {
            r.openat_2
                .map_or_else(|| (r.openat)(d, p, f, 0), |g| g(d, p, f))
        };
        note(d, p, f, fd);
        fd
    }
    unsafe extern "C" fn openat64_2(d: c_int, p: *const c_char, f: c_int) -> c_int {
        let r = get();
        // SAFETY: as `open_2`.
        let fd = unsafe {
            r.openat64_2
                .map_or_else(|| (r.openat64)(d, p, f, 0), |g| g(d, p, f))
        };
        note(d, p, f, fd);
        fd
    }
    fn fd_of(fp: *mut libc::FILE) -> c_int {
        if fp.is_null() {
            return -1;
        }
        // SAFETY: a FILE that fopen returned, not closed yet.
        unsafe { libc::fileno(fp) }
    }
    unsafe extern "C" fn fopen(p: *const c_char, m: *const c_char) -> *mut libc::FILE {
        // SAFETY: as `open`.
        let fp = unsafe { (get().fopen)(p, m) };
        let fd = fd_of(fp);
        note(libc::AT_FDCWD, p, fopen_flags(m), fd);
        fp
    }
    unsafe extern "C" fn fopen64(p: *const c_char, m: *const c_char) -> *mut libc::FILE {
        // SAFETY: as `open`.
        let fp = unsafe { (get().fopen64)(p, m) };
        let fd = fd_of(fp);
        note(libc::AT_FDCWD, p, fopen_flags(m), fd);
        fp
    }
    unsafe extern "C" fn dlopen(p: *const c_char, f: c_int) -> *mut c_void {
        // SAFETY: as `open`.
        let handle = unsafe { (get().dlopen)(p, f) };
        if !handle.is_null() {
            // The object (and what it needs) is rebound before its code is
            // called. Its initializers have run already.
            let _ = crate::observe::got::rebind_new(super::choose);
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
        (b"__open64_2", open64_2 as *const ()),
        (b"__openat_2", openat_2 as *const ()),
        (b"__openat64_2", openat64_2 as *const ()),
        (b"fopen", fopen as *const ()),
        (b"fopen64", fopen64 as *const ()),
    ];
}
