//! On-disk record format (one record per entry) and its checked decoder.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "BYTCREC1"
//! 8       2     format VERSION (u16 LE)
//! 10      2     ABI tag (u16 LE: endianness, pointer width)
//! 12      4     meta_len (u32 LE): exact length of the rkyv archive
//! 16      8     body_len (u64 LE) = align16(meta_len) + align16(record_len)
//!                                  + payload_len
//! 24      8     total_len (u64 LE) = whole record incl. buffers
//! 32      32    MAC = keyed BLAKE3(bytes[0..32] ++ body)
//! 64      ...   body: rkyv-archived `Meta` (meta_len bytes, zero-padded to a
//!               multiple of 16), the rkyv-archived dependency record
//!               (`Vec<RecordDep>`, `Meta::record_len` bytes, zero-padded to
//!               a multiple of 16), payload
//! ...           buffers, each at a 4096-aligned offset from the record start
//! ```
//!
//! The MAC authenticates the header, `Meta` (key, group, sizes, timings, the
//! files and directories read, and the XXH3-128 of every buffer), the
//! dependency record and the payload (a pickle stream, which can run code
//! when loaded). Buffers are raw bytes: they are covered through the
//! authenticated per-buffer checksum, verified by [`Decoded::check_buffers`].
//! Both archives are only ever read through `rkyv::access`
//! (bytecheck-validated), after the MAC matched. The dependency record is an
//! archive of its own because only `explain` and listings read it: a hit
//! validates `Meta` alone, not the record's strings (most of a small
//! record's bytes).
use std::ops::Range;

use rkyv::rancor;
use rkyv::{Archive, Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::auth::MacKey;
use super::{Key, NewEntry};

pub const MAGIC: [u8; 8] = *b"BYTCREC1";
pub const VERSION: u16 = 3;
/// bit 0: little endian; bits 8..: pointer width in bytes.
pub const ABI: u16 = (cfg!(target_endian = "little") as u16) | ((usize::BITS as u16 / 8) << 8);
pub const PREFIX: usize = 64;
pub const BUF_ALIGN: u64 = 4096;

#[derive(Archive, Serialize)]
pub struct Meta {
    pub key: [u8; 16],
    pub group: [u8; 16],
    pub compute_ns: u64,
    pub created_ns: u64,
    pub payload_len: u64,
    /// Length of the archived dependency record that follows this archive.
    pub record_len: u64,
    pub files: Vec<FileDep>,
    pub dirs: Vec<DirDep>,
    pub buffers: Vec<BufMeta>,
}

/// What a stored result depends on beyond its key: the data files and
/// directories the call read (checked on every hit) and the functions,
/// globals and arguments its key covered (what `explain` compares).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deps {
    pub files: Vec<FileDep>,
    pub dirs: Vec<DirDep>,
    pub record: Vec<RecordDep>,
}

/// A file read: its size, modification time and content digest.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[rkyv(compare(PartialEq), derive(Debug))]
pub struct FileDep {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub digest: [u8; 16],
}

/// A directory listed: the digest of its sorted names.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[rkyv(compare(PartialEq), derive(Debug))]
pub struct DirDep {
    pub path: String,
    pub digest: [u8; 16],
}

/// One function, global or argument the key covered.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[rkyv(compare(PartialEq), derive(Debug))]
pub struct RecordDep {
    pub kind: String,
    pub name: String,
    pub display: Option<String>,
    pub digest: [u8; 16],
}

#[derive(Archive, Serialize)]
pub struct BufMeta {
    pub offset: u64,
    pub len: u64,
    pub xxh3: u128,
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// Where every part of a record goes. The buffers' checksums are filled in
/// by [`Layout::head`] (they change no size), so a writer can take them from
/// the very bytes it writes ([`copy_buffer`]).
pub struct Layout {
    meta: Meta,
    /// The dry run's archive of `meta`: final when there are no buffers
    /// (their checksums are only known once they are written).
    archived: rkyv::util::AlignedVec,
    /// The archived dependency record.
    record: rkyv::util::AlignedVec,
    meta_len: u64,
    body_len: u64,
    /// The whole record's length, buffers included.
    pub total_len: u64,
}

/// Lays out the record of `e` under `key`.
pub fn layout(key: &Key, e: &NewEntry<'_>, created_ns: u64) -> Layout {
    let record = archive_record(&e.deps.record);
    let mut meta = Meta {
        key: *key,
        group: e.group,
        compute_ns: e.compute_ns,
        created_ns,
        payload_len: e.payload.len() as u64,
        record_len: record.len() as u64,
        files: e.deps.files.clone(),
        dirs: e.deps.dirs.clone(),
        buffers: e
            .buffers
            .iter()
            .map(|b| BufMeta {
                offset: 0,
                len: b.len() as u64,
                xxh3: 0,
            })
            .collect(),
    };
    // Offsets and checksums are fixed-size integers: filling them in does
    // not change the archive's size, so this dry run fixes meta_len and with
    // it every buffer offset.
    let archived = archive(&meta);
    let meta_len = archived.len() as u64;
    let body_len = align_up(meta_len, 16) + align_up(meta.record_len, 16) + meta.payload_len;
    let mut end = PREFIX as u64 + body_len;
    for b in &mut meta.buffers {
        b.offset = align_up(end, BUF_ALIGN);
        end = b.offset + b.len;
    }
    Layout {
        meta,
        archived,
        record,
        meta_len,
        body_len,
        total_len: end,
    }
}

impl Layout {
    /// Where each buffer starts, from the record start.
    pub fn buffer_offsets(&self) -> impl Iterator<Item = u64> + '_ {
        self.meta.buffers.iter().map(|b| b.offset)
    }

    /// The record up to its buffers (prefix with MAC, meta, dependency
    /// record, payload), with `sums[i]` the XXH3-128 of buffer `i`.
    pub fn head(mut self, payload: &[u8], sums: &[u128], mac: &MacKey) -> Vec<u8> {
        let archived = if self.meta.buffers.is_empty() {
            self.archived
        } else {
            for (b, sum) in self.meta.buffers.iter_mut().zip(sums) {
                b.xxh3 = *sum;
            }
            archive(&self.meta)
        };
        debug_assert_eq!(archived.len() as u64, self.meta_len);
        let mut head = Vec::with_capacity(PREFIX + self.body_len as usize);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&ABI.to_le_bytes());
        head.extend_from_slice(&(self.meta_len as u32).to_le_bytes());
        head.extend_from_slice(&self.body_len.to_le_bytes());
        head.extend_from_slice(&self.total_len.to_le_bytes());
        head.extend_from_slice(&[0u8; 32]);
        head.extend_from_slice(&archived);
        head.resize(PREFIX + align_up(self.meta_len, 16) as usize, 0);
        head.extend_from_slice(&self.record);
        head.resize(
            PREFIX + (align_up(self.meta_len, 16) + align_up(self.meta.record_len, 16)) as usize,
            0,
        );
        head.extend_from_slice(payload);
        let tag = mac.mac(&[&head[..32], &head[PREFIX..]]);
        head[32..64].copy_from_slice(tag.as_bytes());
        head
    }
}

/// Hands `b` to `write` in chunks (with each chunk's offset in `b`), each a
/// private copy, and returns the XXH3-128 of exactly the bytes handed over.
pub fn copy_buffer(
    b: &[u8],
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<u128> {
    const CHUNK: usize = 1 << 20;
    let mut copy = Vec::with_capacity(CHUNK.min(b.len()));
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, part) in b.chunks(CHUNK).enumerate() {
        copy.clear();
        copy.extend_from_slice(part);
        h.update(&copy);
        write((k * CHUNK) as u64, &copy)?;
    }
    Ok(h.digest128())
}

/// The MAC tag of a record (its bytes 32..64; zeros if it is shorter).
pub fn tag(rec: &[u8]) -> [u8; 32] {
    let mut t = [0u8; 32];
    if let Some(b) = rec.get(32..PREFIX) {
        t.copy_from_slice(b);
    }
    t
}

fn archive(meta: &Meta) -> rkyv::util::AlignedVec {
    let strings: usize = meta.files.iter().map(|f| 40 + f.path.len()).sum::<usize>()
        + meta.dirs.iter().map(|f| 32 + f.path.len()).sum::<usize>();
    to_bytes(meta, 256 + 48 * meta.buffers.len() + strings)
}

fn archive_record(record: &Vec<RecordDep>) -> rkyv::util::AlignedVec {
    let strings: usize = record
        .iter()
        .map(|r| 56 + r.kind.len() + r.name.len() + r.display.as_ref().map_or(0, String::len))
        .sum();
    to_bytes(record, 16 + strings)
}

/// The rkyv archive of `value`, in a buffer of `capacity` bytes to start
/// with (growing from empty took a dozen reallocations a record).
fn to_bytes<T>(value: &T, capacity: usize) -> rkyv::util::AlignedVec
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rancor::Panic,
        >,
    >,
{
    let buffer = rkyv::util::AlignedVec::with_capacity(capacity);
    // Serializing integers, strings and Vecs into memory cannot fail.
    rkyv::api::high::to_bytes_in::<_, rancor::Panic>(value, buffer)
        .unwrap_or_else(|never| match never {})
}

/// Fixed-size facts about a verified record; ranges are relative to the
/// record start.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub key: Key,
    /// The record's MAC tag (see [`tag`]).
    pub tag: [u8; 32],
    pub group: [u8; 16],
    pub compute_ns: u64,
    pub created_ns: u64,
    pub payload: Range<usize>,
    /// The archived `Meta` (see [`meta`]).
    pub meta: Range<usize>,
    /// The archived dependency record (see [`record`]).
    pub record: Range<usize>,
    /// Whether the entry depends on files or directories (checked on a hit).
    pub has_file_deps: bool,
    pub buffers: Vec<(Range<usize>, u128)>,
}

impl Decoded {
    pub fn buffer_bytes(&self) -> u64 {
        self.buffers.iter().map(|(r, _)| r.len() as u64).sum()
    }

    /// Checks every buffer of `rec` against its authenticated XXH3-128.
    pub fn check_buffers(&self, rec: &[u8]) -> Result<(), &'static str> {
        for (r, sum) in &self.buffers {
            if xxh3_128(&rec[r.clone()]) != *sum {
                return Err("buffer checksum mismatch");
            }
        }
        Ok(())
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Identifies one verified record: where it is and its header incl. MAC tag
/// (so a record rewritten in place is never mistaken for the verified one).
pub fn fingerprint(seg: u32, offset: u64, rec: &[u8]) -> u64 {
    let head = &rec[..rec.len().min(PREFIX)];
    xxhash_rust::xxh3::xxh3_64_with_seed(
        head,
        u64::from(seg) << 40 ^ offset ^ (rec.len() as u64).rotate_left(20),
    )
}

/// Validates `rec` (exactly one record) for `key`: header, MAC, archived meta
/// (checked access), and that every range lies inside `rec`. Buffers are NOT
/// checksummed here (see [`Decoded::check_buffers`]).
/// `mac: None` skips the MAC (only for bytes this process already verified).
pub fn decode(rec: &[u8], key: &Key, mac: Option<&MacKey>) -> Result<Decoded, &'static str> {
    if rec.len() < PREFIX {
        return Err("record shorter than its header");
    }
    if rec[..8] != MAGIC {
        return Err("bad record magic");
    }
    if rec[8..10] != VERSION.to_le_bytes() || rec[10..12] != ABI.to_le_bytes() {
        return Err("record from another format version or ABI");
    }
    let meta_len = u32::from_le_bytes([rec[12], rec[13], rec[14], rec[15]]) as u64;
    let body_len = u64_at(rec, 16);
    let total_len = u64_at(rec, 24);
    if total_len != rec.len() as u64 {
        return Err("record length mismatch");
    }
    let body_end = (PREFIX as u64)
        .checked_add(body_len)
        .filter(|&e| e <= total_len);
    let Some(body_end) = body_end else {
        return Err("record body out of bounds");
    };
    let meta_pad = align_up(meta_len, 16);
    if meta_pad > body_len {
        return Err("bad meta length");
    }
    let body_end = body_end as usize;
    if let Some(mac) = mac {
        let tag = mac.mac(&[&rec[..32], &rec[PREFIX..body_end]]);
        // blake3::Hash equality is constant-time.
        if tag != blake3::Hash::from_bytes(rec[32..64].try_into().map_err(|_| "short MAC")?) {
            return Err("MAC mismatch");
        }
    }
    let meta_bytes = &rec[PREFIX..PREFIX + meta_len as usize];
    let meta = rkyv::access::<ArchivedMeta, rancor::Failure>(meta_bytes)
        .map_err(|_| "archived meta failed validation")?;
    if meta.key != *key {
        return Err("record belongs to another key");
    }
    let payload_len = meta.payload_len.to_native();
    let record_len = meta.record_len.to_native();
    let record_pad = record_len.checked_next_multiple_of(16);
    let parts = record_pad
        .and_then(|r| r.checked_add(meta_pad))
        .and_then(|h| h.checked_add(payload_len));
    if parts != Some(body_len) {
        return Err("body length mismatch");
    }
    let r0 = PREFIX + meta_pad as usize;
    let p0 = r0 + record_pad.unwrap_or_default() as usize;
    let p1 = p0 + payload_len as usize;
    let mut buffers = Vec::with_capacity(meta.buffers.len());
    let mut prev_end = body_end as u64;
    for b in meta.buffers.iter() {
        let (off, len) = (b.offset.to_native(), b.len.to_native());
        let end = off.checked_add(len).ok_or("buffer overflow")?;
        if off < prev_end || off % BUF_ALIGN != 0 || end > total_len {
            return Err("buffer out of bounds");
        }
        prev_end = end;
        buffers.push((off as usize..end as usize, b.xxh3.to_native()));
    }
    Ok(Decoded {
        key: *key,
        tag: tag(rec),
        group: meta.group,
        compute_ns: meta.compute_ns.to_native(),
        created_ns: meta.created_ns.to_native(),
        payload: p0..p1,
        meta: PREFIX..PREFIX + meta_len as usize,
        record: r0..r0 + record_len as usize,
        has_file_deps: !(meta.files.is_empty() && meta.dirs.is_empty()),
        buffers,
    })
}

/// The archived `Meta` of a record `decode` accepted (checked access again:
/// `Decoded` keeps ranges, not references).
pub fn meta<'r>(rec: &'r [u8], dec: &Decoded) -> Result<&'r ArchivedMeta, &'static str> {
    rkyv::access::<ArchivedMeta, rancor::Failure>(&rec[dec.meta.clone()])
        .map_err(|_| "archived meta failed validation")
}

/// The dependency record of a record `decode` accepted (validated here, on
/// first use: a hit never reads it).
pub fn record<'r>(rec: &'r [u8], dec: &Decoded) -> Result<&'r ArchivedRecord, &'static str> {
    rkyv::access::<ArchivedRecord, rancor::Failure>(&rec[dec.record.clone()])
        .map_err(|_| "archived dependency record failed validation")
}

/// Everything a record `decode` accepted depends on, as owned values.
pub fn deps(rec: &[u8], dec: &Decoded) -> Result<Deps, &'static str> {
    let m = meta(rec, dec)?;
    let r = record(rec, dec)?;
    let bad = |_| "archived dependencies failed to deserialize";
    Ok(Deps {
        files: rkyv::deserialize::<_, rancor::Failure>(&m.files).map_err(bad)?,
        dirs: rkyv::deserialize::<_, rancor::Failure>(&m.dirs).map_err(bad)?,
        record: rkyv::deserialize::<_, rancor::Failure>(r).map_err(bad)?,
    })
}

/// The archived form of a dependency record.
pub type ArchivedRecord = rkyv::Archived<Vec<RecordDep>>;
