//! Identity: content hashes of values and fingerprints of functions, the two
//! halves of a memoized call's key. Errors are data ([`HashError`]); the
//! Python bindings (`crate::py::identity`) map them to exceptions once.
mod buffer;
mod bytecode;
mod code;
mod digest;
mod guard;
mod hash;
mod memo;
mod native;
mod plan;

use pyo3::prelude::*;
use pyo3::types::PyDict;

pub use digest::Digest;
use digest::Hasher;
use hash::Walker;
pub use hash::{Dep, HashError};
pub use memo::{
    fast_totals, forget_all, is_disabled, recall_call, register, set_disabled, unregister_all,
    Memo, Quick,
};

/// The content digest of a value; for a function, its fingerprint (code and
/// everything it can reach). [`HashError::Unhashable`] for what cannot be
/// hashed by content.
pub fn value_digest(obj: &Bound<'_, PyAny>) -> Result<Digest, HashError> {
    let mut h = Hasher::new();
    let mut w = Walker::new(obj.py())?;
    w.value(obj, &mut h)?;
    w.finish(&mut h)?;
    Ok(h.finish())
}

/// The key digest of a call of `func` with its bound `arguments` (defaults
/// applied), minus those named in `ignore`, without any cached plan; see
/// [`call_key`]. `Memo::key` gives the same digest from a cached plan.
pub fn key_digest(
    func: &Bound<'_, PyAny>,
    arguments: &Bound<'_, PyDict>,
    ignore: &[String],
) -> Result<Digest, HashError> {
    Ok(call_key(func, arguments, ignore, false)?.0)
}

/// The key of a call: the function's fingerprint plus the content of every
/// bound argument (defaults applied by the caller), minus those named in
/// `ignore`; an argument is never dropped silently. With `record`, also the
/// [`Dep`] of every function, global and argument the key covers: what
/// `explain` compares to say why a call missed.
pub fn call_key(
    func: &Bound<'_, PyAny>,
    arguments: &Bound<'_, PyDict>,
    ignore: &[String],
    record: bool,
) -> Result<(Digest, Option<Vec<Dep>>), HashError> {
    let (cached, deps) = plan::build(func, record)?;
    let plan = cached.plan.map_err(HashError::Unhashable)?;
    plan::key(func.py(), &plan, arguments.iter(), ignore, deps)
}

/// The content hash of a file, read in chunks (call it without the GIL).
pub fn file_digest(path: &std::path::Path) -> std::io::Result<Digest> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.digest128());
        }
        h.update(&buf[..n]);
    }
}
