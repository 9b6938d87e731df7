//! The only place the store creates memory mappings (all `unsafe` for mmap
//! lives here).
//!
//! Three kinds of mapping:
//! * [`SharedWords`]: the index, mapped `MAP_SHARED` read-write and accessed
//!   exclusively through `AtomicU64`, so concurrent updates by other processes
//!   are ordinary atomic operations, never data races on plain memory.
//! * [`ReadMap`]: a data file mapped `MAP_SHARED` read-only. Records inside a
//!   data file are immutable once published (the store only appends past the
//!   published end, never rewrites, never truncates; files are removed by
//!   `unlink`, which keeps the inode alive while mapped).
//! * [`private_copy`]: a `MAP_PRIVATE` writable copy-on-write mapping of one
//!   buffer; writes by the caller stay in private pages.
use std::fs::File;
use std::io;
use std::sync::atomic::AtomicU64;

use memmap2::{Mmap, MmapMut, MmapOptions, MmapRaw};

/// A read-write shared mapping viewed as an array of atomic words.
pub struct SharedWords {
    raw: MmapRaw,
    words: usize,
}

impl SharedWords {
    /// Maps the whole of `file` (opened read-write), `len` bytes long (as
    /// the caller just found): a non-zero multiple of 8.
    pub fn map(file: &File, len: u64) -> io::Result<SharedWords> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("index too large"))?;
        let raw = MmapOptions::new().len(len).map_raw(file)?;
        if raw.len() == 0 || raw.len() % 8 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad index length",
            ));
        }
        let words = raw.len() / 8;
        Ok(SharedWords { raw, words })
    }

    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned), `words * 8`
        // bytes long and stays mapped while `self` is borrowed. `AtomicU64`
        // has the size and alignment of `u64` and every bit pattern is valid.
        // The region is only ever accessed through atomics, by this and other
        // processes, so there are no non-atomic concurrent accesses.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().cast::<AtomicU64>(), self.words) }
    }

    /// msync the mapping (used only with `Durability::Full`).
    pub fn flush(&self) -> io::Result<()> {
        self.raw.flush()
    }
}

/// A read-only shared mapping of a whole data file.
pub struct ReadMap(Option<Mmap>);

impl ReadMap {
    /// Maps the first `len` bytes of `file` (its length, as just looked at).
    pub fn map(file: &File, len: u64) -> io::Result<ReadMap> {
        if len == 0 {
            return Ok(ReadMap(None));
        }
        let len = usize::try_from(len).map_err(|_| io::Error::other("data file too large"))?;
        // SAFETY: data files are owned by the current user in a 0700
        // directory. Bytes of a published record are never modified and the
        // file is never truncated (only unlinked), so the slices handed out
        // stay valid and unchanged for the mapping's lifetime. Bytes past the
        // published end may still be appended to by a writer; callers only
        // read ranges named by a published index slot and re-check them.
        let m = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(ReadMap(Some(m)))
    }

    pub fn bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

/// A private copy-on-write mapping of `len` bytes at `offset` of `file`.
pub fn private_copy(file: &File, offset: u64, len: usize) -> io::Result<MmapMut> {
    if len == 0 {
        return MmapMut::map_anon(0).or_else(|_| MmapMut::map_anon(1));
    }
    // SAFETY: same invariant as `ReadMap::map`: the range is part of a
    // published, immutable record. MAP_PRIVATE means writes through the
    // returned mapping never reach the file.
    unsafe { MmapOptions::new().offset(offset).len(len).map_copy(file) }
}
