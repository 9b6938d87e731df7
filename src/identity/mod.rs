//! Identity: content hashes of values and fingerprints of functions, the two
//! halves of a memoized call's key. Errors are data ([`HashError`]: a kind
//! plus a location); the Python bindings (`crate::py::identity`) map them to
//! exceptions once.
mod buffer;
mod bytecode;
mod code;
mod digest;
mod guard;
mod hash;
mod layout;
mod memo;
pub mod native;
mod plan;
mod source;
mod wrapper;

use pyo3::prelude::*;
use pyo3::types::PyDict;

pub use digest::Digest;
use digest::Hasher;
use hash::ctypes_function;
pub use hash::{forget_classifications, Dep, HashError, Unhashable};
use hash::{Kind, Walker};
pub use memo::{
    fast_totals, forget_all, is_disabled, recall_call, register, set_disabled, unregister_all,
    Memo, Recalled,
};
pub use source::{config_changed, Hint, Loaded, Source};
pub use wrapper::Wrapper;

/// Runs `f`, turning a Rust panic into an unhashable outcome: a bug of ours
/// must not reach the user's call as a `PanicException`.
fn contained<T>(f: impl FnOnce() -> Result<T, HashError>) -> Result<T, HashError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Err(HashError::new(Kind::Internal(message)))
    })
}

/// The content digest of a value; for a function, its fingerprint (code and
/// everything it can reach). [`HashError::Unhashable`] for what cannot be
/// hashed by content.
pub fn value_digest(obj: &Bound<'_, PyAny>) -> Result<Digest, HashError> {
    contained(|| {
        let mut h = Hasher::new();
        let mut w = Walker::new(obj.py())?;
        w.value(obj, &mut h)?;
        w.finish(&mut h)?;
        w.fold_units(&mut h)?;
        Ok(h.finish())
    })
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
    contained(|| {
        let (cached, deps) = plan::build(func, record, None)?;
        let plan = cached
            .plan
            .map_err(|u| HashError::Unhashable(Box::new(u)))?;
        let keyed = plan::key(func.py(), &plan, arguments.iter(), ignore, deps, None)?;
        Ok((keyed.digest, keyed.record))
    })
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

/// How a native callable (a C function, a library's ctypes function) is
/// keyed: `None` when by its own machine code, else why by its whole loaded
/// object; `Err` says why it is neither (not native, in no loaded object).
pub fn native_identity(func: &Bound<'_, PyAny>) -> PyResult<Result<Option<String>, &'static str>> {
    let entry = match ctypes_function(func)? {
        Some(native::CtypesFunction::Exported(e)) => e,
        Some(native::CtypesFunction::Other) => None,
        None => native::entry(func),
    };
    let Some(entry) = entry else {
        return Ok(Err("not a native callable"));
    };
    Ok(native::callee(entry.addr)
        .map(|id| id.whole_object)
        .ok_or("no loaded object holds its code"))
}
