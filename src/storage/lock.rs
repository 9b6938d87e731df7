//! The store's few direct OS calls: advisory file locks (`flock` and
//! open-file-description byte locks for claims), the
//! effective uid, and a coarse clock.
//!
//! `flock` locks belong to an open file description, so every lock holder
//! opens its own descriptor; threads of one process therefore exclude each
//! other exactly like processes do.
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` on a valid descriptor owned by `file`; no memory is
        // passed to the kernel.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(err),
        }
    }
}

pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

/// An exclusive lock on an already open file, released on drop.
pub struct Exclusive(Arc<File>);

impl Exclusive {
    pub fn acquire(file: Arc<File>) -> io::Result<Exclusive> {
        flock(&file, libc::LOCK_EX)?;
        Ok(Exclusive(file))
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        // Unlock failure cannot be handled; closing the fd releases it anyway.
        let _ = flock(&self.0, libc::LOCK_UN);
    }
}

/// The per-key compute claims of one store: one byte of the file `claims.lock`
/// per key (at [`claim_offset`]), locked with an open-file-description lock
/// (`F_OFD_SETLK`). The kernel drops a dead process's locks with its
/// descriptors, and claiming costs one `fcntl`, not a file created and
/// unlinked per miss. One descriptor serves the whole process, and the locks
/// of one description never conflict with each other, so threads exclude
/// each other through `held`, the offsets this process claims.
#[derive(Debug)]
pub struct Claims {
    path: PathBuf,
    state: Arc<Mutex<ClaimsState>>,
}

#[derive(Debug)]
struct ClaimsState {
    /// The descriptor and the process that opened it: a forked child shares
    /// its parent's description (and so its locks) and opens its own.
    file: Option<(u32, Arc<File>)>,
    held: HashSet<u64>,
}

/// Where `key`'s claim lives in the claims file: 62 bits folded from the
/// key (two keys sharing them wait for each other, which is slow, never
/// wrong), far below the largest offset a lock may end at.
pub fn claim_offset(key: &[u8; 16]) -> u64 {
    let (lo, hi) = key.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    (word(lo) ^ word(hi).rotate_left(32)) & (u64::MAX >> 2)
}

fn ofd_lock(file: &File, offset: u64, kind: libc::c_int) -> io::Result<bool> {
    let start =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: an all-zero `flock` is a valid value of this plain C struct
    // (l_pid must be 0 for OFD locks); the fields that matter are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    loop {
        // SAFETY: `F_OFD_SETLK` reads the `flock` we own for the duration of
        // the call, on a valid descriptor owned by `file`; it never blocks.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            _ => return Err(err),
        }
    }
}

impl Claims {
    pub fn new(path: PathBuf) -> Claims {
        Claims {
            path,
            state: Arc::new(Mutex::new(ClaimsState {
                file: None,
                held: HashSet::new(),
            })),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tries once to take the claim on `key`; `Ok(None)` if a thread or a
    /// process holds it.
    pub fn try_acquire(&self, key: &[u8; 16]) -> io::Result<Option<ClaimLock>> {
        let offset = claim_offset(key);
        let pid = std::process::id();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let file = match &st.file {
            Some((owner, f)) if *owner == pid => f.clone(),
            _ => {
                // A new process: none of the claims it inherited are its own.
                st.held.clear();
                let f = Arc::new(open_lock_file(&self.path)?);
                st.file = Some((pid, f.clone()));
                f
            }
        };
        if st.held.contains(&offset) || !ofd_lock(&file, offset, libc::F_WRLCK)? {
            return Ok(None);
        }
        st.held.insert(offset);
        Ok(Some(ClaimLock {
            state: self.state.clone(),
            file,
            offset,
            pid,
        }))
    }
}

/// A claim taken by [`Claims::try_acquire`], released on drop by the
/// process that took it (a forked child dropping its copy leaves the
/// parent's claim alone).
#[derive(Debug)]
pub struct ClaimLock {
    state: Arc<Mutex<ClaimsState>>,
    file: Arc<File>,
    offset: u64,
    pid: u32,
}

impl Drop for ClaimLock {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Unlock failure cannot be handled; closing the fd releases it anyway.
        let _ = ofd_lock(&self.file, self.offset, libc::F_UNLCK);
        st.held.remove(&self.offset);
    }
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Wall-clock seconds from the coarse (tick-resolution, no-syscall) clock.
pub fn coarse_now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc == 0 {
        u64::try_from(ts.tv_sec).unwrap_or(0)
    } else {
        0
    }
}
