//! Raw state of the interpreter-wide random generators, read in place so a
//! miss can tell whether it drew from them (and key on the state it started
//! from) for ~0.2 us instead of `getstate()`'s 10 us or numpy's 27 us.
//!
//! Layouts read (checked against `getstate()` by `_observe` before first
//! use; a mismatch disables this reader and the Python API is used):
//! - `_random.Random`: see `cpython::methods::random_state`;
//! - numpy's `bitgen_t` (public, `numpy/random/bitgen.h`), reached through a
//!   bit generator's `capsule` ("BitGenerator"); its `state` of an MT19937 is
//!   `mt19937_state { uint32_t key[624]; int pos; }`.
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCapsule;

/// Bytes of an MT19937 state: 624 words plus one int.
const STATE_BYTES: usize = 624 * 4 + 4;

/// `_random.Random` and `numpy.random.MT19937`, looked up once (numpy's
/// again if it was reloaded; a miss
/// reads both generators' states twice).
static RANDOM: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MT19937: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The raw state of a `_random.Random` instance.
pub fn random_state(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let py = obj.py();
    let base_type = RANDOM.get_or_try_init(py, || {
        py.import("_random")?.getattr("Random").map(Bound::unbind)
    })?;
    if !obj.is_instance(base_type.bind(py))? {
        return Err(PyTypeError::new_err("not a _random.Random instance"));
    }
    // SAFETY: GIL held (the `Bound`); `obj` is a live `_random.Random`
    // instance (checked just above).
    Ok(unsafe { crate::cpython::methods::random_state(obj.as_ptr()) })
}

#[repr(C)]
struct BitGen {
    state: *mut std::ffi::c_void,
}

/// The raw state of an MT19937 bit generator (through its capsule).
pub fn mt19937_state(bit_generator: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let py = bit_generator.py();
    let current = || py.import("numpy.random")?.getattr("MT19937");
    let known = MT19937.get_or_try_init(py, || current().map(Bound::unbind))?;
    // The class looked up first, else (numpy reloaded) the current one.
    if !bit_generator.is_exact_instance(known.bind(py))
        && !bit_generator.is_exact_instance(&current()?)
    {
        return Err(PyTypeError::new_err("not a numpy.random.MT19937"));
    }
    let capsule = bit_generator.getattr("capsule")?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let name = c"BitGenerator";
    // SAFETY: GIL held; the name matches the capsule's (checked by
    // `PyCapsule_GetPointer`, which returns NULL otherwise).
    let p = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), name.as_ptr()) };
    if p.is_null() {
        return Err(PyErr::fetch(bit_generator.py()));
    }
    // SAFETY: a "BitGenerator" capsule holds a `bitgen_t*` whose first
    // field is the state pointer; for an MT19937 that state is an
    // `mt19937_state` of `STATE_BYTES` (an exact MT19937: checked), alive
    // as long as the bit generator (held by the `Bound`).
    unsafe {
        let state = (*p.cast::<BitGen>()).state.cast::<u8>();
        if state.is_null() {
            return Ok(Vec::new());
        }
        Ok(std::slice::from_raw_parts(state, STATE_BYTES).to_vec())
    }
}
