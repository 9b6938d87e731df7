//! The pending exception, taken and put back: one object from 3.12
//! (`PyErr_GetRaisedException`), a (type, value, traceback) triple before.

use pyo3::ffi::{self, PyObject};

/// An exception taken from the thread state; owns its references until
/// [`Pending::restore`] hands them back or [`Drop`] releases them.
pub struct Pending {
    #[cfg(not(Py_3_12))]
    triple: (*mut PyObject, *mut PyObject, *mut PyObject),
    #[cfg(Py_3_12)]
    value: *mut PyObject,
}

impl Pending {
    /// Takes the pending exception (normalized), leaving none set.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn take() -> Pending {
        #[cfg(not(Py_3_12))]
        {
            let (mut t, mut v, mut tb) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            // SAFETY: the GIL is held (caller); Fetch hands us new references
            // (or nulls), Normalize replaces them in place.
            unsafe {
                #[allow(deprecated)]
                ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
                if !t.is_null() {
                    ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
                }
            }
            Pending { triple: (t, v, tb) }
        }
        #[cfg(Py_3_12)]
        {
            // SAFETY: the GIL is held (caller); returns a new reference or null.
            let value = unsafe { ffi::PyErr_GetRaisedException() };
            Pending { value }
        }
    }

    /// The exception object (**borrowed** from self), or null if none was
    /// pending.
    pub fn value(&self) -> *mut PyObject {
        #[cfg(not(Py_3_12))]
        {
            self.triple.1
        }
        #[cfg(Py_3_12)]
        {
            self.value
        }
    }

    /// Makes it pending again (its references are handed back).
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn restore(self) {
        let this = std::mem::ManuallyDrop::new(self);
        #[cfg(not(Py_3_12))]
        {
            let (t, v, tb) = this.triple;
            // SAFETY: GIL held (caller); Restore steals the three references
            // Fetch gave us, which `this` no longer releases.
            #[allow(deprecated)]
            unsafe {
                ffi::PyErr_Restore(t, v, tb)
            };
        }
        #[cfg(Py_3_12)]
        {
            // SAFETY: GIL held (caller); steals the reference taken in `take`
            // (null leaves no exception set, as before `take`).
            unsafe { ffi::PyErr_SetRaisedException(this.value) };
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // SAFETY: a Pending only exists on a thread holding the GIL (it is
        // created by `take`, which requires it, and is neither Send nor
        // Sync because it holds raw pointers); these are our references.
        unsafe {
            #[cfg(not(Py_3_12))]
            {
                ffi::Py_XDECREF(self.triple.0);
                ffi::Py_XDECREF(self.triple.1);
                ffi::Py_XDECREF(self.triple.2);
            }
            #[cfg(Py_3_12)]
            ffi::Py_XDECREF(self.value);
        }
    }
}
