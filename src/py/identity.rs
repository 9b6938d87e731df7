//! The Python face of `crate::identity`: content hashes, call keys and the
//! `Memo` class. Identity errors are mapped to the exception tree here, once.
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::errors::unhashable_error;
use super::store::PyStore;
use crate::cpython::dict::{items_where, prefetch_object, prefetch_tables};
use crate::hook::bind::{bind_tuple, Named};
use crate::identity::{self, Dep, Digest, HashError, Hint};

/// The one mapping of identity's errors to Python: `UnhashableError` with
/// its kind, detail and location as attributes.
fn to_py(e: HashError) -> PyErr {
    match e {
        HashError::Unhashable(u) => Python::attach(|py| {
            unhashable_error(
                py,
                u.message(),
                u.kind.name(),
                u.kind.detail(),
                u.location().map(|s| s.pair()).collect(),
            )
        }),
        HashError::Python(e) => e,
    }
}

fn digest_bytes(py: Python<'_>, d: Digest) -> Bound<'_, PyBytes> {
    PyBytes::new(py, &d.to_le_bytes())
}

/// A 16-byte key (anything else matches nothing).
fn digest_of(key: &[u8]) -> Option<Digest> {
    Some(Digest::from_le_bytes(key.try_into().ok()?))
}

/// A key as Python sees it: 16 bytes, or `(key, record)` when recorded.
fn key_result(
    py: Python<'_>,
    digest: Digest,
    deps: Option<Vec<Dep>>,
) -> PyResult<Bound<'_, PyAny>> {
    let key = digest_bytes(py, digest);
    match deps {
        None => Ok(key.into_any()),
        Some(deps) => {
            let items = deps
                .into_iter()
                .map(|d| (d.kind, d.name, d.display, format!("{:032x}", d.digest)))
                .collect::<Vec<_>>();
            Ok((key, items).into_pyobject(py)?.into_any())
        }
    }
}

/// The 16-byte content hash of a value; for a function, its fingerprint
/// (code and everything it can reach).
#[pyfunction]
fn hash_value<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let d = identity::value_digest(obj).map_err(to_py)?;
    Ok(digest_bytes(obj.py(), d))
}

/// The key of a call: the function's fingerprint plus the content of every
/// bound argument (defaults applied by the caller), minus those named in
/// `ignore`. Raises `UnhashableError` naming the argument that cannot be
/// hashed; an argument is never dropped silently.
///
/// With `record=True` returns `(key, record)` where the record lists
/// `(kind, name, display, digest)` for every function, global and argument
/// the key covers: what `explain` compares to say why a call missed.
#[pyfunction]
#[pyo3(signature = (func, arguments, ignore, record=false))]
fn call_key<'py>(
    func: &Bound<'py, PyAny>,
    arguments: &Bound<'py, PyDict>,
    ignore: Vec<String>,
    record: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let (digest, deps) = identity::call_key(func, arguments, &ignore, record).map_err(to_py)?;
    key_result(func.py(), digest, deps)
}

/// The 16-byte content hash of a file (read in chunks, without the GIL).
#[pyfunction]
fn hash_file<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyBytes>> {
    let digest = py.detach(|| identity::file_digest(&path))?;
    Ok(digest_bytes(py, digest))
}

/// How a native callable (a C function, a library's ctypes function) is
/// keyed: `None` when by its own machine code, else why by its whole loaded
/// object. Raises `ValueError` for what is neither, or is in no loaded
/// object.
#[pyfunction]
fn native_identity(func: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    identity::native_identity(func)?.map_err(pyo3::exceptions::PyValueError::new_err)
}

/// One memoized function: its cached fingerprint plan and the small
/// immutable results kept in this process.
#[pyclass(name = "Memo", module = "bytecache._bytecache", frozen)]
pub struct PyMemo {
    inner: Arc<identity::Memo>,
}

impl PyMemo {
    /// The memo itself, for the decorator's wrapper.
    pub fn shared(&self) -> Arc<identity::Memo> {
        self.inner.clone()
    }

    /// The function, and a call of it (`args`, `kwargs`) bound as a frame
    /// would bind it (`hook::bind`); None when the function is gone or the
    /// call would raise.
    fn bound<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> Option<(Bound<'py, PyAny>, Named<'py>)> {
        let func = self.inner.function(py)?;
        let arguments = bind_tuple(&func, args, kwargs)?;
        Some((func, arguments))
    }
}

#[pymethods]
impl PyMemo {
    #[new]
    #[pyo3(signature = (func, ignore = Vec::new()))]
    fn new(func: &Bound<'_, PyAny>, ignore: Vec<String>) -> PyResult<Self> {
        Ok(PyMemo {
            inner: Arc::new(identity::Memo::new(func, ignore)?),
        })
    }

    /// The key of a call with bound `arguments` (defaults applied); with
    /// `record=True`, `(key, record)` (see `call_key`). `before`: the key
    /// computed before the call just made, after which this one is computed
    /// to see whether the call mutated what it read; the modules that were
    /// not loaded then are keyed as not loaded now (importing is not a
    /// mutation).
    #[pyo3(signature = (arguments, record = false, before = None))]
    fn key<'py>(
        &self,
        py: Python<'py>,
        arguments: &Bound<'py, PyDict>,
        record: bool,
        before: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let before = before.and_then(digest_of);
        let (digest, deps) = self
            .inner
            .key(py, arguments.iter(), record, before)
            .map_err(to_py)?;
        key_result(py, digest, deps)
    }

    /// `(value,)` when the result of calling the function with `args` and
    /// `kwargs` is kept in this process; the call's key (bytes) when it was
    /// computed but nothing is kept, for the full path to reuse; None: take
    /// the full path (inside `bytecache.disabled()`, for a call that would
    /// raise, and when anything fails).
    #[pyo3(signature = (args, kwargs = None))]
    fn quick<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if identity::is_disabled() {
            return Ok(None);
        }
        let Some((func, arguments)) = self.bound(py, args, kwargs) else {
            return Ok(None);
        };
        let Ok((key, _)) = self.inner.key_of(&func, arguments.into_iter(), false, None) else {
            return Ok(None);
        };
        Ok(Some(match self.inner.recall(py, key) {
            Some(v) => PyTuple::new(py, [v])?.into_any(),
            None => digest_bytes(py, key).into_any(),
        }))
    }

    /// The call's arguments by parameter name, in frame order (defaults
    /// applied; `*args` as a tuple, `**kwargs` as a dict), as the decorator
    /// and the hook key them; None when the call would raise (the function
    /// reports it) or the function is gone.
    #[pyo3(signature = (args, kwargs = None))]
    fn bind<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((_, arguments)) = self.bound(py, args, kwargs) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        for (name, value) in arguments {
            d.set_item(name, value)?;
        }
        Ok(Some(d))
    }

    /// `(value,)` when a result for `key` is kept in this process, else None.
    fn recall<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match digest_of(key).and_then(|d| self.inner.recall(py, d)) {
            Some(v) => Ok(Some(PyTuple::new(py, [v])?)),
            None => Ok(None),
        }
    }

    /// Keeps `value` for `key` when it is shareable (see `identity::Memo`);
    /// `seconds` is what computing it took. Returns whether it was kept.
    fn remember(&self, key: &[u8], value: &Bound<'_, PyAny>, seconds: f64) -> bool {
        digest_of(key).is_some_and(|d| self.inner.remember(d, value, seconds))
    }

    /// Drops the results kept for this function.
    fn forget(&self, py: Python<'_>) {
        self.inner.forget(py);
    }

    /// Reads this function's stored plain results from `store` (the local
    /// store `_core.begin` resolved, with the environment dict `environ` it
    /// resolved it from) without the Python call protocol, until the
    /// configuration or the environment changes.
    fn set_source(&self, py: Python<'_>, store: &Bound<'_, PyStore>, environ: &Bound<'_, PyDict>) {
        if let Some(hint) = Hint::new(store.get().source(), environ) {
            self.inner.set_source(py, hint);
        }
    }

    /// A call ran and its result was not stored: after a few in a row, the
    /// function's calls run unmemoized for a while (see `identity::Memo`).
    fn refused(&self, py: Python<'_>) {
        self.inner.refused(py);
    }

    /// A result of the function was stored or reused: its calls are
    /// memoized again.
    fn reused(&self, py: Python<'_>) {
        self.inner.reused(py);
    }

    /// `(calls in a row not stored, calls still run unmemoized before the
    /// next try)`.
    #[getter]
    fn backoff(&self, py: Python<'_>) -> (u32, u32) {
        self.inner.backoff(py)
    }

    /// Lets the hook answer calls of this function from kept results.
    fn register(&self, py: Python<'_>) {
        identity::register(py, &self.inner);
    }

    /// The function (held weakly), or None once it was collected.
    #[getter]
    fn func<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.inner.function(py)
    }

    /// The parameter names, in frame order.
    #[getter]
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.names().iter().map(|n| n.bind(py)))
    }

    /// The top-level packages of the libraries this function's fingerprint
    /// reaches, and whether its code names `argv` (`_deps.LIBRARY_STATE`).
    fn reach(&self, py: Python<'_>) -> PyResult<(Vec<String>, bool)> {
        self.inner.reach(py).map_err(to_py)
    }

    /// Hits answered from kept results, and the compute time they saved.
    #[getter]
    fn fast_hits(&self, py: Python<'_>) -> (u64, f64) {
        self.inner.fast_hits(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: called by the garbage collector.
        unsafe { self.inner.traverse(|r| visit.call(r)) }
    }
}

/// Forgets every memo registered with the hook.
#[pyfunction]
fn unregister_all(py: Python<'_>) {
    identity::unregister_all(py);
}

/// Every kept result of every function starts over (`bytecache.clear()`).
#[pyfunction]
fn forget_all() {
    identity::forget_all();
}

/// Hits answered from kept results in this process, and the time saved.
#[pyfunction]
fn fast_totals(py: Python<'_>) -> (u64, f64) {
    identity::fast_totals(py)
}

/// Enters (`True`) or leaves (`False`) a `bytecache.disabled()` block on
/// this thread.
#[pyfunction]
fn set_disabled(on: bool) {
    identity::set_disabled(on);
}

/// The configuration a cache directory's store is resolved from changed:
/// memos read stored results through Python again until `_core.begin`
/// names their store anew.
#[pyfunction]
fn config_changed() {
    identity::config_changed();
}

/// True inside a `bytecache.disabled()` block on this thread.
#[pyfunction]
fn is_disabled() -> bool {
    identity::is_disabled()
}

/// Forgets every module classification: `_modkind` marked modules as the
/// user's (or stopped).
#[pyfunction]
fn forget_classifications(py: Python<'_>) {
    identity::forget_classifications(py);
}

/// Module names, as `sys.modules` keys them.
type Names<'py> = Vec<Bound<'py, PyString>>;

/// The loaded modules (`sys.modules`) of the top-level packages that are
/// the keys of `homes` (top-level name -> its directory, ending in a
/// separator), in two lists: those that run from no file or from one inside
/// their package's directory, and the others (which `_modkind` classifies).
/// What `_modkind.unit_modules` loops over, in a first call's keying.
#[pyfunction]
fn modules_under(
    py: Python<'_>,
    homes: std::collections::HashMap<String, String>,
) -> PyResult<(Names<'_>, Names<'_>)> {
    let (mut inside, mut others) = (Vec::new(), Vec::new());
    let modules = PyModule::import(py, "sys")?.getattr("modules")?;
    fn top(name: &str) -> &str {
        name.split('.').next().unwrap_or(name)
    }
    // SAFETY: the selection reads a key's type and text and looks its top
    // level name up in a Rust map: no Python code runs.
    let unit = unsafe {
        items_where(modules.cast::<PyDict>()?, |name, _| {
            name.cast::<PyString>()
                .ok()
                .and_then(|n| n.to_str().ok())
                .is_some_and(|n| homes.contains_key(top(n)))
        })
    };
    let unit: Vec<_> = unit
        .into_iter()
        .filter_map(|(name, module)| Some((name, module.cast_into::<PyModule>().ok()?)))
        .collect();
    // Their dicts asked for at once (see `prefetch_tables`).
    for (_, module) in &unit {
        prefetch_object(module.as_any());
    }
    let dicts: Vec<_> = unit.iter().map(|(_, module)| module.dict()).collect();
    prefetch_tables(&dicts);
    for ((name, _), dict) in unit.into_iter().zip(dicts) {
        let name = name.cast_into::<PyString>()?;
        let home = &homes[top(name.to_str()?)];
        let file = dict.get_item(pyo3::intern!(py, "__file__"))?;
        let inside_home = match file.as_ref().and_then(|f| f.cast::<PyString>().ok()) {
            Some(f) => f.to_str()?.starts_with(home.as_str()),
            None => true,
        };
        let list = if inside_home {
            &mut inside
        } else {
            &mut others
        };
        list.push(name);
    }
    Ok((inside, others))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(modules_under, m)?)?;
    m.add_function(wrap_pyfunction!(forget_classifications, m)?)?;
    m.add_function(wrap_pyfunction!(hash_value, m)?)?;
    m.add_function(wrap_pyfunction!(call_key, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(native_identity, m)?)?;
    m.add_class::<PyMemo>()?;
    m.add_function(wrap_pyfunction!(unregister_all, m)?)?;
    m.add_function(wrap_pyfunction!(forget_all, m)?)?;
    m.add_function(wrap_pyfunction!(fast_totals, m)?)?;
    m.add_function(wrap_pyfunction!(set_disabled, m)?)?;
    m.add_function(wrap_pyfunction!(is_disabled, m)?)?;
    m.add_function(wrap_pyfunction!(config_changed, m)?)?;
    Ok(())
}
