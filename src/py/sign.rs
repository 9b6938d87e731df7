//! `bytecache._bytecache.Identity` and `verify_signature`: the Python face
//! of `crate::sign` (the remote tier's Ed25519 signatures).
use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::buffer::Borrowed;
use super::store::to_py;
use crate::sign::{self, Identity};

#[pyclass(name = "Identity", module = "bytecache._bytecache", frozen)]
pub struct PyIdentity {
    inner: Identity,
}

#[pymethods]
impl PyIdentity {
    /// This user's signing key, made on first use; never inside `cache_dir`.
    #[new]
    #[pyo3(signature = (cache_dir=None))]
    fn new(py: Python<'_>, cache_dir: Option<PathBuf>) -> PyResult<Self> {
        let inner = py
            .detach(|| Identity::load(cache_dir.as_deref()))
            .map_err(to_py)?;
        Ok(PyIdentity { inner })
    }

    /// The 32-byte Ed25519 public key.
    #[getter]
    fn public<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.public())
    }

    /// Where the signing key is (its directory also holds `trusted-keys`).
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.path().to_path_buf()
    }

    /// The 64-byte signature of `message`.
    fn sign<'py>(&self, py: Python<'py>, message: &[u8]) -> Bound<'py, PyBytes> {
        let sig = py.detach(|| self.inner.sign(message));
        PyBytes::new(py, &sig)
    }

    /// The text of the trusted-keys file (empty when there is none).
    fn trusted<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let text = py.detach(|| self.inner.trusted()).map_err(to_py)?;
        Ok(PyBytes::new(py, &text))
    }

    /// Replaces the text of the trusted-keys file at once.
    fn set_trusted(&self, py: Python<'_>, text: &[u8]) -> PyResult<()> {
        py.detach(|| self.inner.set_trusted(text)).map_err(to_py)
    }
}

/// Whether `signature` (64 bytes) is `public`'s (32 bytes) over `message`.
#[pyfunction]
fn verify_signature(
    py: Python<'_>,
    public: &[u8],
    message: &[u8],
    signature: &[u8],
) -> PyResult<bool> {
    let public: &[u8; 32] = public
        .try_into()
        .map_err(|_| PyValueError::new_err("a public key is 32 bytes"))?;
    let Ok(signature) = <&[u8; 64]>::try_from(signature) else {
        return Ok(false);
    };
    Ok(py.detach(|| sign::verify(public, message, signature)))
}

/// The digest binding a chunk (any buffer) to a signed manifest (32 bytes).
#[pyfunction]
fn content_digest<'py>(py: Python<'py>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let held = Borrowed::new(data)?;
    let d = py.detach(|| sign::content_digest(held.bytes()));
    Ok(PyBytes::new(py, &d))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIdentity>()?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(content_digest, m)?)?;
    Ok(())
}
