//! Buffer-protocol glue (the binding's only `unsafe`): exporting mapped
//! memory to Python as memoryviews, and borrowing bytes-like arguments.
use std::ffi::c_int;
use std::sync::Arc;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyMemoryView;

use crate::storage::{EntryView, MmapMut};

/// Read-only export of an entry's payload; keeps the mapping alive.
#[pyclass(module = "bytecache._bytecache", frozen)]
pub struct Payload {
    view: Arc<EntryView>,
}

#[pymethods]
impl Payload {
    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let bytes = slf.get().view.payload();
        // SAFETY: `view` is valid (CPython contract). The memory belongs to a
        // mapping owned by `slf`, which PyBuffer_FillInfo stores (with a new
        // reference) in `view.obj`, so it outlives the export. Read-only.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                bytes.as_ptr() as *mut _,
                bytes.len() as ffi::Py_ssize_t,
                1,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::take(slf.py())
                .unwrap_or_else(|| PyBufferError::new_err("cannot export payload")))
        }
    }
}

/// Writable export of one buffer: a private copy-on-write mapping.
#[pyclass(module = "bytecache._bytecache")]
pub struct PrivateBuffer {
    map: MmapMut,
}

#[pymethods]
impl PrivateBuffer {
    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let (ptr, len) = {
            let mut me = slf.try_borrow_mut()?;
            (me.map.as_mut_ptr(), me.map.len())
        };
        // SAFETY: `view` is valid (CPython contract). The MAP_PRIVATE mapping
        // is owned by `slf`, never moves or shrinks, and `view.obj` keeps
        // `slf` alive for as long as the export exists. Writes only touch
        // private copy-on-write pages.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                ptr.cast(),
                len as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(PyErr::take(slf.py())
                .unwrap_or_else(|| PyBufferError::new_err("cannot export buffer")))
        }
    }
}

pub fn payload_view<'py>(
    py: Python<'py>,
    view: Arc<EntryView>,
) -> PyResult<Bound<'py, PyMemoryView>> {
    PyMemoryView::from(Bound::new(py, Payload { view })?.as_any())
}

pub fn private_view<'py>(py: Python<'py>, map: MmapMut) -> PyResult<Bound<'py, PyMemoryView>> {
    PyMemoryView::from(Bound::new(py, PrivateBuffer { map })?.as_any())
}

/// A contiguous bytes-like argument, held (and so kept alive) while borrowed.
pub struct Borrowed(PyUntypedBuffer);

impl Borrowed {
    pub fn new(obj: &Bound<'_, PyAny>) -> PyResult<Borrowed> {
        let b = PyUntypedBuffer::get(obj)?;
        if !b.is_c_contiguous() && !b.is_fortran_contiguous() {
            return Err(PyValueError::new_err("buffer must be contiguous"));
        }
        Ok(Borrowed(b))
    }

    pub fn bytes(&self) -> &[u8] {
        let len = self.0.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: the buffer is contiguous (checked in `new`), `len_bytes`
        // long, and stays exported while `self.0` lives. Another Python
        // thread mutating it meanwhile can only change the bytes we store
        // (the MAC is computed over what we read), not memory safety.
        unsafe { std::slice::from_raw_parts(self.0.buf_ptr().cast::<u8>(), len) }
    }
}
