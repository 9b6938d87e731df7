//! The `bytecache._bytecache` extension module: registration only.
use pyo3::prelude::*;

pub mod errors;
pub mod hook;

#[pymodule]
fn _bytecache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    hook::register(m)?;
    Ok(())
}
