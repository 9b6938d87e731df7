//! Python API of the aliasing check (`bytecache._bytecache.shared_object`).
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::alias::{self, Shared};

/// `(obj,)`: an object in `box[0]`'s graph that is also referenced from
/// outside it (see `src/alias.rs`); a str: a string of the result that shows
/// a memory address; `None`: neither; `False`: the result is too big to tell. `box` must be a one-element list holding the
/// caller's only reference to the result.
#[pyfunction]
fn shared_object<'py>(
    boxed: &Bound<'py, PyList>,
    opaque: &Bound<'py, PyTuple>,
    immutable: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = boxed.py();
    Ok(match alias::shared(boxed, opaque, immutable)? {
        Shared::None => py.None().into_bound(py),
        Shared::Object(o) => PyTuple::new(py, [o])?.into_any(),
        Shared::Address(text) => pyo3::types::PyString::new(py, &text).into_any(),
        Shared::TooBig => pyo3::types::PyBool::new(py, false).to_owned().into_any(),
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shared_object, m)?)?;
    Ok(())
}
