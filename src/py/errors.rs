//! The Python exception tree, mapped once from Rust errors.
//!
//! ```text
//! BytecacheError
//! ├── StorageError            (store could not be read or written)
//! │   ├── CorruptCacheError   (checksum / MAC / format check failed)
//! │   └── UnsafeCacheDirError (directory or file writable by other users)
//! └── UnhashableError         (an argument or global cannot be hashed by content)
//! ```
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(_bytecache, BytecacheError, PyException);
create_exception!(_bytecache, StorageError, BytecacheError);
create_exception!(_bytecache, CorruptCacheError, StorageError);
create_exception!(_bytecache, UnsafeCacheDirError, StorageError);
create_exception!(_bytecache, UnhashableError, BytecacheError);

/// An `UnhashableError` carrying its data as attributes, for `explain` and
/// tools to read without parsing the message: `kind` (a name such as
/// `"open_file"` or `"raised"`), `detail` (the type, function or exception
/// involved) and `location` (`(step, name)` pairs, outermost first).
pub fn unhashable_error(
    py: Python<'_>,
    message: String,
    kind: &str,
    detail: &str,
    location: Vec<(&'static str, String)>,
) -> PyErr {
    let err = UnhashableError::new_err(message);
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr("kind", kind)?;
        value.setattr("detail", detail)?;
        value.setattr("location", pyo3::types::PyTuple::new(py, location)?)?;
        Ok(())
    };
    match set() {
        Ok(()) => err,
        Err(e) => e,
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BytecacheError", py.get_type::<BytecacheError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("CorruptCacheError", py.get_type::<CorruptCacheError>())?;
    m.add("UnsafeCacheDirError", py.get_type::<UnsafeCacheDirError>())?;
    let unhashable = py.get_type::<UnhashableError>();
    // Defaults for instances raised without data.
    unhashable.setattr("kind", "")?;
    unhashable.setattr("detail", "")?;
    unhashable.setattr("location", pyo3::types::PyTuple::empty(py))?;
    m.add("UnhashableError", unhashable)?;
    Ok(())
}

/// Runs `f`, turning a Rust panic into a `BytecacheError`: pyo3 would raise
/// `PanicException`, a `BaseException` that `except Exception` lets through.
pub fn no_panic<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(BytecacheError::new_err(format!(
            "internal error in bytecache: {what}"
        )))
    })
}
