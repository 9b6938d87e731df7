//! The store's few direct OS calls: advisory file locks (`flock`), the
//! effective uid, and a coarse clock.
//!
//! `flock` locks belong to an open file description, so every lock holder
//! opens its own descriptor; threads of one process therefore exclude each
//! other exactly like processes do.
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Ownership of a per-key claim file. Dropping it unlinks the file and then
/// releases the lock (closing the descriptor).
#[derive(Debug)]
pub struct ClaimLock {
    file: File,
    path: PathBuf,
}

impl ClaimLock {
    /// Tries once to take the claim at `path`; `Ok(None)` if someone holds it.
    pub fn try_acquire(path: &Path) -> io::Result<Option<ClaimLock>> {
        loop {
            let file = open_lock_file(path)?;
            if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
                return Ok(None);
            }
            // The previous holder unlinks before unlocking; if we locked an
            // unlinked inode, the path now names another file: retry.
            let ours = file.metadata()?;
            match std::fs::metadata(path) {
                Ok(m) if m.ino() == ours.ino() && m.dev() == ours.dev() => {
                    return Ok(Some(ClaimLock {
                        file,
                        path: path.to_path_buf(),
                    }))
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for ClaimLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = flock(&self.file, libc::LOCK_UN);
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
