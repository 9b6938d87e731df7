//! The mark that lets a record's buffers skip their checksum: the data
//! file's modification time, set to a value derived from the record.
//!
//! Buffers live in a data file of their own (one record per file) and are
//! returned zero-copy, so hashing them on every first read in a process
//! would cost a pass over every byte (~30 ms for 100 MiB). Instead, once a
//! record's buffers are known to match their authenticated checksums, its
//! file's mtime is set to a *mark*:
//!
//! ```text
//! h    = XXH3-128( MAC tag (32 bytes, record bytes 32..64)
//!                ‖ st_dev ‖ st_ino ‖ st_size        (u64 LE each)
//!                ‖ boot )                           (u64 LE)
//! mark = (seconds     = base + (low 64 bits of h) mod 400_000_000,
//!         nanoseconds = (high 64 bits of h) mod 1_000_000_000)
//! ```
//!
//! A *boot* mark has `boot` = the XXH3-64 of the kernel's boot id
//! (`/proc/sys/kernel/random/boot_id`, never 0) and `base` = 500_000_000
//! (its seconds fall in 1985..1998); a *durable* mark has `boot` = 0 and
//! `base` = 100_000_000 (1973..1985). A reader takes the buffers unhashed
//! when the file's mtime equals its durable mark or its mark for the current
//! boot. Otherwise it hashes every buffer and, if they match, marks the
//! file: durable if the mtime it found was a boot mark (of an earlier boot:
//! the bytes came from the disk), after an `fdatasync` that makes sure they
//! are all there; else (a file no one marked, or one changed since) with a
//! boot mark, which costs no flush. A writer marks what it wrote: durable
//! after its own `fdatasync` (`Durability::Full`), else with a boot mark.
//!
//! Why this is safe:
//! * Any write to the file (`write`, a shared writable mapping, truncation)
//!   sets its mtime to the current time, which is never a mark: marks lie
//!   in 1973..1998, and a write would have to hit one to the nanosecond.
//!   The mark also binds the record's MAC tag, device, inode and size, so a
//!   file copied or moved over another keeps no valid mark.
//! * Power loss: a record written without `fdatasync` (the default) may be
//!   torn on disk. Its marks are boot marks, which stop matching when the
//!   machine reboots: the first read after the reboot hashes the bytes as
//!   they came back from disk. A durable mark is only ever set after the
//!   hash matched and `fdatasync` returned, so the bytes it vouches for are
//!   on disk and cannot be torn later.
//! * Not covered, like any zero-copy view: someone with write access who
//!   also forges the mtime, and a write racing a first read between its hash
//!   and its mark. Media corruption that keeps the mtime is left to
//!   `verify()`, which always hashes everything.
use std::fs::{File, FileTimes, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// A record's MAC tag (its bytes 32..64).
pub type Tag = [u8; 32];

const DURABLE_BASE: u64 = 100_000_000;
const BOOT_BASE: u64 = 500_000_000;
const SPAN: u64 = 400_000_000;

/// The XXH3-64 of this boot's id (never 0), or `None` where the kernel has
/// none.
fn boot() -> Option<u64> {
    static BOOT: OnceLock<Option<u64>> = OnceLock::new();
    *BOOT.get_or_init(|| {
        // One read into a buffer (a UUID and a newline): `fs::read` also
        // asked for the size and read until it saw the end.
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(
            &mut std::fs::File::open("/proc/sys/kernel/random/boot_id").ok()?,
            &mut buf,
        )
        .ok()?;
        let id = buf[..n].trim_ascii();
        (!id.is_empty()).then(|| xxh3_64(id).max(1))
    })
}

/// The mark of the record with `tag` in the file `st` describes: durable
/// for `boot` 0, else for that boot.
fn mark(tag: &Tag, st: &Metadata, boot: u64) -> (u64, u32) {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(tag);
    for (i, w) in [st.dev(), st.ino(), st.size(), boot]
        .into_iter()
        .enumerate()
    {
        b[32 + i * 8..40 + i * 8].copy_from_slice(&w.to_le_bytes());
    }
    let h = xxh3_128(&b);
    let base = if boot == 0 { DURABLE_BASE } else { BOOT_BASE };
    let secs = base + (h as u64) % SPAN;
    let nanos = ((h >> 64) as u64 % 1_000_000_000) as u32;
    (secs, nanos)
}

fn mtime(st: &Metadata) -> Option<(u64, u32)> {
    Some((
        u64::try_from(st.mtime()).ok()?,
        u32::try_from(st.mtime_nsec()).ok()?,
    ))
}

/// Whether `file` (the record with MAC tag `tag`, alone in it) carries a
/// valid mark.
pub fn is_marked(file: &File, tag: &Tag) -> bool {
    let Ok(st) = file.metadata() else {
        return false;
    };
    let now = mtime(&st);
    now.is_some()
        && (now == Some(mark(tag, &st, 0))
            || boot().is_some_and(|b| now == Some(mark(tag, &st, b))))
}

/// Marks `file` after a reader hashed its buffers and found them intact.
/// Best effort: an unmarked file is only hashed again.
pub fn mark_checked(file: &File, tag: &Tag) {
    let Ok(st) = file.metadata() else { return };
    let earlier_boot = mtime(&st).is_some_and(|(s, _)| (BOOT_BASE..BOOT_BASE + SPAN).contains(&s));
    match boot() {
        Some(b) if !earlier_boot => set(file, tag, b),
        _ => {
            if file.sync_data().is_ok() {
                set(file, tag, 0);
            }
        }
    }
}

/// Marks a file its writer just wrote; `on_disk`: after its `fdatasync`.
pub fn mark_written(file: &File, tag: &Tag, on_disk: bool) {
    match boot() {
        Some(b) if !on_disk => set(file, tag, b),
        None if !on_disk => {}
        _ => set(file, tag, 0),
    }
}

fn set(file: &File, tag: &Tag, boot: u64) {
    let Ok(st) = file.metadata() else { return };
    let (secs, nanos) = mark(tag, &st, boot);
    let when = UNIX_EPOCH + Duration::new(secs, nanos);
    let _ = file.set_times(FileTimes::new().set_modified(when));
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    use super::*;

    const TAG: Tag = [7; 32];

    fn secs(f: &File) -> u64 {
        f.metadata().unwrap().mtime() as u64
    }

    #[test]
    fn marks_lapse_on_reboot_write_and_copy() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("rec");
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(&[1; 5000]).unwrap();
        assert!(!is_marked(&f, &TAG), "a fresh file");
        let Some(now) = boot() else { return }; // no boot id: no boot marks
        mark_written(&f, &TAG, false);
        assert!(is_marked(&f, &TAG) && (BOOT_BASE..BOOT_BASE + SPAN).contains(&secs(&f)));
        assert!(!is_marked(&f, &[8; 32]), "another record");

        // The same mark made in another boot: hash again, then durable.
        set(&f, &TAG, now ^ 1);
        assert!(!is_marked(&f, &TAG), "a boot mark of another boot");
        mark_checked(&f, &TAG);
        assert!(is_marked(&f, &TAG));
        assert!((DURABLE_BASE..DURABLE_BASE + SPAN).contains(&secs(&f)));

        // A copy carrying the mtime along is another file.
        let copy = d.path().join("copy");
        std::fs::copy(&path, &copy).unwrap();
        let c = File::options().write(true).open(&copy).unwrap();
        c.set_times(FileTimes::new().set_modified(f.metadata().unwrap().modified().unwrap()))
            .unwrap();
        assert!(!is_marked(&c, &TAG), "a copy");

        // Any write ends it.
        f.write_all_at(&[1], 10).unwrap();
        assert!(!is_marked(&f, &TAG), "written to");
        mark_checked(&f, &TAG); // not a boot mark: no flush, a boot mark
        assert!(is_marked(&f, &TAG));
        assert!((BOOT_BASE..BOOT_BASE + SPAN).contains(&secs(&f)));
    }
}
