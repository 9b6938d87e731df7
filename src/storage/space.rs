//! Disk space: reserved before it is mapped or written, and "no space"
//! told apart from other I/O errors.
//!
//! A page of a shared mapping with no disk block behind it is allocated when
//! it is first touched (on tmpfs even by a read). On a full file system that
//! allocation fails, and the kernel answers the faulting access with
//! `SIGBUS`, which kills the process. So the store allocates every byte
//! range before it maps it (the index, whole) or writes it (a record; a
//! small segment is allocated a chunk ahead of its end, past its size), with
//! `fallocate`: a full disk or quota then fails the operation up front with
//! `ENOSPC`/`EDQUOT`, before any byte is written, and never as a signal.
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::FallocateFlags;

/// Allocates `[offset, offset + len)` of `file`, extending it as needed.
/// The range must hold no data yet (a new file, or past the end): where the
/// file system has no `fallocate`, the range is written with zeros, which
/// allocates it just as well.
pub fn reserve_new(file: &File, offset: u64, len: u64) -> io::Result<()> {
    match fallocate(file, offset, len) {
        Err(e) if unsupported(&e) => write_zeros(file, offset, len),
        r => r,
    }
}

/// Allocates `[offset, offset + len)` of `file` past its end without
/// changing its size (`FALLOC_FL_KEEP_SIZE`), so that appends into the range
/// need no allocation of their own. `Ok(false)` where the file system cannot
/// (the caller then reserves each write with [`reserve_new`]).
pub fn reserve_ahead(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    loop {
        match rustix::fs::fallocate(file, FallocateFlags::KEEP_SIZE, offset, len) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) if unsupported(&io::Error::from(e)) => return Ok(false),
            r => return r.map(|()| true).map_err(io::Error::from),
        }
    }
}

/// Allocates the holes of the first `len` bytes of a file other processes
/// may be using (an index an older version created sparse). Where the file
/// system has no `fallocate` nothing is done: writing zeros could undo
/// another process's update.
pub fn reserve_existing(file: &File, len: u64) -> io::Result<()> {
    match fallocate(file, 0, len) {
        Err(e) if unsupported(&e) => Ok(()),
        r => r,
    }
}

/// Whether `e` means the file system (or the user's quota) is full.
pub fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

fn fallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    loop {
        match rustix::fs::fallocate(file, FallocateFlags::empty(), offset, len) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

fn unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS))
}

fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 64 << 10;
    let zeros = [0u8; CHUNK as usize];
    let mut at = offset;
    let end = offset.saturating_add(len);
    while at < end {
        let n = (end - at).min(CHUNK);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}
