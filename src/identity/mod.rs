//! Identity: content hashes of values and fingerprints of functions, the two
//! halves of a memoized call's key.
mod buffer;
mod bytecode;
mod code;
mod digest;
mod extra;
mod gil;
mod guard;
mod hash;
mod memo;
pub mod native;
mod plan;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::py::errors::UnhashableError;
pub use digest::Digest;
use digest::Hasher;
use hash::{Dep, HashError, Walker};
pub use memo::{is_disabled, recall_call, Memo};

fn to_py(e: HashError) -> PyErr {
    match e {
        HashError::Unhashable(msg) => UnhashableError::new_err(msg),
        HashError::Python(e) => e,
    }
}

/// The content digest of a value; for a function, its fingerprint (code and
/// everything it can reach). Raises `UnhashableError` for what cannot be
/// hashed by content.
pub fn value_digest(obj: &Bound<'_, PyAny>) -> PyResult<Digest> {
    let mut h = Hasher::new();
    let mut w = Walker::new(obj.py())?;
    w.value(obj, &mut h).map_err(to_py)?;
    w.finish(&mut h).map_err(to_py)?;
    Ok(h.finish())
}

/// The key digest of a call of `func` with its bound `arguments` (defaults
/// applied), minus those named in `ignore`, without any cached plan; see
/// [`call_key`]. `Memo.key` gives the same digest from a cached plan.
pub fn key_digest(
    func: &Bound<'_, PyAny>,
    arguments: &Bound<'_, PyDict>,
    ignore: &[String],
) -> PyResult<Digest> {
    Ok(key_and_record(func, arguments, ignore, false)?.0)
}

fn key_and_record(
    func: &Bound<'_, PyAny>,
    arguments: &Bound<'_, PyDict>,
    ignore: &[String],
    record: bool,
) -> PyResult<(Digest, Option<Vec<Dep>>)> {
    let (cached, deps) = plan::build(func, record)?;
    let plan = cached.plan.map_err(UnhashableError::new_err)?;
    plan::key(func.py(), &plan, arguments.iter(), ignore, deps).map_err(to_py)
}

/// A key as Python sees it: 16 bytes, or `(key, record)` when recorded.
fn key_result(
    py: Python<'_>,
    digest: Digest,
    deps: Option<Vec<Dep>>,
) -> PyResult<Bound<'_, PyAny>> {
    let key = PyBytes::new(py, &digest.to_le_bytes());
    match deps {
        None => Ok(key.into_any()),
        Some(deps) => {
            let items = deps
                .into_iter()
                .map(|d| (d.kind, d.name, d.display, format!("{:032x}", d.digest)))
                .collect::<Vec<_>>();
            Ok((key, items).into_pyobject(py)?.into_any())
        }
    }
}

/// The 16-byte content hash of a value; for a function, its fingerprint
/// (code and everything it can reach).
#[pyfunction]
fn hash_value<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(obj.py(), &value_digest(obj)?.to_le_bytes()))
}

/// The key of a call: the function's fingerprint plus the content of every
/// bound argument (defaults applied by the caller), minus those named in
/// `ignore`. Raises `UnhashableError` naming the argument that cannot be
/// hashed; an argument is never dropped silently.
///
/// With `record=True` returns `(key, record)` where the record lists
/// `(kind, name, display, digest)` for every function, global and argument
/// the key covers: what `explain` compares to say why a call missed.
#[pyfunction]
#[pyo3(signature = (func, arguments, ignore, record=false))]
fn call_key<'py>(
    func: &Bound<'py, PyAny>,
    arguments: &Bound<'py, PyDict>,
    ignore: Vec<String>,
    record: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (digest, deps) = key_and_record(func, arguments, &ignore, record)?;
    key_result(func.py(), digest, deps)
}

/// The 16-byte content hash of a file (read in chunks, without the GIL).
#[pyfunction]
fn hash_file<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyBytes>> {
    let digest = py.detach(|| -> std::io::Result<u128> {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(h.digest128());
            }
            h.update(&buf[..n]);
        }
    })?;
    Ok(PyBytes::new(py, &digest.to_le_bytes()))
}

/// How a native callable (a C function, a library's ctypes function) is
/// keyed: `None` when by its own machine code, else why by its whole loaded
/// object. Raises `ValueError` for what is neither, or is in no loaded
/// object.
#[pyfunction]
fn native_identity(func: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let entry = match native::ctypes_function(func)? {
        Some(native::CtypesFunction::Exported(e)) => e,
        Some(native::CtypesFunction::Other) => None,
        None => native::entry(func),
    }
    .ok_or_else(|| pyo3::exceptions::PyValueError::new_err("not a native callable"))?;
    let id = native::callee(entry.addr).ok_or_else(|| {
        pyo3::exceptions::PyValueError::new_err("no loaded object holds its code")
    })?;
    Ok(id.whole_object)
}

/// Forgets every module classification: `_modkind` marked modules as the
/// user's (or stopped).
#[pyfunction]
fn forget_classifications(py: Python<'_>) {
    hash::forget_classifications(py);
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(forget_classifications, m)?)?;
    m.add_function(wrap_pyfunction!(hash_value, m)?)?;
    m.add_function(wrap_pyfunction!(call_key, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(native_identity, m)?)?;
    memo::register(m)
}
