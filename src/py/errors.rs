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
