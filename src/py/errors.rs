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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BytecacheError", py.get_type::<BytecacheError>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("CorruptCacheError", py.get_type::<CorruptCacheError>())?;
    m.add("UnsafeCacheDirError", py.get_type::<UnsafeCacheDirError>())?;
    m.add("UnhashableError", py.get_type::<UnhashableError>())?;
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
