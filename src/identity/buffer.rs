//! Reading an object's exported buffer (PEP 3118): numpy arrays, memoryviews,
//! `array.array` and any other buffer-protocol object are hashed by format,
//! shape and content in C order (never strides) without going through pickle.
use std::borrow::Cow;
use std::ffi::CStr;
use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;

/// A held `Py_buffer`, released on drop while attached to the interpreter
/// (`Python<'py>` makes it neither `Send` nor outliving the GIL scope).
pub struct Buffer<'py> {
    view: Box<ffi::Py_buffer>,
    py: Python<'py>,
}

impl<'py> Buffer<'py> {
    /// The buffer of `obj` (borrowed), or `None` when it exports none (the
    /// Python error is cleared).
    pub fn get(obj: &Bound<'py, PyAny>) -> Option<Self> {
        // SAFETY: `obj` is a valid borrowed reference and we hold the GIL.
        if unsafe { ffi::PyObject_CheckBuffer(obj.as_ptr()) } == 0 {
            return None;
        }
        let mut view: Box<MaybeUninit<ffi::Py_buffer>> = Box::new(MaybeUninit::zeroed());
        // SAFETY: `view` points to writable storage for one `Py_buffer`;
        // `obj` is borrowed and valid; the GIL is held.
        let rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_FULL_RO) };
        if rc != 0 {
            drop(PyErr::take(obj.py()));
            return None;
        }
        // SAFETY: `PyObject_GetBuffer` returned 0, so it initialised `view`.
        let view = unsafe { view.assume_init() };
        let view: Box<ffi::Py_buffer> = view;
        Some(Buffer { view, py: obj.py() })
    }

    pub fn format(&self) -> &[u8] {
        if self.view.format.is_null() {
            return b"B";
        }
        // SAFETY: a non-null `format` is a NUL-terminated string owned by the
        // exporter and valid until the buffer is released.
        unsafe { CStr::from_ptr(self.view.format) }.to_bytes()
    }

    pub fn itemsize(&self) -> i64 {
        self.view.itemsize as i64
    }

    fn dims(&self, ptr: *const ffi::Py_ssize_t) -> Vec<i64> {
        let n = usize::try_from(self.view.ndim).unwrap_or(0);
        if ptr.is_null() || n == 0 {
            return Vec::new();
        }
        // SAFETY: with PyBUF_FULL_RO, `shape` and `strides` are arrays of
        // `ndim` elements valid until the buffer is released.
        unsafe { std::slice::from_raw_parts(ptr, n) }
            .iter()
            .map(|&v| v as i64)
            .collect()
    }

    pub fn shape(&self) -> Vec<i64> {
        self.dims(self.view.shape)
    }

    /// The content in C order: borrowed when already C-contiguous, else copied.
    pub fn c_bytes(&self) -> PyResult<Cow<'_, [u8]>> {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        // SAFETY: `view` is a valid, held buffer.
        if unsafe { ffi::PyBuffer_IsContiguous(&*self.view, b'C' as _) } != 0 {
            // SAFETY: a C-contiguous buffer is `len` readable bytes at `buf`,
            // valid until the buffer is released (which borrows `self`).
            return Ok(Cow::Borrowed(unsafe {
                std::slice::from_raw_parts(self.view.buf as *const u8, len)
            }));
        }
        let mut out = vec![0u8; len];
        // SAFETY: `out` has room for `len` bytes, the size of the buffer.
        let rc = unsafe {
            ffi::PyBuffer_ToContiguous(
                out.as_mut_ptr().cast(),
                &*self.view,
                self.view.len,
                b'C' as _,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(self.py));
        }
        Ok(Cow::Owned(out))
    }
}

impl<'py> Buffer<'py> {
    /// The number of items, if this is a C-contiguous buffer of object
    /// pointers (format `O`, as numpy exports object arrays).
    pub fn object_count(&self) -> Option<usize> {
        let pointer = std::mem::size_of::<*mut ffi::PyObject>();
        // SAFETY: `view` is a valid, held buffer.
        let contiguous = unsafe { ffi::PyBuffer_IsContiguous(&*self.view, b'C' as _) } != 0;
        let len = usize::try_from(self.view.len).ok()?;
        (self.format() == b"O"
            && usize::try_from(self.view.itemsize).ok() == Some(pointer)
            && contiguous
            && (len == 0 || !self.view.buf.is_null()))
        .then_some(len / pointer)
    }

    /// Item `i` of a buffer [`Buffer::object_count`] accepts, as a new
    /// reference (a NULL slot reads as None, as numpy reads it).
    ///
    /// Each call reads the slot afresh: Python code run between calls may
    /// store other objects in the array, but cannot move or free its memory
    /// while this buffer is held.
    pub fn object(&self, i: usize) -> Option<Bound<'py, PyAny>> {
        if i >= self.object_count()? {
            return None;
        }
        // SAFETY: the buffer is C-contiguous with `i` within its pointer
        // items (checked above), so slot `i` is an aligned, readable
        // pointer; the exporter keeps the memory until release.
        let p = unsafe { self.view.buf.cast::<*mut ffi::PyObject>().add(i).read() };
        // SAFETY: a non-NULL slot is a live object the array holds a
        // reference to; it is increfed before any Python code can run.
        Some(
            unsafe { Bound::from_borrowed_ptr_or_opt(self.py, p) }
                .unwrap_or_else(|| self.py.None().into_bound(self.py)),
        )
    }
}

impl Drop for Buffer<'_> {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful `PyObject_GetBuffer` and
        // is released exactly once, with the GIL held (see the type's docs).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}
