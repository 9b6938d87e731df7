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
    Instr,
    Argument,
    Key,
    Wrapper,
    Unloaded,
    Leaf,
}

pub struct Hasher(Xxh3);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Xxh3::new())
    }

    pub fn tag(&mut self, tag: Tag) {
        self.0.update(&[tag as u8]);
    }

    pub fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.0.update(&v.to_le_bytes());
    }

    /// Length-prefixed bytes, so that concatenations cannot collide.
    pub fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    pub fn digest(&mut self, d: Digest) {
        self.0.update(&d.to_le_bytes());
    }

    pub fn finish(&self) -> Digest {
        self.0.digest128()
    }
}
