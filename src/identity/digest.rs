//! A streaming 128-bit content hash (xxh3-128) with type tags.
//!
//! Everything persisted is keyed by these digests: they are stable across
//! processes, `PYTHONHASHSEED` values and machines of the same byte order.
use xxhash_rust::xxh3::Xxh3;

pub type Digest = u128;

/// One byte written before every value so that values of different kinds
/// never collide (`1`, `1.0` and `True` differ; `(1,)` differs from `[1]`).
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Tag {
    None = 1,
    Bool,
    Int,
    BigInt,
    Float,
    Complex,
    Str,
    Bytes,
    ByteArray,
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
    Range,
    Slice,
    Ellipsis,
    Buffer,
    Reduce,
    ReduceStr,
    Function,
    Code,
    Class,
    Module,
    Library,
    Builtin,
    BoundMethod,
    Cell,
    EmptyCell,
    BackRef,
    Global,
    Missing,
    Name,
    Argument,
    Key,
    Wrapper,
    Unloaded,
    Leaf,
    Nested,
    DictItems,
    Patched,
}

/// Small writes go to an inline buffer; the result of a short input is one
/// one-shot xxh3-128 call (no streaming state is even created), and long
/// inputs stream. Both give xxh3-128 of the concatenated writes.
pub struct Hasher {
    buf: [u8; BUF],
    len: usize,
    /// Streaming state, boxed: it is large, and most hashers never spill.
    state: Option<Box<Xxh3>>,
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
            buf: [0; BUF],
            len: 0,
            state: None,
        }
    }

    #[inline(always)]
    fn write(&mut self, b: &[u8]) {
        if self.len + b.len() <= BUF {
            self.buf[self.len..self.len + b.len()].copy_from_slice(b);
            self.len += b.len();
        } else {
            self.spill(b);
        }
    }

    #[cold]
    fn spill(&mut self, b: &[u8]) {
        let state = self.state.get_or_insert_with(|| Box::new(Xxh3::new()));
        state.update(&self.buf[..self.len]);
        self.len = 0;
        if b.len() > BUF {
            state.update(b);
        } else {
            self.buf[..b.len()].copy_from_slice(b);
            self.len = b.len();
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
    /// as many threads as there are CPUs.
    fn chunked(&mut self, b: &[u8]) {
        let pieces: Vec<&[u8]> = b.chunks(CHUNK).collect();
        let mut digests = vec![0u128; pieces.len()];
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let per = pieces.len().div_ceil(threads);
        std::thread::scope(|s| {
            for (ps, ds) in pieces.chunks(per).zip(digests.chunks_mut(per)) {
                s.spawn(move || {
                    for (p, d) in ps.iter().zip(ds.iter_mut()) {
                        *d = xxhash_rust::xxh3::xxh3_128(p);
                    }
                });
            }
        });
        self.u64(digests.len() as u64);
        digests.into_iter().for_each(|d| self.digest(d));
    }

    #[inline]
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    #[inline(always)]
    pub fn digest(&mut self, d: Digest) {
        self.write(&d.to_le_bytes());
    }

    pub fn finish(&self) -> Digest {
        match &self.state {
            None => xxhash_rust::xxh3::xxh3_128(&self.buf[..self.len]),
            Some(state) => {
                let mut state = state.clone();
                state.update(&self.buf[..self.len]);
                state.digest128()
            }
        }
    }
}
