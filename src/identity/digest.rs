//! A streaming 128-bit content hash (xxh3-128) with type tags.
//!
//! Everything persisted is keyed by these digests: they are stable across
//! processes, `PYTHONHASHSEED` values and machines of the same byte order.
use std::mem::MaybeUninit;

use xxhash_rust::xxh3::Xxh3;

pub type Digest = u128;

/// A map keyed by digests. They are already uniform hashes: their low 64
/// bits are the table's hash (hashing them again cost a tenth of a warm hit).
pub type DigestMap<V> = std::collections::HashMap<Digest, V, BuildDigestHasher>;

pub type BuildDigestHasher = std::hash::BuildHasherDefault<DigestHasher>;

/// The `Hasher` of [`DigestMap`]: a digest's low 64 bits as they are.
#[derive(Default)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }

    /// Not reached for `u128` keys; any other write still spreads its bytes.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
}

/// One byte written before every value so that values of different kinds
/// never collide (`1`, `1.0` and `True` differ; `(1,)` differs from `[1]`).
///
/// Persisted: every value is explicit and none may change or be reused
/// (tests/test_digests.py pins digests); a new kind takes a new number.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Tag {
    None = 1,
    Bool = 2,
    Int = 3,
    BigInt = 4,
    Float = 5,
    Complex = 6,
    Str = 7,
    Bytes = 8,
    ByteArray = 9,
    Tuple = 10,
    List = 11,
    Dict = 12,
    Set = 13,
    FrozenSet = 14,
    Range = 15,
    Slice = 16,
    Ellipsis = 17,
    Buffer = 18,
    Reduce = 19,
    ReduceStr = 20,
    Function = 21,
    Code = 22,
    Class = 23,
    Module = 24,
    Library = 25,
    Builtin = 26,
    BoundMethod = 27,
    Cell = 28,
    EmptyCell = 29,
    BackRef = 30,
    Global = 31,
    Missing = 32,
    Name = 33,
    Argument = 34,
    Key = 35,
    Wrapper = 36,
    Unloaded = 37,
    Leaf = 38,
    Nested = 39,
    // Identity II (libraries): a dict keyed by some of its items; a unit's
    // patches.
    DictItems = 40,
    Patched = 41,
    // Identity II (values): new kinds start at 64.
    Instance = 64,
    EmptySlot = 65,
    Array = 66,
    Frame = 67,
    Series = 68,
    SetInOrder = 69,
    FrozenSetInOrder = 70,
    FunctionDict = 71,
    Annotations = 72,
    Metaclass = 73,
}

/// Writes collected in memory and handed to a [`Hasher`] at once (many
/// small values, as in an object array of strings): the digest is the same
/// as if each had been written to the hasher.
#[derive(Default)]
pub struct Run(Vec<u8>);

impl Run {
    /// `h.tag(tag); h.str(s)`, collected; false (nothing collected) for a
    /// string long enough that `bytes` would hash it in chunks.
    pub fn tagged_str(&mut self, tag: Tag, s: &str) -> bool {
        if s.len() >= PARALLEL_MIN {
            return false;
        }
        self.0.push(tag as u8);
        self.0.extend_from_slice(&(s.len() as u64).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        true
    }

    /// Bytes collected.
    pub fn size(&self) -> usize {
        self.0.len()
    }
}

/// Small writes go to an inline buffer; the result of a short input is one
/// one-shot xxh3-128 call (no streaming state is even created), and long
/// inputs stream. Both give xxh3-128 of the concatenated writes.
///
/// `repr(C)` with the buffer last: otherwise the compiler may merge the
/// zeroing of `len` and `state` with the (uninitialized) buffer into one
/// `memset` of all of it.
#[repr(C)]
pub struct Hasher {
    len: usize,
    /// Streaming state, boxed: it is large, and most hashers never spill.
    state: Option<Box<Xxh3>>,
    /// The first `len` bytes are written; the rest is never read (not
    /// zeroed: a key is built on every call, often by several hashers).
    buf: [MaybeUninit<u8>; BUF],
}

const BUF: usize = 256;

/// Byte runs at least this long are hashed in fixed-size chunks on several
/// threads; the run contributes its length and the chunks' digests, so the
/// result does not depend on how many threads did the work.
const PARALLEL_MIN: usize = 16 << 20;
const CHUNK: usize = 4 << 20;

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            buf: [MaybeUninit::uninit(); BUF],
            len: 0,
            state: None,
        }
    }

    /// The bytes written to the buffer.
    #[inline(always)]
    fn filled(&self) -> &[u8] {
        let filled = &self.buf[..self.len];
        // SAFETY: `put` is the only writer of the buffer and grows `len`
        // only over the bytes it has just written (`spill` sets it to 0
        // before reusing the buffer), so these `len` bytes are initialized;
        // `MaybeUninit<u8>` has the layout of `u8`.
        unsafe { std::slice::from_raw_parts(filled.as_ptr().cast::<u8>(), filled.len()) }
    }

    /// Writes `b` at `at` in the buffer and makes `len` its end.
    #[inline(always)]
    fn put(&mut self, at: usize, b: &[u8]) {
        // Bounds checked (never past the buffer: callers check `BUF`).
        let dst = &mut self.buf[at..at + b.len()];
        // SAFETY: `dst` is `b.len()` bytes of our buffer and cannot overlap
        // `b`, a shared borrow alive while `self` is borrowed mutably.
        unsafe {
            std::ptr::copy_nonoverlapping(b.as_ptr(), dst.as_mut_ptr().cast::<u8>(), b.len());
        }
        self.len = at + b.len();
    }

    #[inline(always)]
    fn write(&mut self, b: &[u8]) {
        if self.len + b.len() <= BUF {
            self.put(self.len, b);
        } else {
            self.spill(b);
        }
    }

    #[cold]
    fn spill(&mut self, b: &[u8]) {
        let mut state = self.state.take().unwrap_or_else(|| Box::new(Xxh3::new()));
        state.update(self.filled());
        self.len = 0;
        let state = self.state.insert(state);
        if b.len() > BUF {
            state.update(b);
        } else {
            self.put(0, b);
        }
    }

    #[inline(always)]
    pub fn tag(&mut self, tag: Tag) {
        self.write(&[tag as u8]);
    }

    #[inline(always)]
    pub fn u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    #[inline(always)]
    pub fn u32(&mut self, v: u32) {
        self.write(&v.to_le_bytes());
    }

    #[inline(always)]
    pub fn u8(&mut self, v: u8) {
        self.write(&[v]);
    }

    #[inline(always)]
    pub fn i64(&mut self, v: i64) {
        self.write(&v.to_le_bytes());
    }

    /// Length-prefixed bytes, so that concatenations cannot collide.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        if b.len() >= PARALLEL_MIN {
            self.chunked(b);
        } else {
            self.write(b);
        }
    }

    /// A long run: the digests of its `CHUNK`-byte pieces, computed on up to
    /// as many threads as there are CPUs. A thread that cannot be started
    /// (or fails) leaves its pieces to this thread: never a panic.
    fn chunked(&mut self, b: &[u8]) {
        let pieces: Vec<&[u8]> = b.chunks(CHUNK).collect();
        let mut digests = vec![0u128; pieces.len()];
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let per = pieces.len().div_ceil(threads);
        let hash_all = |ps: &[&[u8]], ds: &mut [u128]| {
            for (p, d) in ps.iter().zip(ds.iter_mut()) {
                *d = xxhash_rust::xxh3::xxh3_128(p);
            }
        };
        std::thread::scope(|s| {
            let mut left = Vec::new();
            let mut running = Vec::new();
            for (ps, ds) in pieces.chunks(per).zip(digests.chunks_mut(per)) {
                let started = std::thread::Builder::new().spawn_scoped(s, move || {
                    let mut out = vec![0u128; ps.len()];
                    hash_all(ps, &mut out);
                    out
                });
                match started {
                    Ok(handle) => running.push((ps, ds, handle)),
                    Err(_) => left.push((ps, ds)),
                }
            }
            for (ps, ds) in left {
                hash_all(ps, ds);
            }
            for (ps, ds, handle) in running {
                match handle.join() {
                    Ok(out) => ds.copy_from_slice(&out),
                    Err(_) => hash_all(ps, ds),
                }
            }
        });
        self.u64(digests.len() as u64);
        digests.into_iter().for_each(|d| self.digest(d));
    }

    #[inline]
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    /// Writes what `run` collected and empties it.
    pub fn run(&mut self, run: &mut Run) {
        self.write(&run.0);
        run.0.clear();
    }

    #[inline(always)]
    pub fn digest(&mut self, d: Digest) {
        self.write(&d.to_le_bytes());
    }

    /// The digest of everything written so far. A spilled hasher's
    /// streaming state absorbs the buffer (no copy of it is made), so
    /// writing on and finishing again stays consistent. By reference:
    /// moving a hasher copies its buffer.
    pub fn finish(&mut self) -> Digest {
        let Some(mut state) = self.state.take() else {
            return xxhash_rust::xxh3::xxh3_128(self.filled());
        };
        state.update(self.filled());
        self.len = 0;
        self.state.insert(state).digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oneshot(parts: &[&[u8]]) -> Digest {
        xxhash_rust::xxh3::xxh3_128(&parts.concat())
    }

    #[test]
    fn short_and_spilled_writes_hash_their_concatenation() {
        let long = vec![7u8; 3 * BUF + 5];
        for parts in [
            &[&b"abc"[..], b"de"][..],
            &[b"x", &long, b"tail"],
            &[&long[..BUF], b"y"],
        ] {
            let mut h = Hasher::new();
            for p in parts {
                h.write(p);
            }
            assert_eq!(h.finish(), oneshot(parts));
        }
    }

    #[test]
    fn finishing_again_or_writing_on_stays_consistent() {
        let long = vec![1u8; 2 * BUF];
        let mut h = Hasher::new();
        h.write(&long);
        h.write(b"more");
        let first = h.finish();
        assert_eq!(h.finish(), first);
        h.write(b"after");
        assert_eq!(h.finish(), oneshot(&[&long, b"more", b"after"]));
    }
}
