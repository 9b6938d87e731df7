//! Pure-Rust result store (no pyo3): memory-mapped, checksummed and
//! authenticated records behind a shared lock-free hash index.
//!
//! # Layout of a store directory (mode 0700)
//! ```text
//! lock          writer lock (flock); readers never take it
//! index         hash index, mapped MAP_SHARED by every process (index.rs)
//! data/<id>     data files: "small" segments (append-only logs of records
//!               without buffers, <= segment_bytes/4 each) and one dedicated
//!               file per entry with out-of-band buffers (id has bit 31 set),
//!               buffers page-aligned so they can be mapped MAP_PRIVATE
//! claims.lock   per-key compute claims: one byte per key, locked with
//!               F_OFD_SETLK (see lock.rs), never written
//! quarantine/   records/files that failed a check, moved aside
//! ```
//! Record format: see `format.rs`. A record is immutable once written: it is
//! written first, then published by one seqlocked slot update in the index.
//! Readers take no lock, never wait on a writer for more than the few
//! nanoseconds of a slot update, and fully verify every record they follow
//! (magic, version, ABI, bounds, keyed MAC over header + meta + payload,
//! checked rkyv access, key, buffer checksums), so a stale, torn or garbage
//! slot or record is a miss, never a wrong value. A record that fails a
//! check is moved to `quarantine/` and its slot dropped; so is every record
//! of a data file that is not a regular file of ours (a symlink, say).
//!
//! # Writers
//! One writer at a time per store directory: an in-process mutex plus an
//! exclusive `flock` on `lock`. While mutating, the writer sets a dirty flag
//! in the index header; a later writer finding it set (the previous one died)
//! repairs slots left mid-update and recounts totals.
//!
//! A small segment only grows: a record is appended at the segment's length
//! rounded up to 64 bytes, so bytes once written (published or left by a
//! writer that died mid-append) are never overwritten, and the file has no
//! holes for a mapping to fault on.
//!
//! # Header counters
//! The header's counters (live entries, tombstones, record bytes, next file
//! id, active segment, GDSF clock) are hints a damaged or hostile index can
//! get wrong, so none of them can disable the cache: every writer checks
//! them for plausibility (live + tombstones <= capacity, bytes >= 64 per
//! live entry and 0 without one, a finite clock >= 0, an active segment that
//! is a segment) and recounts from the slots when they fail; eviction
//! recounts before it evicts anything, and an index found full is recounted
//! and rebuilt. A superseded flag on the index that is still in place is
//! cleared.
//!
//! # Disk space
//! Every byte range is allocated (`fallocate`, see `space.rs`) before it is
//! mapped or written: the index when it is created, rebuilt or opened, a
//! record before it is appended, a file of buffers before its first byte.
//! So a full file system or quota fails a put with `StorageError::NoSpace`
//! (ENOSPC or EDQUOT) before anything changes, and never as a SIGBUS on a
//! mapped page. Nothing stored is evicted or dropped to make room.
//!
//! # Durability policy
//! * `Durability::Fast` (default): nothing is fsynced on put, get or remove.
//!   A killed process loses nothing that was committed (the page cache holds
//!   it). After an OS crash or power loss, recent entries may be lost, and
//!   any record whose bytes did not all reach the disk fails its MAC or a
//!   buffer checksum and is reported as a miss (then quarantined) -- never
//!   returned torn. If the index header itself is damaged, the store is
//!   reset (old files quarantined). Index rebuilds (growth) are always
//!   fsynced before the atomic rename, as they are rare.
//! * `Durability::Full` (or env `BYTECACHE_DURABILITY=full`, e.g. for the
//!   Python binding): `fdatasync` the record before publishing it and
//!   `msync` the index after; new files also fsync their directory. Costs
//!   one to three disk flushes per put (milliseconds on most disks).
//!
//! # Security policy
//! The directory must be owned by the current user and not writable by
//! group/others, nor below a directory every user can write without the
//! sticky bit (`UnsafePermissions` otherwise, see `perms.rs`); it is created
//! 0700 and files 0600. Every record carries a keyed BLAKE3 MAC (secret
//! outside the cache dir, see `auth.rs`) over its header, metadata (incl.
//! each buffer's XXH3-128) and payload, verified before anything is
//! returned. The index records which secret its records were made with: a
//! store opened with another secret (the old one was deleted, say) is
//! emptied at once rather than reported record by record as damaged.
//!
//! Every get re-checks the header, bounds, key and (bytecheck-validated)
//! rkyv meta; the MAC itself is computed once per record per process (and
//! mapping), and not at all for a record this process wrote (it made the
//! MAC of those very bytes): records are immutable, and the fingerprint of a verified record
//! includes its header and MAC tag, so rewritten bytes are verified afresh.
//! Anyone able to rewrite our files could equally change them under a
//! zero-copy view after any check, so hashing again on every get would add
//! cost, not safety. Every new process verifies afresh, per-process caches
//! are dropped whenever a data file is deleted, and `verify()` always checks
//! everything.
//!
//! Buffers (raw bytes, they cannot run code) are verified before they are
//! returned too, without reading them on every first hit: the first process
//! to read a record hashes its buffers against their authenticated
//! checksums and then marks the file (its mtime, see `stamp.rs`); a later
//! process finding the mark intact skips the hash, so a 100 MiB result
//! stays zero-copy and O(1). The mark cannot survive a write to the file,
//! and a mark made before the data reached the disk lapses at the next
//! reboot, so a torn or damaged file is always hashed, and missed.
//!
//! # Concurrent misses
//! `claim(key, timeout)` takes a non-blocking byte lock in `claims.lock`:
//! the winner computes (`Claim::Compute`, released on drop, after its put);
//! the others poll (0.1..5 ms backoff) until the entry is published
//! (`Ready`), the claim frees up (one of them then computes), or `timeout`.
//!
//! # Eviction
//! `max_bytes` (default 10 GiB, env `BYTECACHE_MAX_BYTES` in bytes) counts record
//! bytes of live entries. When a put exceeds it, entries are evicted down to
//! 90% by GreedyDual-Size-Frequency: priority = L + (hits+1) * cost / size,
//! with cost = compute time (µs) + 1, L the clock at the last access, and the
//! clock raised to each evicted priority. Small segments whose live bytes
//! fall below half their disk use are compacted during eviction and `gc()`.
mod auth;
mod format;
#[cfg(test)]
mod fuzz;
mod index;
mod lock;
mod mmap;
mod perms;
mod space;
mod stamp;
mod userfile;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use auth::default_secret_paths;
pub use format::{ArchivedMeta, ArchivedRecord, Deps, DirDep, FileDep, RecordDep};
pub use lock::ClaimLock;
pub use memmap2::MmapMut;
pub use userfile::{load_key, read_private, write_private};

use format::Decoded;
use index::{Index, OpenError, Slot, H_ACTIVE_SEG, H_BYTES, H_CLOCK, H_DIRTY, H_EPOCH};
use index::{H_LIVE, H_NEXT_SEG, H_SECRET, H_SUPERSEDED, H_TOMBS, LIVE, TOMB};
use perms::{check_ancestors, check_owner_mode, ensure_dir};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// A 128-bit key computed by the caller (hash of function identity + args).
/// How far past a small segment's end its space is allocated at a time.
const RESERVE_AHEAD: u64 = 64 << 10;

pub type Key = [u8; 16];

const BIG_BIT: u32 = 1 << 31;
const REC_ALIGN: u64 = 64;
const MAX_CACHED_FILES: usize = 256;
/// Slots of the per-process verified table (8 bytes each: at most 16 MiB).
const MAX_VERIFIED: usize = 1 << 21;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// The file system or the user's quota is full (ENOSPC, EDQUOT).
    #[error(
        "no space left for the cache at {path} ({source}); nothing is stored until space is freed"
    )]
    NoSpace { path: PathBuf, source: io::Error },
    #[error("refusing {path}: {reason}")]
    UnsafePermissions { path: PathBuf, reason: String },
    #[error("corrupt {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// No fsync (default). Survives process kills; an OS crash can lose
    /// recent entries but never exposes a torn one.
    #[default]
    Fast,
    /// fdatasync each record before publishing it, msync the index after.
    Full,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub max_bytes: u64,
    pub durability: Durability,
    /// Where the MAC secret lives; `None`: the first of
    /// `default_secret_paths()` that exists or can be created.
    pub secret_path: Option<PathBuf>,
    /// Largest size of a small-record segment file (records up to a quarter
    /// of it go to segments, larger ones and entries with buffers to own
    /// files).
    pub segment_bytes: u64,
}

pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;

impl Default for Options {
    fn default() -> Options {
        let max_bytes = std::env::var("BYTECACHE_MAX_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        let durability = match std::env::var("BYTECACHE_DURABILITY").as_deref() {
            Ok("full") => Durability::Full,
            _ => Durability::Fast,
        };
        Options {
            max_bytes,
            durability,
            secret_path: None,
            segment_bytes: 64 << 20,
        }
    }
}

/// What `put` stores.
pub struct NewEntry<'a> {
    pub group: [u8; 16],
    pub payload: &'a [u8],
    pub buffers: &'a [&'a [u8]],
    pub deps: &'a Deps,
    pub compute_ns: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EntryMeta {
    pub key: Key,
    pub group: [u8; 16],
    /// Bytes the entry occupies on disk (counted against `max_bytes`).
    pub size: u64,
    pub payload_len: u64,
    pub buffers_len: u64,
    pub compute_ns: u64,
    pub created_ns: u64,
    pub last_used_secs: u64,
    pub hits: u64,
}

/// A data file and a read-only mapping of it (of its length when mapped:
/// a segment that grew since is mapped again, see `Store::data_file`).
struct DataFile {
    file: Arc<File>,
    map: mmap::ReadMap,
}

impl DataFile {
    /// Maps the first `len` bytes of `file` (its length when looked at).
    fn map(file: Arc<File>, len: u64) -> io::Result<DataFile> {
        let map = mmap::ReadMap::map(&file, len)?;
        Ok(DataFile { file, map })
    }
}

/// Opens data file `path` (read-only or read-write): `Ok(None)` if there is
/// none, `Corrupt` if it is not a regular file of ours (a symlink, a FIFO,
/// another owner, writable by others): its records cannot be trusted.
fn open_data_file(path: &Path, write: bool) -> Result<Option<(File, std::fs::Metadata)>> {
    let bad = |reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let file = match OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ELOOP | libc::EACCES | libc::EPERM)
            ) =>
        {
            return Err(bad(format!("not a regular file of ours ({e})")))
        }
        Err(e) => return Err(io_at(path)(e)),
    };
    let meta = file.metadata().map_err(io_at(path))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    check_owner_mode(path, &meta, 0o022).map_err(|e| bad(e.to_string()))?;
    Ok(Some((file, meta)))
}

/// A verified entry, zero-copy over the mapped data file. Stays valid after
/// the entry is removed or evicted (the mapping keeps the file alive).
pub struct EntryView {
    data: Arc<DataFile>,
    start: usize,
    dec: Decoded,
    pub meta: EntryMeta,
}

impl EntryView {
    fn rec(&self) -> &[u8] {
        &self.data.map.bytes()[self.start..]
    }
    pub fn payload(&self) -> &[u8] {
        &self.rec()[self.dec.payload.clone()]
    }
    /// The archived `Meta`, with the files and directories the entry
    /// depends on. `None` only if it cannot be read, which `decode` already
    /// ruled out.
    pub fn archived_meta(&self) -> Option<&ArchivedMeta> {
        format::meta(self.rec(), &self.dec).ok()
    }

    /// Everything the entry depends on, copied out (`None` as for
    /// [`EntryView::record`]).
    pub fn deps(&self) -> Option<Deps> {
        format::deps(self.rec(), &self.dec).ok()
    }

    /// The dependency record (validated on this first use); `None` if it
    /// fails validation.
    pub fn record(&self) -> Option<&ArchivedRecord> {
        format::record(self.rec(), &self.dec).ok()
    }

    /// Whether the entry depends on files or directories.
    pub fn has_file_deps(&self) -> bool {
        self.dec.has_file_deps
    }
    pub fn buffers(&self) -> Vec<&[u8]> {
        self.dec
            .buffers
            .iter()
            .map(|(r, _)| &self.rec()[r.clone()])
            .collect()
    }
    pub fn buffer_count(&self) -> usize {
        self.dec.buffers.len()
    }
    /// Buffer `i` as a fresh private copy-on-write mapping: writable, and
    /// writes never reach the store. `None` if `i` is out of range.
    pub fn buffer_private(&self, i: usize) -> Option<io::Result<MmapMut>> {
        let (r, _) = self.dec.buffers.get(i)?;
        Some(mmap::private_copy(
            self.data.file.as_ref(),
            (self.start + r.start) as u64,
            r.len(),
        ))
    }
}

/// Outcome of [`Store::claim`].
#[derive(Debug)]
pub enum Claim {
    /// Caller must compute and `put`; others wait until the lock drops.
    Compute(ClaimLock),
    /// Someone else stored the entry meanwhile.
    Ready,
    /// Waited `timeout` in vain; compute without a claim.
    TimedOut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub checked: u64,
    /// Keys whose record failed a check (now quarantined), with the reason.
    pub bad: Vec<(Key, String)>,
}

/// A published slot and the mapped file its record lives in.
struct Located {
    ix: Arc<Index>,
    i: usize,
    slot: Slot,
    seq: u64,
    df: Arc<DataFile>,
}

struct ReadState {
    index: Arc<Index>,
    files: HashMap<u32, Arc<DataFile>>,
    /// Fingerprints (`format::fingerprint`) of records whose MAC this
    /// process verified through the mappings in `files`. Records are
    /// immutable, so a later read of the same bytes skips the MAC (not the
    /// header and checked rkyv validation).
    verified: Verified,
    epoch: u64,
}

/// Fingerprints of verified records, one per index slot position (a table
/// as large as the index, at most `MAX_VERIFIED`). Looked up by the slot
/// position the index lookup just found, so the load is issued before the
/// record is read and the two cache misses overlap (a hash set keyed by the
/// fingerprint costs two more dependent misses per lookup among a million
/// records). The position only places an entry: a hit needs the whole
/// fingerprint (file, offset, length, header and MAC tag) to match.
#[derive(Default)]
struct Verified {
    slots: Vec<u64>,
}

impl Verified {
    /// What is stored for slot position `i` (0: nothing).
    fn at(&self, i: usize) -> u64 {
        let n = self.slots.len();
        if n == 0 {
            0
        } else {
            self.slots[i & (n - 1)]
        }
    }

    fn insert(&mut self, i: usize, fp: u64, index_cap: usize) {
        let want = index_cap.next_power_of_two().clamp(64, MAX_VERIFIED);
        if self.slots.len() != want {
            self.slots = vec![0; want]; // the index was resized: start over
        }
        let n = self.slots.len();
        self.slots[i & (n - 1)] = fp;
    }

    fn clear(&mut self) {
        self.slots.fill(0);
    }

    /// Follows a rebuild of the index into one of `index_cap` slots, which
    /// moved the record at position `i` to `j` for every `(i, j)` of `moves`.
    fn moved(&mut self, moves: &[(usize, usize)], index_cap: usize) {
        if self.slots.is_empty() {
            return;
        }
        let want = index_cap.next_power_of_two().clamp(64, MAX_VERIFIED);
        let mut slots = vec![0; want];
        for &(i, j) in moves {
            slots[j & (want - 1)] = self.at(i);
        }
        self.slots = slots;
    }
}

impl ReadState {
    fn fresh(&self) -> bool {
        self.index.h(H_SUPERSEDED).load(Acquire) == 0
            && self.index.h(H_EPOCH).load(Relaxed) == self.epoch
    }

    fn forget_files(&mut self) {
        self.files.clear();
        self.verified.clear();
    }
}

struct WriterState {
    /// Cached write handle of the active small segment.
    active: Option<(u32, File)>,
    /// A segment and the end of what is allocated of it past what it holds
    /// (`space::reserve_ahead`): appends below it allocate nothing.
    reserved: (u32, u64),
    /// The writer lock file (opened at the first write, unless opening the
    /// store needed it) and the process that opened it. `flock` locks
    /// belong to the open file description, which a forked child shares:
    /// after a fork the child opens its own (see `Store::writer`).
    lock_file: Option<Arc<File>>,
    pid: u32,
}

pub struct Store {
    dir: PathBuf,
    opts: Options,
    mac: auth::MacKey,
    /// Why the store was emptied when this process opened it, if it was.
    reset: Option<String>,
    writer: Mutex<WriterState>,
    state: RwLock<ReadState>,
    claims: lock::Claims,
}

/// Maps an I/O error on `path` to a `StorageError` (`NoSpace` for a full
/// file system or quota).
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| {
        let path = path.to_path_buf();
        if space::is_no_space(&source) {
            StorageError::NoSpace { path, source }
        } else {
            StorageError::Io { path, source }
        }
    }
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn lock_mutex<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn key_hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Store> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_bytes < 4096 || opts.segment_bytes > u64::from(u32::MAX) {
            return Err(StorageError::InvalidArgument(
                "segment_bytes must be in 4 KiB..4 GiB".into(),
            ));
        }
        ensure_dir(&dir)?;
        let real = check_ancestors(&dir)?;
        for sub in ["data", "quarantine"] {
            ensure_dir(&dir.join(sub))?;
        }
        let secret = auth::load(opts.secret_path.as_deref(), &real)?;
        // An index in place, valid and clean, is opened without the writer
        // lock, as readers read it; making, replacing or repairing one takes
        // the lock (and the lock file is opened only then, or by a writer).
        let clean = match open_data_file(&dir.join("index"), true) {
            Ok(Some((f, meta))) => Index::open(&f, &meta)
                .ok()
                .filter(|ix| ix.h(H_DIRTY).load(Acquire) == 0),
            _ => None,
        };
        let mut lock_file = None;
        let (index, damaged) = match clean {
            Some(ix) => (ix, None),
            None => {
                let file = open_lock(&dir)?;
                let _l = lock::Exclusive::acquire(file.clone()).map_err(io_at(&dir))?;
                lock_file = Some(file);
                let (ix, damaged) = open_index_locked(&dir)?;
                recover(&ix);
                (ix, damaged)
            }
        };
        let epoch = index.h(H_EPOCH).load(Relaxed);
        let made_with = index.h(H_SECRET).load(Relaxed);
        let mut store = Store {
            claims: lock::Claims::new(dir.join("claims.lock")),
            dir,
            opts,
            mac: secret.key,
            reset: damaged.map(String::from),
            writer: Mutex::new(WriterState {
                active: None,
                reserved: (0, 0),
                lock_file,
                pid: std::process::id(),
            }),
            state: RwLock::new(ReadState {
                index: Arc::new(index),
                files: HashMap::new(),
                verified: Verified::default(),
                epoch,
            }),
        };
        if made_with != secret.id {
            let mut w = store.writer()?;
            let made_with = w.ix.h(H_SECRET).load(Relaxed);
            // Another id: the records were made with another secret, unless
            // the id itself is damaged and they verify with ours.
            let emptied = made_with != 0 && made_with != secret.id && !store.verifies_any(&w.ix);
            let res = if emptied { w.remove_all() } else { Ok(0) };
            if res.is_ok() {
                w.ix.h(H_SECRET).store(secret.id, Relaxed);
            }
            w.done(res)?;
            if emptied {
                store.reset = Some(format!(
                    "found entries made with another secret than {} (it was replaced or \
                     regenerated); they cannot be verified and were removed",
                    secret.path.display()
                ));
            }
        }
        Ok(store)
    }

    /// Whether one of the first few live records of `ix` verifies (or there
    /// are none): our secret is the one they were made with.
    fn verifies_any(&self, ix: &Index) -> bool {
        let mut live = ix.live().take(8).peekable();
        live.peek().is_none()
            || live.any(|(i, slot)| {
                let end = slot.offset.saturating_add(slot.len);
                matches!(self.data_file(slot.seg, end), Ok(Some(df))
                    if self.check_record(&slot.key, i, &slot, &df, false).is_ok())
            })
    }

    /// Why this process found the store emptied when it opened it (a
    /// damaged index, entries made with another secret), if it did.
    pub fn reset_reason(&self) -> Option<&str> {
        self.reset.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn small_max(&self) -> u64 {
        (self.opts.segment_bytes / 4).min(256 << 10)
    }

    fn data_path(&self, seg: u32) -> PathBuf {
        self.dir.join("data").join(format!("{seg:08x}"))
    }

    // ----- read side -------------------------------------------------------

    /// The current index (reopened if a writer replaced it) for readers.
    fn current(&self) -> Result<Arc<Index>> {
        self.current_with(false)
    }

    /// `have_lock`: the caller already holds the writer flock.
    fn current_with(&self, have_lock: bool) -> Result<Arc<Index>> {
        {
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            if st.fresh() {
                return Ok(st.index.clone());
            }
        }
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if st.index.h(H_SUPERSEDED).load(Acquire) != 0 {
            let path = self.dir.join("index");
            let reopened = open_rw(&path, false).ok().and_then(|f| {
                let meta = f.metadata().ok()?;
                Index::open(&f, &meta).ok()
            });
            st.index = Arc::new(match reopened {
                // The index in place flagged superseded too is a damaged
                // flag, which only a writer may clear (see `writer`).
                Some(ix) if have_lock || ix.h(H_SUPERSEDED).load(Acquire) == 0 => ix,
                None if have_lock => open_index_locked(&self.dir)?.0,
                _ => {
                    // Needs the writer lock, taken the normal way (mutex,
                    // then flock) and without holding `state`.
                    drop(st);
                    let w = self.writer()?;
                    let ix = w.ix.clone();
                    w.finish()?;
                    return Ok(ix);
                }
            });
            st.forget_files();
        }
        let epoch = st.index.h(H_EPOCH).load(Relaxed);
        if epoch != st.epoch {
            st.forget_files();
            st.epoch = epoch;
        }
        Ok(st.index.clone())
    }

    /// The mapped data file `seg`, mapped again if it has grown since and
    /// the mapping ends before `end`; `Ok(None)` if it does not exist;
    /// `Corrupt` if it is not a regular file of ours (see `open_data_file`).
    fn data_file(&self, seg: u32, end: u64) -> Result<Option<Arc<DataFile>>> {
        let cached = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .files
            .get(&seg)
            .cloned();
        if let Some(df) = cached
            .as_ref()
            .filter(|df| df.map.bytes().len() as u64 >= end)
        {
            return Ok(Some(df.clone())); // the common case: no path is built
        }
        let path = self.data_path(seg);
        let df = match cached {
            // The same file (so records verified through the old mapping
            // stay verified), mapped at its current length.
            Some(df) => df
                .file
                .metadata()
                .and_then(|meta| DataFile::map(df.file.clone(), meta.len()))
                .map_err(io_at(&path))?,
            None => match open_data_file(&path, false)? {
                Some((file, meta)) => {
                    DataFile::map(Arc::new(file), meta.len()).map_err(io_at(&path))?
                }
                None => return Ok(None),
            },
        };
        let df = Arc::new(df);
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if st.files.len() >= MAX_CACHED_FILES {
            st.forget_files();
        }
        st.files.insert(seg, df.clone());
        Ok(Some(df))
    }

    /// Drops every record of data file `seg`, which is not a regular file of
    /// ours, and moves it to `quarantine/`. Best effort.
    fn discard_file(&self, seg: u32, reason: &str) {
        if let Ok(mut w) = self.writer() {
            let res = w.discard(seg, reason);
            let _ = w.done(res);
        }
    }

    /// Follows the index to `key`'s record bytes.
    fn locate(&self, key: &Key) -> Result<Option<Located>> {
        let mut missing = None;
        loop {
            let ix = self.current()?;
            let Some((i, slot, seq)) = ix.lookup(key) else {
                return Ok(None);
            };
            let found = match self.data_file(slot.seg, slot.offset.saturating_add(slot.len)) {
                Err(StorageError::Corrupt { reason, .. }) => {
                    self.discard_file(slot.seg, &reason);
                    return Ok(None);
                }
                found => found?,
            };
            if let Some(df) = found {
                return Ok(Some(Located {
                    ix,
                    i,
                    slot,
                    seq,
                    df,
                }));
            }
            // The file went away: a writer moved the record (retry) or it was
            // deleted behind our back (drop the slot).
            if missing == Some(slot) {
                self.quarantine(key, &slot, None, "data file missing");
                return Ok(None);
            }
            missing = Some(slot);
        }
    }

    /// Verifies the record `slot` names (see the security policy), or
    /// reuses this mapping's earlier verification of the same immutable
    /// bytes; `full` always re-checks everything, buffers included.
    /// `i`: the record's slot position in the index it was found in.
    fn check_record(
        &self,
        key: &Key,
        i: usize,
        slot: &Slot,
        df: &DataFile,
        full: bool,
    ) -> Result<Decoded, &'static str> {
        let rec = record_bytes(df, slot).ok_or("record beyond the end of its file")?;
        let fp = format::fingerprint(slot.seg, slot.offset, rec);
        if !full
            && fp != 0
            && self
                .state
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .verified
                .at(i)
                == fp
        {
            return format::decode(rec, key, None);
        }
        let dec = format::decode(rec, key, Some(&self.mac))?;
        if !dec.buffers.is_empty() {
            // A record with buffers has its file to itself (else: hash).
            let tag = &dec.tag;
            let own = slot.seg & BIG_BIT != 0 && slot.offset == 0;
            let marked = own && stamp::is_marked(&df.file, tag);
            if full || !marked {
                dec.check_buffers(rec)?;
                if own && !marked {
                    stamp::mark_checked(&df.file, tag);
                }
            }
        }
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        // Only remember it while `df` is the cached mapping of that file.
        if st
            .files
            .get(&slot.seg)
            .is_some_and(|f| std::ptr::eq(Arc::as_ptr(f), df))
        {
            let cap = st.index.cap();
            st.verified.insert(i, fp, cap);
        }
        Ok(dec)
    }

    /// Looks `key` up; verifies the record; counts a hit. Corrupt = miss.
    pub fn get(&self, key: &Key) -> Result<Option<EntryView>> {
        self.read(key, true)
    }

    /// Like `get`, but counts no hit and leaves the last use alone (for
    /// inspecting a store: listing, explaining).
    pub fn peek(&self, key: &Key) -> Result<Option<EntryView>> {
        self.read(key, false)
    }

    fn read(&self, key: &Key, hit: bool) -> Result<Option<EntryView>> {
        {
            // Fast path: no syscall, no allocation, one read lock.
            let st = self.state.read().unwrap_or_else(|p| p.into_inner());
            if st.fresh() {
                let Some((i, slot, seq)) = st.index.lookup(key) else {
                    return Ok(None);
                };
                let seen = st.verified.at(i); // loaded while the record is fetched
                if let Some(df) = st.files.get(&slot.seg) {
                    if let Some(rec) = record_bytes(df, &slot) {
                        let fp = format::fingerprint(slot.seg, slot.offset, rec);
                        if fp != 0 && seen == fp {
                            if let Ok(dec) = format::decode(rec, key, None) {
                                return Ok(Some(view(
                                    &st.index,
                                    i,
                                    seq,
                                    &slot,
                                    df.clone(),
                                    dec,
                                    hit,
                                )));
                            }
                        }
                    }
                }
            }
        }
        let Some(Located {
            ix,
            i,
            slot,
            seq,
            df,
        }) = self.locate(key)?
        else {
            return Ok(None);
        };
        let dec = match self.check_record(key, i, &slot, &df, false) {
            Ok(dec) => dec,
            Err(reason) => {
                self.quarantine(key, &slot, Some(&df), reason);
                return Ok(None);
            }
        };
        Ok(Some(view(&ix, i, seq, &slot, df, dec, hit)))
    }

    /// Whether `key` has a published slot (no verification, no hit).
    pub fn contains(&self, key: &Key) -> Result<bool> {
        Ok(self.current()?.lookup(key).is_some())
    }

    // ----- write side ------------------------------------------------------

    fn writer(&self) -> Result<Writer<'_>> {
        let mut ws = lock_mutex(&self.writer);
        let pid = std::process::id();
        let file = match &ws.lock_file {
            Some(f) if ws.pid == pid => f.clone(),
            _ => {
                let f = open_lock(&self.dir)?;
                ws.lock_file = Some(f.clone());
                ws.pid = pid;
                f
            }
        };
        let flock = lock::Exclusive::acquire(file).map_err(io_at(&self.dir.join("lock")))?;
        let mut ix = self.current_with(true)?;
        // A rebuild flags the old index superseded right after renaming the
        // new one in; a writer dying in between leaves the old one dirty. So
        // only a dirty index needs the (syscall) check that it is current.
        let path = self.dir.join("index");
        let stale = |ix: &Index| fs::metadata(&path).map(|m| m.ino()).ok() != Some(ix.ino);
        if ix.h(H_DIRTY).load(Acquire) != 0 && stale(&ix) {
            let fresh = Arc::new(open_index_locked(&self.dir)?.0);
            // Tell every process still mapping the old file to reopen.
            ix.h(H_SUPERSEDED).store(1, Release);
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.index = fresh.clone();
            st.forget_files();
            ix = fresh;
        }
        // The file in place is never legitimately flagged superseded.
        if ix.h(H_SUPERSEDED).load(Acquire) != 0 && !stale(&ix) {
            ix.h(H_SUPERSEDED).store(0, Release);
        }
        recover(&ix);
        check_header(&ix);
        ix.h(H_DIRTY).store(1, Release);
        Ok(Writer {
            store: self,
            ix,
            ws,
            _flock: flock,
        })
    }

    /// Stores an entry (replacing any entry under `key`). Entries larger than
    /// `max_bytes` are not stored: returns whether it was.
    pub fn put(&self, key: &Key, entry: &NewEntry<'_>) -> Result<bool> {
        let layout = format::layout(key, entry, now_ns());
        if layout.total_len > self.opts.max_bytes {
            return Ok(false);
        }
        let small = entry.buffers.is_empty() && layout.total_len <= self.small_max();
        let len = layout.total_len;
        let mut w = self.writer()?;
        let res = (|| {
            let mut written = None;
            let (seg, offset) = if small {
                let head = layout.head(entry.payload, &[], &self.mac);
                let (seg, offset) = w.append_small(&head)?;
                written = Some(format::fingerprint(seg, offset, &head));
                (seg, offset)
            } else {
                w.write_big(layout, entry)?
            };
            let slot = Slot {
                key: *key,
                state: LIVE,
                seg,
                compute_us: entry.compute_ns / 1000,
                offset,
                len,
            };
            let i = match w.publish(&slot) {
                Ok(i) => i,
                Err(e) => {
                    if !small {
                        let _ = fs::remove_file(self.data_path(seg)); // never published
                    }
                    return Err(e);
                }
            };
            if let Some(fp) = written {
                // This process made the MAC of exactly these bytes and
                // records are never rewritten in place, so its reads of the
                // record skip the MAC as after a verification (not the
                // checks on every read).
                let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
                if Arc::ptr_eq(&st.index, &w.ix) {
                    let cap = st.index.cap();
                    st.verified.insert(i, fp, cap);
                }
            }
            if w.ix.h(H_BYTES).load(Relaxed) > self.opts.max_bytes {
                // The counter may be wrong (see "Header counters").
                recount(&w.ix);
                if w.ix.h(H_BYTES).load(Relaxed) > self.opts.max_bytes {
                    w.evict(self.opts.max_bytes / 10 * 9)?;
                    match w.sweep() {
                        // Compaction needs room; the entry is stored.
                        Err(StorageError::NoSpace { .. }) => {}
                        r => r?,
                    }
                }
            }
            Ok(true)
        })();
        w.done(res)
    }

    /// Removes `key`; whether it was present.
    pub fn remove(&self, key: &Key) -> Result<bool> {
        let w = self.writer()?;
        let found = w.ix.lookup(key);
        let res = match found {
            Some((i, slot, _)) => w.drop_slot(i, &slot).map(|()| true),
            None => Ok(false),
        };
        w.done(res)
    }

    /// Removes every entry, or those of one group; how many.
    pub fn clear(&self, group: Option<&[u8; 16]>) -> Result<u64> {
        let mut w = self.writer()?;
        let res = match group {
            None => w.remove_all(),
            Some(g) => (|| {
                let mut n = 0;
                let live: Vec<(usize, Slot)> = w.ix.live().collect();
                for (i, slot) in live {
                    let end = slot.offset.saturating_add(slot.len);
                    let ours = match self.data_file(slot.seg, end) {
                        Ok(Some(df)) => self
                            .check_record(&slot.key, i, &slot, &df, false)
                            .is_ok_and(|d| d.group == *g),
                        Ok(None) | Err(StorageError::Corrupt { .. }) => false,
                        Err(e) => return Err(e),
                    };
                    if ours {
                        w.drop_slot(i, &slot)?;
                        n += 1;
                    }
                }
                w.sweep()?;
                Ok(n)
            })(),
        };
        w.done(res)
    }

    /// Counted from the slots, not taken from the header's counters.
    pub fn stats(&self) -> Result<Stats> {
        let ix = self.current()?;
        let (mut entries, mut bytes, mut hits) = (0, 0u64, 0u64);
        for (i, slot) in ix.live() {
            entries += 1;
            bytes = bytes.saturating_add(slot.len);
            hits = hits.saturating_add(ix.usage(i).0);
        }
        Ok(Stats {
            entries,
            bytes,
            hits,
            max_bytes: self.opts.max_bytes,
        })
    }

    /// Metadata of every readable entry (records failing their MAC skipped).
    pub fn list(&self) -> Result<Vec<EntryMeta>> {
        let ix = self.current()?;
        let mut out = Vec::new();
        for (i, slot) in ix.live() {
            let df = match self.data_file(slot.seg, slot.offset.saturating_add(slot.len)) {
                Ok(Some(df)) => df,
                Ok(None) | Err(StorageError::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(dec) = self.check_record(&slot.key, i, &slot, &df, false) else {
                continue;
            };
            let (hits, last_used_secs, _) = ix.usage(i);
            out.push(EntryMeta {
                key: slot.key,
                group: dec.group,
                size: slot.len,
                payload_len: dec.payload.len() as u64,
                buffers_len: dec.buffer_bytes(),
                compute_ns: dec.compute_ns,
                created_ns: dec.created_ns,
                last_used_secs,
                hits,
            });
        }
        Ok(out)
    }

    /// Enforces `max_bytes` now, compacts segments, deletes orphan files;
    /// returns how many entries were evicted.
    pub fn gc(&self) -> Result<u64> {
        let mut w = self.writer()?;
        recount(&w.ix);
        let res = w.evict(self.opts.max_bytes);
        let res = res.and_then(|n| w.sweep().map(|()| n));
        w.done(res)
    }

    /// Checks every record completely (MAC and all buffer checksums);
    /// quarantines the bad ones.
    pub fn verify(&self) -> Result<VerifyReport> {
        let ix = self.current()?;
        let mut report = VerifyReport::default();
        for (i, slot) in ix.live() {
            report.checked += 1;
            let df = match self.data_file(slot.seg, slot.offset.saturating_add(slot.len)) {
                Err(StorageError::Corrupt { reason, .. }) => {
                    self.discard_file(slot.seg, &reason);
                    report.bad.push((slot.key, reason));
                    continue;
                }
                df => df?,
            };
            let res = match &df {
                Some(df) => self.check_record(&slot.key, i, &slot, df, true).map(|_| ()),
                None => Err("data file missing"),
            };
            if let Err(reason) = res {
                self.quarantine(&slot.key, &slot, df.as_deref(), reason);
                report.bad.push((slot.key, reason.to_string()));
            }
        }
        Ok(report)
    }

    /// Coordinates a miss between threads and processes: the first caller
    /// gets `Claim::Compute`; the others poll (bounded by `timeout`) until the
    /// entry appears (`Ready`) or the claim is released without one (then
    /// one of them gets `Compute`).
    pub fn claim(&self, key: &Key, timeout: Duration) -> Result<Claim> {
        let start = Instant::now();
        let mut nap = Duration::from_micros(100);
        loop {
            if self.contains(key)? {
                return Ok(Claim::Ready);
            }
            if let Some(guard) = self
                .claims
                .try_acquire(key)
                .map_err(io_at(self.claims.path()))?
            {
                // The previous holder may have stored it just before releasing.
                if self.contains(key)? {
                    return Ok(Claim::Ready);
                }
                return Ok(Claim::Compute(guard));
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Ok(Claim::TimedOut);
            }
            std::thread::sleep(nap.min(left));
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }

    /// Drops `key`'s slot if it still is `slot`, and moves the bad bytes to
    /// `quarantine/`. Best effort: a failure here only leaves a miss.
    fn quarantine(&self, key: &Key, slot: &Slot, df: Option<&DataFile>, reason: &str) {
        QUARANTINED.fetch_add(1, Relaxed);
        let Ok(w) = self.writer() else { return };
        if let Some((i, now, _)) = w.ix.lookup(key) {
            if now == *slot {
                let q = self.quarantine_path(&key_hex(key), reason);
                if slot.seg & BIG_BIT != 0 {
                    let _ = fs::rename(self.data_path(slot.seg), &q);
                } else if let Some(bytes) = df.and_then(|d| record_bytes(d, slot)) {
                    let _ = fs::write(&q, bytes);
                }
                let _ = w.drop_slot(i, slot);
            }
        }
        let _ = w.finish();
    }

    /// A new path in `quarantine/` for something called `name`, with the
    /// reason written beside it (`<path>.reason`).
    fn quarantine_path(&self, name: &str, reason: &str) -> PathBuf {
        let q = self
            .dir
            .join("quarantine")
            .join(format!("{name}.{}", now_ns()));
        let mut note = q.clone().into_os_string();
        note.push(".reason");
        let _ = fs::write(note, reason);
        q
    }
}

/// Counts a hit on slot `i` and wraps a verified record.
fn view(
    ix: &Index,
    i: usize,
    seq: u64,
    slot: &Slot,
    data: Arc<DataFile>,
    dec: Decoded,
    hit: bool,
) -> EntryView {
    if hit {
        ix.touch(i, seq, lock::coarse_now_secs());
    }
    let (hits, last_used_secs, _) = ix.usage(i);
    let meta = EntryMeta {
        key: dec.key,
        group: dec.group,
        size: slot.len,
        payload_len: dec.payload.len() as u64,
        buffers_len: dec.buffer_bytes(),
        compute_ns: dec.compute_ns,
        created_ns: dec.created_ns,
        last_used_secs,
        hits,
    };
    EntryView {
        data,
        start: slot.offset as usize,
        dec,
        meta,
    }
}

/// The bytes `slot` names in `df`, if they lie inside the file.
fn record_bytes<'d>(df: &'d DataFile, slot: &Slot) -> Option<&'d [u8]> {
    let o = usize::try_from(slot.offset).ok()?;
    let l = usize::try_from(slot.len).ok()?;
    df.map.bytes().get(o..o.checked_add(l)?)
}

/// Records and index files found bad (and moved to `quarantine/`) by this
/// process, so callers can tell a user once that their cache was damaged.
static QUARANTINED: AtomicU64 = AtomicU64::new(0);

/// How many records or index files this process has quarantined so far.
pub fn quarantined() -> u64 {
    QUARANTINED.load(Relaxed)
}

/// The writer lock file of the store in `dir` (created if missing), which
/// must be ours and writable by no one else.
fn open_lock(dir: &Path) -> Result<Arc<File>> {
    let path = dir.join("lock");
    let file = lock::open_lock_file(&path).map_err(io_at(&path))?;
    check_owner_mode(&path, &file.metadata().map_err(io_at(&path))?, 0o022)?;
    Ok(Arc::new(file))
}

/// Opens `dir/index`, creating it as needed, or replacing one that cannot
/// be used (then with why: the old one and its data were moved to
/// `quarantine/`). Caller holds the writer lock.
fn open_index_locked(dir: &Path) -> Result<(Index, Option<&'static str>)> {
    let path = dir.join("index");
    let opened = match open_data_file(&path, true) {
        Ok(Some((f, meta))) => Some(Index::open(&f, &meta)),
        Ok(None) => None,
        // A symlink, another owner's file...: as good as garbage.
        Err(StorageError::Corrupt { .. }) => Some(Err(OpenError::Invalid("not ours"))),
        Err(e) => return Err(e),
    };
    let reset = match opened {
        Some(Ok(ix)) => return Ok((ix, None)),
        Some(Err(OpenError::Io(e))) => return Err(io_at(&path)(e)),
        Some(Err(why @ (OpenError::Invalid(_) | OpenError::OtherVersion))) => {
            QUARANTINED.fetch_add(1, Relaxed);
            let q = dir.join("quarantine").join(format!("store.{}", now_ns()));
            ensure_dir(&q)?;
            fs::rename(&path, q.join("index")).map_err(io_at(&path))?;
            let data = dir.join("data");
            fs::rename(&data, q.join("data")).map_err(io_at(&data))?;
            ensure_dir(&data)?;
            Some(match why {
                OpenError::OtherVersion => {
                    "found a cache written by another version of bytecache (another store \
                     format) and moved it to quarantine/"
                }
                _ => "found a damaged index and moved it to quarantine/",
            })
        }
        None => None,
    };
    let tmp = dir.join("index.tmp");
    let f = open_rw(&tmp, true).map_err(io_at(&tmp))?;
    let ix = Index::init(&f, index::MIN_CAP).map_err(io_at(&tmp))?;
    f.sync_all().map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))?;
    Ok((ix, reset))
}

/// If the previous writer died mid-update: repair torn slots, recount.
fn recover(ix: &Index) {
    if ix.h(H_DIRTY).load(Acquire) == 0 {
        return;
    }
    for i in 0..ix.cap() {
        if ix.torn(i) {
            ix.repair(i);
        }
    }
    recount(ix);
    ix.h(H_DIRTY).store(0, Release);
}

fn recount(ix: &Index) {
    let (mut live, mut tombs, mut bytes) = (0, 0, 0);
    for i in 0..ix.cap() {
        match ix.read(i) {
            Some((s, _)) if s.state == LIVE => {
                live += 1;
                bytes = s.len.saturating_add(bytes);
            }
            Some((s, _)) if s.state == TOMB => tombs += 1,
            _ => {}
        }
    }
    ix.h(H_LIVE).store(live, Relaxed);
    ix.h(H_TOMBS).store(tombs, Relaxed);
    ix.h(H_BYTES).store(bytes, Relaxed);
}

/// Puts implausible header words right (see "Header counters"); writer
/// only, O(1) unless a counter is off.
fn check_header(ix: &Index) {
    let (live, tombs, bytes) = (
        ix.h(H_LIVE).load(Relaxed),
        ix.h(H_TOMBS).load(Relaxed),
        ix.h(H_BYTES).load(Relaxed),
    );
    let min_bytes = live.saturating_mul(format::PREFIX as u64);
    if live.saturating_add(tombs) > ix.cap() as u64
        || bytes < min_bytes
        || (live == 0) != (bytes == 0)
    {
        recount(ix);
    }
    let clock = f64::from_bits(ix.h(H_CLOCK).load(Relaxed));
    if !(clock.is_finite() && clock >= 0.0) {
        ix.h(H_CLOCK).store(0f64.to_bits(), Relaxed);
    }
    let active = ix.h(H_ACTIVE_SEG).load(Relaxed);
    if u32::try_from(active).map_or(true, |seg| seg & BIG_BIT != 0) {
        ix.h(H_ACTIVE_SEG).store(0, Relaxed);
    }
}

/// Holder of the writer lock (in-process mutex + flock), with the index
/// flagged dirty until `finish`.
struct Writer<'s> {
    store: &'s Store,
    ix: Arc<Index>,
    // Field order matters: the flock must be released BEFORE the mutex.
    // Threads share the lock file's descriptor, so a thread that got the
    // mutex first would "acquire" the flock we still hold, and our unlock
    // would then leave it running unprotected.
    _flock: lock::Exclusive,
    ws: MutexGuard<'s, WriterState>,
}

impl Writer<'_> {
    /// A fresh file id (never 0, which means "no active segment").
    fn new_seg_id(&self) -> u32 {
        loop {
            let id = self.ix.h(H_NEXT_SEG).fetch_add(1, Relaxed) as u32 & !BIG_BIT;
            if id != 0 {
                return id;
            }
        }
    }

    fn create_data_file(&self, big: bool) -> Result<(u32, File, PathBuf)> {
        loop {
            let id = self.new_seg_id() | if big { BIG_BIT } else { 0 };
            let path = self.store.data_path(id);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => return Ok((id, f, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
    }

    fn sync_new_file(&self, f: &File, path: &Path) -> Result<()> {
        if self.store.opts.durability == Durability::Full {
            f.sync_data().map_err(io_at(path))?;
            let d = self.store.dir.join("data");
            File::open(&d)
                .and_then(|d| d.sync_all())
                .map_err(io_at(&d))?;
        }
        Ok(())
    }

    /// Appends a record to the active small segment (or a new one when it
    /// is full or unusable); returns (seg, offset).
    fn append_small(&mut self, rec: &[u8]) -> Result<(u32, u64)> {
        let seg = self.ix.h(H_ACTIVE_SEG).load(Relaxed) as u32;
        if self.ws.active.as_ref().map(|a| a.0) != Some(seg) {
            self.ws.active = None;
            if seg != 0 {
                match open_data_file(&self.store.data_path(seg), true) {
                    Ok(f) => self.ws.active = f.map(|(f, _)| (seg, f)),
                    Err(StorageError::Corrupt { reason, .. }) => self.discard(seg, &reason)?,
                    Err(e) => return Err(e),
                }
            }
        }
        // Past everything the file holds, so nothing is ever overwritten.
        let end = match &self.ws.active {
            Some((_, f)) => Some(
                f.metadata()
                    .map_err(io_at(&self.store.data_path(seg)))?
                    .len(),
            ),
            None => None,
        };
        let len = rec.len() as u64;
        let reserved = self.ws.reserved;
        let at = end
            .map(|e| format::align_up(e, REC_ALIGN))
            .filter(|&at| at.saturating_add(len) <= self.store.opts.segment_bytes);
        let (seg, off, f) = match (at, &self.ws.active) {
            (Some(at), Some((seg, f))) => (*seg, at, f),
            _ => {
                let (id, f, path) = self.create_data_file(false)?;
                self.sync_new_file(&f, &path)?;
                self.ix.h(H_ACTIVE_SEG).store(u64::from(id), Relaxed);
                let (_, f) = self.ws.active.insert((id, f));
                (id, 0, &*f)
            }
        };
        let path = self.store.data_path(seg);
        let end = off + len;
        let mut now_reserved = None;
        if reserved.0 != seg || reserved.1 < end {
            // Allocated ahead, a chunk at a time: most appends need no
            // allocation call. A chunk the disk cannot hold, or a file
            // system that cannot, falls back to allocating this record.
            let ahead = end
                .max(off.saturating_add(RESERVE_AHEAD))
                .min(self.store.opts.segment_bytes.max(end));
            match space::reserve_ahead(f, off, ahead - off) {
                Ok(true) => now_reserved = Some((seg, ahead)),
                Ok(false) => space::reserve_new(f, off, len).map_err(io_at(&path))?,
                Err(e) if space::is_no_space(&e) => {
                    space::reserve_new(f, off, len).map_err(io_at(&path))?
                }
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        f.write_all_at(rec, off).map_err(io_at(&path))?;
        if self.store.opts.durability == Durability::Full {
            f.sync_data().map_err(io_at(&path))?;
        }
        if let Some(r) = now_reserved {
            self.ws.reserved = r;
        }
        Ok((seg, off))
    }

    /// Writes a record with buffers into a file of its own, its space
    /// allocated first. Each buffer is copied in chunks, and its checksum
    /// taken from the copy that is written, so the record matches its
    /// checksums even if the caller's memory changes meanwhile; then the
    /// file is marked as checked (`stamp.rs`).
    fn write_big(&self, layout: format::Layout, entry: &NewEntry<'_>) -> Result<(u32, u64)> {
        let (id, f, path) = self.create_data_file(true)?;
        let res = (|| {
            space::reserve_new(&f, 0, layout.total_len)?;
            let mut sums = Vec::with_capacity(entry.buffers.len());
            for (off, b) in layout.buffer_offsets().zip(entry.buffers) {
                sums.push(format::copy_buffer(b, |at, chunk| {
                    f.write_all_at(chunk, off + at)
                })?);
            }
            let head = layout.head(entry.payload, &sums, &self.store.mac);
            f.write_all_at(&head, 0)?;
            Ok(format::tag(&head))
        })();
        let tag = match res {
            Ok(tag) => tag,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(io_at(&path)(e));
            }
        };
        self.sync_new_file(&f, &path)?;
        stamp::mark_written(&f, &tag, self.store.opts.durability == Durability::Full);
        Ok((id, 0))
    }

    /// Publishes `slot`; its position in the index.
    fn publish(&mut self, slot: &Slot) -> Result<usize> {
        let (live, tombs) = (
            self.ix.h(H_LIVE).load(Relaxed),
            self.ix.h(H_TOMBS).load(Relaxed),
        );
        if live
            .saturating_add(tombs)
            .saturating_add(1)
            .saturating_mul(4)
            > self.ix.cap() as u64 * 3
        {
            self.rebuild()?;
        }
        let found = match self.ix.find_insert(&slot.key) {
            Some(found) => Some(found),
            // Counters too low (or a slot stuck mid-update): rebuild.
            None => {
                self.rebuild()?;
                self.ix.find_insert(&slot.key)
            }
        };
        let ix = &self.ix;
        let Some((i, old)) = found else {
            return Err(StorageError::Corrupt {
                path: self.store.dir.join("index"),
                reason: "index full".into(),
            });
        };
        let was_tomb = old.is_none() && ix.read(i).is_some_and(|(s, _)| s.state == TOMB);
        let clock = f64::from_bits(ix.h(H_CLOCK).load(Relaxed)) as f32;
        ix.write(i, slot, now_ns() / 1_000_000_000, clock);
        ix.h(H_BYTES).fetch_add(slot.len, Relaxed);
        match old {
            Some(old) => {
                ix.h(H_BYTES)
                    .fetch_sub(old.len.min(ix.h(H_BYTES).load(Relaxed)), Relaxed);
                self.unlink_if_big(&old)?;
            }
            None => {
                ix.h(H_LIVE).fetch_add(1, Relaxed);
                if was_tomb {
                    ix.h(H_TOMBS).fetch_sub(1, Relaxed);
                }
            }
        }
        Ok(i)
    }

    fn unlink_if_big(&self, slot: &Slot) -> Result<()> {
        if slot.seg & BIG_BIT != 0 {
            let path = self.store.data_path(slot.seg);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&path)(e)),
            }
            self.ix.h(H_EPOCH).fetch_add(1, Relaxed);
        }
        Ok(())
    }

    fn drop_slot(&self, i: usize, slot: &Slot) -> Result<()> {
        self.ix.kill(i, slot);
        let ix = &self.ix;
        ix.h(H_LIVE)
            .fetch_sub(1.min(ix.h(H_LIVE).load(Relaxed)), Relaxed);
        ix.h(H_TOMBS).fetch_add(1, Relaxed);
        ix.h(H_BYTES)
            .fetch_sub(slot.len.min(ix.h(H_BYTES).load(Relaxed)), Relaxed);
        self.unlink_if_big(slot)
    }

    /// Rewrites the index at a capacity with load <= 1/2, without tombstones,
    /// then atomically renames it into place.
    fn rebuild(&mut self) -> Result<()> {
        let old = self.ix.clone();
        recount(&old);
        let live = old.h(H_LIVE).load(Relaxed);
        let cap = ((live + 1) * 2).next_power_of_two().max(index::MIN_CAP);
        let tmp = self.store.dir.join("index.tmp");
        let f = open_rw(&tmp, true).map_err(io_at(&tmp))?;
        let new = Index::init(&f, cap).map_err(io_at(&tmp))?;
        for w in index::H_DYNAMIC {
            new.h(w).store(old.h(w).load(Relaxed), Relaxed);
        }
        new.h(H_TOMBS).store(0, Relaxed);
        new.h(H_DIRTY).store(1, Relaxed);
        let mut moves = Vec::with_capacity(live as usize);
        for i in 0..old.cap() {
            let Some((s, _)) = old.read(i) else { continue };
            if s.state != LIVE {
                continue;
            }
            if let Some((j, _)) = new.find_insert(&s.key) {
                new.write(j, &s, 0, 0.0);
                new.copy_usage(j, &old, i);
                moves.push((i, j));
            }
        }
        f.sync_all().map_err(io_at(&tmp))?;
        let path = self.store.dir.join("index");
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        old.h(H_SUPERSEDED).store(1, Release);
        let new = Arc::new(new);
        let mut st = self.store.state.write().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&st.index, &old) {
            st.verified.moved(&moves, cap as usize);
        }
        st.index = new.clone();
        self.ix = new;
        Ok(())
    }

    /// GreedyDual-Size-Frequency eviction down to `target` bytes.
    fn evict(&mut self, target: u64) -> Result<u64> {
        let ix = self.ix.clone();
        if ix.h(H_BYTES).load(Relaxed) <= target {
            return Ok(0);
        }
        let mut cands: Vec<(f64, usize, Slot)> = (0..ix.cap())
            .filter_map(|i| {
                let (s, _) = ix.read(i).filter(|(s, _)| s.state == LIVE)?;
                let (hits, _, base) = ix.usage(i);
                let prio =
                    base + (hits as f64 + 1.0) * (s.compute_us as f64 + 1.0) / s.len.max(1) as f64;
                Some((prio, i, s))
            })
            .collect();
        cands.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut clock = f64::from_bits(ix.h(H_CLOCK).load(Relaxed));
        let mut n = 0;
        for (prio, i, s) in cands {
            if ix.h(H_BYTES).load(Relaxed) <= target {
                break;
            }
            self.drop_slot(i, &s)?;
            clock = clock.max(prio);
            n += 1;
        }
        ix.h(H_CLOCK).store(clock.to_bits(), Relaxed);
        Ok(n)
    }

    /// Compacts small segments that are mostly dead; deletes data files no
    /// slot refers to (dead segments, leftovers of crashed writers).
    fn sweep(&mut self) -> Result<()> {
        let ix = self.ix.clone();
        let active = ix.h(H_ACTIVE_SEG).load(Relaxed) as u32;
        // Per file: live record bytes, the end of its last record, slots.
        let mut live: HashMap<u32, (u64, u64, Vec<usize>)> = HashMap::new();
        for (i, s) in ix.live() {
            let e = live.entry(s.seg).or_default();
            e.0 = e.0.saturating_add(s.len);
            e.1 = e.1.max(s.offset.saturating_add(s.len));
            e.2.push(i);
        }
        let dir = self.store.dir.join("data");
        // Snapshot the listing first: compaction below may create segments.
        let entries = fs::read_dir(&dir)
            .and_then(|d| d.collect::<io::Result<Vec<_>>>())
            .map_err(io_at(&dir))?;
        for ent in entries {
            let Some(id) = ent
                .file_name()
                .to_str()
                .and_then(|n| u32::from_str_radix(n, 16).ok())
            else {
                continue;
            };
            if id == active {
                continue;
            }
            let used = ent.metadata().map_err(io_at(&ent.path()))?.blocks() * 512;
            match live.get(&id) {
                None => {}
                Some((bytes, ..)) if id & BIG_BIT != 0 || bytes.saturating_mul(2) >= used => {
                    continue
                }
                Some((_, end, slots)) => {
                    let df = match self.store.data_file(id, *end) {
                        Ok(Some(df)) => df,
                        Ok(None) => continue,
                        Err(StorageError::Corrupt { reason, .. }) => {
                            self.discard(id, &reason)?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    for &i in slots {
                        let Some((s, _)) = ix.read(i) else { continue };
                        let Some(rec) = record_bytes(&df, &s) else {
                            continue;
                        };
                        let (seg, offset) = self.append_small(rec)?;
                        let (hits, last, base) = ix.usage(i);
                        ix.write(i, &Slot { seg, offset, ..s }, last, base as f32);
                        ix.set_hits(i, hits);
                    }
                }
            }
            let path = ent.path();
            fs::remove_file(&path).map_err(io_at(&path))?;
            ix.h(H_EPOCH).fetch_add(1, Relaxed);
        }
        Ok(())
    }

    /// Drops every record of data file `seg` (not a regular file of ours)
    /// and moves the file to `quarantine/`.
    fn discard(&mut self, seg: u32, reason: &str) -> Result<()> {
        QUARANTINED.fetch_add(1, Relaxed);
        let q = self.store.quarantine_path(&format!("{seg:08x}"), reason);
        let path = self.store.data_path(seg);
        match fs::rename(&path, q) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&path)(e)),
        }
        self.ix.h(H_EPOCH).fetch_add(1, Relaxed);
        if self.ix.h(H_ACTIVE_SEG).load(Relaxed) == u64::from(seg) {
            self.ix.h(H_ACTIVE_SEG).store(0, Relaxed);
        }
        if self.ws.active.as_ref().is_some_and(|a| a.0 == seg) {
            self.ws.active = None;
        }
        let gone: Vec<(usize, Slot)> = self.ix.live().filter(|(_, s)| s.seg == seg).collect();
        for (i, s) in gone {
            self.drop_slot(i, &s)?;
        }
        Ok(())
    }

    /// Drops every entry and deletes every data file; how many entries.
    fn remove_all(&mut self) -> Result<u64> {
        let live: Vec<(usize, Slot)> = self.ix.live().collect();
        for (i, slot) in &live {
            self.drop_slot(*i, slot)?;
        }
        self.ix.h(H_ACTIVE_SEG).store(0, Relaxed);
        self.ws.active = None;
        self.sweep()?;
        Ok(live.len() as u64)
    }

    /// Ends the update (see `finish`) and returns `res`. After an error the
    /// index is consistent too: every step leaves it so.
    fn done<T>(self, res: Result<T>) -> Result<T> {
        let finished = self.finish();
        let value = res?;
        finished.map(|()| value)
    }

    fn finish(self) -> Result<()> {
        self.ix.h(H_DIRTY).store(0, Release);
        if self.store.opts.durability == Durability::Full {
            self.ix
                .flush()
                .map_err(io_at(&self.store.dir.join("index")))?;
        }
        Ok(())
    }
}
