//! The `bytecache._bytecache` extension module: registration only.
use pyo3::prelude::*;

mod alias;
mod buffer;
pub mod errors;
mod hook;
mod identity;
mod observe;
mod sign;
mod store;

#[pymodule]
fn _bytecache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    identity::register(m)?;
    store::register(m)?;
    hook::register(m)?;
    observe::register(m)?;
    alias::register(m)?;
    sign::register(m)?;
    Ok(())
}
