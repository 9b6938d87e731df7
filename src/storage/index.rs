//! The shared hash index: one file mapped `MAP_SHARED` by every process,
//! accessed only through atomics.
//!
//! Layout (all little-endian u64 words): a 4096-byte header, then `cap`
//! (a power of two) slots of 8 words, open addressing with linear probing
//! and tombstones (deletions never break a probe chain). The whole file is
//! allocated before it is mapped (see `space.rs`): a page of it touched on
//! a full file system must never be one without a disk block.
//!
//! Slot words: 0 `seq` (seqlock: odd while a writer is changing the slot),
//! 1-2 key, 3 `seg << 32 | compute_us << 2 | state`, 4 record offset,
//! 5 record length, 6 hits, 7 `last_used_secs << 32 | gdsf_base (f32 bits)`.
//! Words 6-7 are updated by readers without locks (plain atomic stores);
//! everything else only by the holder of the store's writer lock.
//!
//! Readers never lock: they read a slot under its seqlock and then fully
//! verify the record it points to (MAC, key), so a stale, torn or garbage
//! slot can only ever produce a miss, never a wrong value.
use std::fs::File;
use std::sync::atomic::{fence, AtomicU64, Ordering::*};

use xxhash_rust::xxh3::xxh3_64;

use super::mmap::SharedWords;
use super::{space, Key};

pub const HEADER_BYTES: u64 = 4096;
pub const SLOT_WORDS: usize = 8;
pub const MIN_CAP: u64 = 1024;
const HEADER_WORDS: usize = (HEADER_BYTES / 8) as usize;
const MAGIC: u64 = u64::from_le_bytes(*b"BYTCIDX1");

// Header words. 0..4 are immutable and checksummed by word 3.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 1;
const H_CAP: usize = 2;
const H_CHECK: usize = 3;
/// Set once a rebuilt index has replaced this file: reopen `index`.
pub const H_SUPERSEDED: usize = 8;
/// Bumped whenever a data file is deleted: drop cached data-file maps.
pub const H_EPOCH: usize = 9;
pub const H_LIVE: usize = 10;
pub const H_TOMBS: usize = 11;
pub const H_BYTES: usize = 12;
pub const H_NEXT_SEG: usize = 13;
pub const H_ACTIVE_SEG: usize = 14;
// Word 15 is unused (older versions kept the active segment's write offset
// there; the segment's length is that offset now).
/// GDSF clock `L` (f64 bits).
pub const H_CLOCK: usize = 16;
/// Non-zero while a writer is mid-update; a new lock holder seeing it runs
/// recovery (the previous holder died).
pub const H_DIRTY: usize = 17;
/// Id of the secret the records were made with (`auth::Secret::id`); 0 in
/// an index no process has claimed yet.
pub const H_SECRET: usize = 18;
/// Words copied when the index is rebuilt.
pub const H_DYNAMIC: [usize; 8] = [
    H_EPOCH,
    H_LIVE,
    H_TOMBS,
    H_BYTES,
    H_NEXT_SEG,
    H_ACTIVE_SEG,
    H_CLOCK,
    H_SECRET,
];

pub const EMPTY: u64 = 0;
pub const LIVE: u64 = 1;
pub const TOMB: u64 = 2;

fn version_word() -> u64 {
    u64::from(super::format::VERSION) | u64::from(super::format::ABI) << 16
}

fn header_check(w: [u64; 3]) -> u64 {
    let mut b = [0u8; 24];
    for (i, x) in w.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
    }
    xxh3_64(&b)
}

/// A consistent copy of one slot.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub key: Key,
    pub state: u64,
    pub seg: u32,
    pub compute_us: u64,
    pub offset: u64,
    pub len: u64,
}

impl Slot {
    fn word3(&self) -> u64 {
        u64::from(self.seg) << 32 | self.compute_us.min((1 << 30) - 1) << 2 | self.state
    }
}

pub fn key_words(k: &Key) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&k[..8]);
    b.copy_from_slice(&k[8..]);
    (u64::from_le_bytes(a), u64::from_le_bytes(b))
}

pub struct Index {
    map: SharedWords,
    cap: usize,
    pub ino: u64,
}

pub enum OpenError {
    Io(std::io::Error),
    /// A valid index header of another store format version or ABI (made
    /// by another version of bytecache, or on another platform).
    OtherVersion,
    /// Not a valid index.
    Invalid(&'static str),
}

impl Index {
    /// Writes a fresh, empty index of `cap` slots into `file` (truncated),
    /// its space allocated before it is mapped.
    pub fn init(file: &File, cap: u64) -> std::io::Result<Index> {
        use std::os::unix::fs::MetadataExt;
        file.set_len(0)?;
        let len = HEADER_BYTES + cap * (SLOT_WORDS as u64) * 8;
        space::reserve_new(file, 0, len)?;
        let map = SharedWords::map(file, len)?;
        let w = map.words();
        let fixed = [MAGIC, version_word(), cap];
        for (i, x) in fixed.iter().enumerate() {
            w[i].store(*x, Relaxed);
        }
        w[H_CHECK].store(header_check(fixed), Release);
        w[H_NEXT_SEG].store(1, Relaxed);
        w[H_CLOCK].store(0f64.to_bits(), Relaxed);
        Self::from_map(map, file.metadata()?.ino()).map_err(|e| match e {
            OpenError::Io(e) => e,
            OpenError::Invalid(r) => std::io::Error::other(r),
            OpenError::OtherVersion => std::io::Error::other("another format version"),
        })
    }

    /// Maps the index in `file`, whose metadata (as just looked at) is
    /// `meta`.
    pub fn open(file: &File, meta: &std::fs::Metadata) -> Result<Index, OpenError> {
        use std::os::unix::fs::MetadataExt;
        let len = meta.len();
        if len < HEADER_BYTES || len % 8 != 0 {
            return Err(OpenError::Invalid("index truncated"));
        }
        // Holes (an older version's sparse index, or one copied sparse) are
        // allocated before the mapping is written to. A file allocated as
        // many blocks as it has bytes has none: the metadata blocks counted
        // with a file's (an extent tree) are always fewer than the holes
        // that need them. (`fallocate` on a fully allocated file still takes
        // ~20 us, in every new process.)
        if meta.blocks().saturating_mul(512) < len {
            space::reserve_existing(file, len).map_err(OpenError::Io)?;
        }
        let map = SharedWords::map(file, len).map_err(OpenError::Io)?;
        Self::from_map(map, meta.ino())
    }

    fn from_map(map: SharedWords, ino: u64) -> Result<Index, OpenError> {
        let w = map.words();
        let fixed = [
            w[H_MAGIC].load(Acquire),
            w[H_VERSION].load(Relaxed),
            w[H_CAP].load(Relaxed),
        ];
        if fixed[0] != MAGIC {
            return Err(OpenError::Invalid("bad index magic"));
        }
        if w[H_CHECK].load(Relaxed) != header_check(fixed) {
            return Err(OpenError::Invalid("index header checksum mismatch"));
        }
        if fixed[1] != version_word() {
            return Err(OpenError::OtherVersion);
        }
        let cap = fixed[2];
        if !cap.is_power_of_two()
            || cap < MIN_CAP
            || (w.len() - HEADER_WORDS) as u64 != cap * SLOT_WORDS as u64
        {
            return Err(OpenError::Invalid("index capacity does not match its size"));
        }
        Ok(Index {
            map,
            cap: cap as usize,
            ino,
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn h(&self, word: usize) -> &AtomicU64 {
        &self.map.words()[word]
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }

    fn slot_words(&self, i: usize) -> &[AtomicU64] {
        let s = HEADER_WORDS + i * SLOT_WORDS;
        &self.map.words()[s..s + SLOT_WORDS]
    }

    pub fn home(&self, key: &Key) -> usize {
        let (a, b) = key_words(key);
        ((a ^ b.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize
            & (self.cap - 1)
    }

    /// Every live slot with its position (slots mid-update are skipped).
    pub fn live(&self) -> impl Iterator<Item = (usize, Slot)> + '_ {
        (0..self.cap).filter_map(|i| match self.read(i) {
            Some((s, _)) if s.state == LIVE => Some((i, s)),
            _ => None,
        })
    }

    /// Seqlock read of slot `i`; `None` if a writer is (or died) mid-update.
    pub fn read(&self, i: usize) -> Option<(Slot, u64)> {
        let w = self.slot_words(i);
        for _ in 0..1000 {
            let s1 = w[0].load(Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let (k0, k1, w3) = (w[1].load(Relaxed), w[2].load(Relaxed), w[3].load(Relaxed));
            let (offset, len) = (w[4].load(Relaxed), w[5].load(Relaxed));
            fence(Acquire);
            if w[0].load(Relaxed) != s1 {
                continue;
            }
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&k0.to_le_bytes());
            key[8..].copy_from_slice(&k1.to_le_bytes());
            let slot = Slot {
                key,
                state: w3 & 3,
                seg: (w3 >> 32) as u32,
                compute_us: (w3 >> 2) & ((1 << 30) - 1),
                offset,
                len,
            };
            return Some((slot, s1));
        }
        None
    }

    /// Reader lookup: the live slot for `key`, its index and seq.
    pub fn lookup(&self, key: &Key) -> Option<(usize, Slot, u64)> {
        let mut i = self.home(key);
        for _ in 0..self.cap {
            match self.read(i) {
                Some((s, _)) if s.state == EMPTY => return None,
                Some((s, seq)) if s.state == LIVE && s.key == *key => return Some((i, s, seq)),
                _ => {}
            }
            i = (i + 1) & (self.cap - 1);
        }
        None
    }

    /// Writer only: the slot to store `key` in, and the live slot it replaces.
    pub fn find_insert(&self, key: &Key) -> Option<(usize, Option<Slot>)> {
        let mut i = self.home(key);
        let mut first_free = None;
        for _ in 0..self.cap {
            let (s, _) = self.read(i)?;
            if s.state == LIVE && s.key == *key {
                return Some((i, Some(s)));
            }
            if s.state != LIVE && first_free.is_none() {
                first_free = Some(i);
            }
            if s.state == EMPTY {
                break;
            }
            i = (i + 1) & (self.cap - 1);
        }
        first_free.map(|i| (i, None))
    }

    /// Writer only: publish `slot` at `i` under the seqlock. Resets the
    /// reader-updated words when a new record is stored.
    pub fn write(&self, i: usize, slot: &Slot, now_secs: u64, base: f32) {
        let w = self.slot_words(i);
        let seq = w[0].load(Relaxed);
        let seq = seq + 1 + (seq & 1); // next odd value, also if a dead writer left it odd
        w[0].store(seq, Relaxed);
        fence(Release);
        let (k0, k1) = key_words(&slot.key);
        w[1].store(k0, Relaxed);
        w[2].store(k1, Relaxed);
        w[3].store(slot.word3(), Relaxed);
        w[4].store(slot.offset, Relaxed);
        w[5].store(slot.len, Relaxed);
        if slot.state == LIVE {
            w[6].store(0, Relaxed);
            w[7].store(now_secs << 32 | u64::from(base.to_bits()), Relaxed);
        }
        w[0].store(seq + 1, Release);
    }

    /// Writer only: turn slot `i` into a tombstone.
    pub fn kill(&self, i: usize, s: &Slot) {
        let dead = Slot { state: TOMB, ..*s };
        self.write(i, &dead, 0, 0.0);
    }

    /// Reader bookkeeping after a hit (no lock, no fsync).
    pub fn touch(&self, i: usize, seq: u64, now_secs: u64) {
        let w = self.slot_words(i);
        if w[0].load(Relaxed) != seq {
            return;
        }
        w[6].fetch_add(1, Relaxed);
        let clock = f64::from_bits(self.h(H_CLOCK).load(Relaxed)) as f32;
        w[7].store(now_secs << 32 | u64::from(clock.to_bits()), Relaxed);
    }

    /// (hits, last_used_secs, gdsf_base) of slot `i`.
    pub fn usage(&self, i: usize) -> (u64, u64, f64) {
        let w = self.slot_words(i);
        let w7 = w[7].load(Relaxed);
        (
            w[6].load(Relaxed),
            w7 >> 32,
            f64::from(f32::from_bits(w7 as u32)),
        )
    }

    pub fn set_hits(&self, i: usize, hits: u64) {
        self.slot_words(i)[6].store(hits, Relaxed);
    }

    /// Copies the usage words of `from`'s slot `j` into our slot `i`.
    pub fn copy_usage(&self, i: usize, from: &Index, j: usize) {
        let (a, b) = (from.slot_words(j), self.slot_words(i));
        b[6].store(a[6].load(Relaxed), Relaxed);
        b[7].store(a[7].load(Relaxed), Relaxed);
    }

    /// Whether slot `i` was left odd by a writer that died.
    pub fn torn(&self, i: usize) -> bool {
        self.slot_words(i)[0].load(Relaxed) & 1 == 1
    }

    /// Writer recovery: re-close a torn slot as a tombstone.
    pub fn repair(&self, i: usize) {
        let w = self.slot_words(i);
        let seq = w[0].load(Relaxed);
        w[3].store(TOMB, Relaxed);
        w[0].store((seq | 1) + 1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An intact header of another format version is told apart from a
    /// damaged one (the user is told which).
    #[test]
    fn another_version_is_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("index"))
            .unwrap();
        let ix = Index::init(&f, MIN_CAP).unwrap();
        let w = ix.map.words();
        let fixed = [MAGIC, version_word() + 1, MIN_CAP];
        w[H_VERSION].store(fixed[1], Relaxed);
        let meta = f.metadata().unwrap();
        assert!(matches!(Index::open(&f, &meta), Err(OpenError::Invalid(_))));
        w[H_CHECK].store(header_check(fixed), Relaxed);
        assert!(matches!(
            Index::open(&f, &meta),
            Err(OpenError::OtherVersion)
        ));
    }
}
