//! `Memo`: what Rust keeps about one memoized function: its cached plan (so
//! a key costs the arguments plus a guard check) and the small immutable
//! results already returned in this process, so a repeated call is answered
//! without the store, without unpickling and, under the frame hook, without
//! leaving Rust.
//!
//! Only results that are indistinguishable from a fresh unpickled copy are
//! kept (None, bool, int, float, complex, str, bytes and tuples/frozensets of
//! those, bounded in size), and only for entries with nothing to re-validate
//! on a hit: no data files read, no output to replay. Everything else goes
//! through the store on every hit.
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::AHashMap;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyCode, PyComplex, PyDict, PyEllipsis, PyFloat, PyFrozenSet, PyFunction,
    PyInt, PyString, PyTuple,
};
use pyo3::{PyTraverseError, PyVisit};

use super::code::{parameter_count, plain_parameters, varnames};
use super::digest::Digest;
use super::gil::GilCell;
use super::guard::function_parts;
use super::hash::Dep;
use super::plan::{self, Cached, View};
use super::to_py;
use crate::hook::code_parts;
use crate::py::errors::UnhashableError;

/// Results kept per function; beyond this the table starts over.
const MAX_RESULTS: usize = 4096;
/// Largest result kept (bytes of str/bytes content plus 16 per item).
const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Keys remembered with the modules they keyed as not loaded (for the key
/// after a call that imports them), most recent first.
const MAX_VIEWS: usize = 64;

thread_local! {
    /// `with bytecache.disabled():` depth on this thread.
    static DISABLED: Cell<u32> = const { Cell::new(0) };
}

/// Bumped by `bytecache.clear()`: every table of kept results starts over.
static CLEARED: AtomicU64 = AtomicU64::new(0);
/// Hits answered from kept results in this process, and the nanoseconds of
/// computing they saved.
static FAST: GilCell<Counts> = GilCell::new(Counts {
    hits: 0,
    saved_ns: 0,
});

/// Function address -> its memo, for the frame hook (`Memo.register`).
static REGISTRY: PyOnceLock<GilCell<AHashMap<usize, Py<Memo>>>> = PyOnceLock::new();

#[derive(Clone, Copy, Default)]
struct Counts {
    hits: u64,
    saved_ns: u64,
}

#[derive(Default)]
struct Results {
    epoch: u64,
    /// Values are `shareable`: dropping one never runs Python code.
    map: AHashMap<Digest, (Py<PyAny>, u64)>,
    counts: Counts,
}

#[pyclass(module = "bytecache._bytecache", frozen)]
pub struct Memo {
    func: Py<PyAny>,
    ignore: Vec<String>,
    /// Parameter names in frame order (`*args`, `**kwargs` last).
    names: Vec<Py<PyString>>,
    /// Positional-or-keyword parameters only: `quick` can bind a call.
    simple: bool,
    cached: GilCell<Option<Rc<Cached>>>,
    results: GilCell<Results>,
    /// Recent keys that keyed modules as not loaded, with those modules.
    views: GilCell<Vec<(Digest, View)>>,
}

fn digest_of(key: &[u8]) -> Option<Digest> {
    Some(Digest::from_le_bytes(key.try_into().ok()?))
}

/// True for values a fresh unpickled copy could not be told apart from
/// (immutable, no identity-bearing parts), within `budget` bytes.
fn shareable(v: &Bound<'_, PyAny>, budget: &mut usize) -> bool {
    let cost = if v.is_none()
        || v.is_exact_instance_of::<PyBool>()
        || v.is_exact_instance_of::<PyInt>()
        || v.is_exact_instance_of::<PyFloat>()
        || v.is_exact_instance_of::<PyComplex>()
        || v.is_exact_instance_of::<PyEllipsis>()
        || v.is_exact_instance_of::<PyTuple>()
        || v.is_exact_instance_of::<PyFrozenSet>()
    {
        16
    } else if let Ok(s) = v.cast_exact::<PyString>() {
        16 + s.len().unwrap_or(usize::MAX / 2)
    } else if let Ok(b) = v.cast_exact::<PyBytes>() {
        16 + b.as_bytes().len()
    } else {
        return false;
    };
    if cost > *budget {
        return false;
    }
    *budget -= cost;
    if let Ok(t) = v.cast_exact::<PyTuple>() {
        return t.iter().all(|item| shareable(&item, budget));
    }
    if let Ok(s) = v.cast_exact::<PyFrozenSet>() {
        return s.iter().all(|item| shareable(&item, budget));
    }
    true
}

impl Memo {
    /// The cached plan while its guards hold, else a new one (with the
    /// dependency record when asked; a record or a view always means a new
    /// walk, and a plan built in a view is not kept).
    fn plan(
        &self,
        py: Python<'_>,
        record: bool,
        view: Option<View>,
    ) -> PyResult<(Rc<Cached>, Option<Vec<Dep>>)> {
        if !record && view.is_none() {
            // SAFETY: cloning an `Rc` runs no Python code.
            let cached = unsafe { self.cached.with(py, |c| c.clone()) };
            if let Some(c) = cached {
                if c.guards.hold(py) {
                    return Ok((c, None));
                }
            }
        }
        let in_view = view.is_some();
        let (c, deps) = plan::build(self.func.bind(py), record, view)?;
        let c = Rc::new(c);
        if in_view {
            return Ok((c, deps));
        }
        let keep = c.reusable.then(|| c.clone());
        // SAFETY: a swap runs no Python code; the old plan is dropped after.
        let old = unsafe { self.cached.with(py, |slot| std::mem::replace(slot, keep)) };
        drop(old);
        Ok((c, deps))
    }

    /// The key of a call. With `before` (the key computed before the call
    /// that has just run), the modules not loaded then are keyed as not
    /// loaded now: a module the call imported is not a mutation of what it
    /// read.
    fn compute<'py>(
        &self,
        py: Python<'py>,
        arguments: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        record: bool,
        before: Option<Digest>,
    ) -> PyResult<(Digest, Option<Vec<Dep>>)> {
        // SAFETY: reads Rust data and clones an `Rc`.
        let view = before.and_then(|b| unsafe {
            self.views.with(py, |v| {
                v.iter().find(|(d, _)| *d == b).map(|(_, v)| v.clone())
            })
        });
        let (c, deps) = self.plan(py, record, view.clone())?;
        let plan = match &c.plan {
            Ok(p) => p,
            Err(msg) => return Err(UnhashableError::new_err(msg.clone())),
        };
        let keyed =
            plan::key(py, plan, arguments, &self.ignore, deps, view.as_ref()).map_err(to_py)?;
        if view.is_none() && !keyed.unloaded.is_empty() {
            let names: View = Rc::new(keyed.unloaded.into_iter().collect());
            // SAFETY: Rust data only; the dropped entry holds no Python object.
            unsafe {
                self.views.with(py, |v| {
                    v.retain(|(d, _)| *d != keyed.digest);
                    v.truncate(MAX_VIEWS - 1);
                    v.insert(0, (keyed.digest, names));
                });
            }
        }
        Ok((keyed.digest, keyed.record))
    }

    /// The kept result for `key`, counting the hit.
    fn recall_digest(&self, py: Python<'_>, key: Digest) -> Option<Py<PyAny>> {
        let epoch = CLEARED.load(Ordering::Acquire);
        // SAFETY: the closures only touch Rust data and incref a value;
        // clearing drops shareable values only, whose deallocation runs no
        // Python code.
        unsafe {
            let (value, saved_ns) = self.results.with(py, |r| {
                if r.epoch != epoch {
                    r.map.clear();
                    r.epoch = epoch;
                    return None;
                }
                let (value, saved_ns) = r.map.get(&key)?;
                r.counts.hits += 1;
                r.counts.saved_ns += saved_ns;
                Some((value.clone_ref(py), *saved_ns))
            })?;
            FAST.with(py, |c| {
                c.hits += 1;
                c.saved_ns += saved_ns;
            });
            Some(value)
        }
    }

    fn has_results(&self, py: Python<'_>) -> bool {
        // SAFETY: reads Rust data only.
        unsafe { self.results.with(py, |r| !r.map.is_empty()) }
    }
}

/// For Rust callers (benches): the same as `Memo(func)` / `memo.key(args)`.
impl Memo {
    pub fn for_function(func: &Bound<'_, PyAny>) -> PyResult<Self> {
        Self::new(func, Vec::new())
    }

    pub fn key_digest(&self, arguments: &Bound<'_, PyDict>) -> PyResult<Digest> {
        Ok(self
            .compute(arguments.py(), arguments.iter(), false, None)?
            .0)
    }
}

#[pymethods]
impl Memo {
    #[new]
    #[pyo3(signature = (func, ignore = Vec::new()))]
    fn new(func: &Bound<'_, PyAny>, ignore: Vec<String>) -> PyResult<Self> {
        let mut simple = false;
        let names = match func.cast::<PyFunction>() {
            Ok(f) => {
                let code = function_parts(f).code.cast_into::<PyCode>()?;
                let parts = code_parts(&code);
                simple = plain_parameters(&parts);
                varnames(&parts)
                    .take(parameter_count(&parts))
                    .map(|v| Ok(v.cast_into::<PyString>()?.unbind()))
                    .collect::<PyResult<_>>()?
            }
            Err(_) => Vec::new(),
        };
        Ok(Memo {
            func: func.clone().unbind(),
            ignore,
            names,
            simple,
            cached: GilCell::new(None),
            results: GilCell::new(Results {
                epoch: CLEARED.load(Ordering::Acquire),
                ..Results::default()
            }),
            views: GilCell::new(Vec::new()),
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
        let (digest, deps) = self.compute(py, arguments.iter(), record, before)?;
        super::key_result(py, digest, deps)
    }

    /// `(value,)` when the result of calling the function with `args` and
    /// `kwargs` is kept in this process; the call's key (bytes) when it was
    /// computed but nothing is kept, for the full path to reuse; None: take
    /// the full path (also for keyword arguments, `*args`/`**kwargs`/
    /// keyword-only signatures, inside `bytecache.disabled()` and when
    /// anything fails).
    #[pyo3(signature = (args, kwargs = None))]
    fn quick<'py>(
        &self,
        py: Python<'py>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        if !self.simple || kwargs.is_some_and(|k| !k.is_empty()) || is_disabled() {
            return Ok(None);
        }
        if !self.has_results(py) {
            return Ok(None);
        }
        let Ok(func) = self.func.bind(py).cast::<PyFunction>() else {
            return Ok(None);
        };
        let defaults = function_parts(func).defaults;
        let defaults = defaults.cast::<PyTuple>().ok();
        let (n, total) = (args.len(), self.names.len());
        let nd = defaults.map_or(0, |d| d.len());
        if n > total || n + nd < total {
            return Ok(None); // a TypeError: the function itself reports it
        }
        let mut arguments = Vec::with_capacity(total);
        for (i, name) in self.names.iter().enumerate() {
            let value = match defaults {
                _ if i < n => args.get_item(i)?,
                Some(d) => d.get_item(i + nd - total)?,
                None => return Ok(None),
            };
            arguments.push((name.bind(py).clone().into_any(), value));
        }
        match self.compute(py, arguments.into_iter(), false, None) {
            Ok((key, _)) => match self.recall_digest(py, key) {
                Some(v) => Ok(Some(PyTuple::new(py, [v])?.into_any())),
                None => Ok(Some(PyBytes::new(py, &key.to_le_bytes()).into_any())),
            },
            Err(_) => Ok(None), // the full path reports it
        }
    }

    /// `(value,)` when a result for `key` is kept in this process, else None.
    fn recall<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match digest_of(key).and_then(|d| self.recall_digest(py, d)) {
            Some(v) => Ok(Some(PyTuple::new(py, [v])?)),
            None => Ok(None),
        }
    }

    /// Keeps `value` for `key` when it is shareable (see the module docs);
    /// `seconds` is what computing it took. Returns whether it was kept.
    fn remember(&self, key: &[u8], value: &Bound<'_, PyAny>, seconds: f64) -> bool {
        let Some(d) = digest_of(key) else {
            return false;
        };
        let mut budget = MAX_RESULT_BYTES;
        if !shareable(value, &mut budget) {
            return false;
        }
        let py = value.py();
        let epoch = CLEARED.load(Ordering::Acquire);
        let ns = (seconds.max(0.0) * 1e9) as u64;
        let value = value.clone().unbind();
        // SAFETY: Rust data only; what is dropped is shareable (see Results).
        unsafe {
            self.results.with(py, |r| {
                if r.epoch != epoch || r.map.len() >= MAX_RESULTS {
                    r.map.clear();
                    r.epoch = epoch;
                }
                r.map.insert(d, (value, ns));
            });
        }
        true
    }

    /// Drops the results kept for this function.
    fn forget(&self, py: Python<'_>) {
        // SAFETY: as in `remember`.
        unsafe { self.results.with(py, |r| r.map.clear()) };
    }

    /// Lets the frame hook answer calls of this function from kept results.
    fn register(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let registry = REGISTRY.get_or_init(py, || GilCell::new(AHashMap::new()));
        let func = slf.get().func.as_ptr() as usize;
        let memo = slf.clone().unbind();
        // SAFETY: a replaced memo is returned and dropped after.
        let old = unsafe { registry.with(py, |r| r.insert(func, memo)) };
        drop(old);
    }

    /// The parameter names, in frame order.
    #[getter]
    fn names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.names.iter().map(|n| n.bind(py)))
    }

    /// Hits answered from kept results, and the compute time they saved.
    #[getter]
    fn fast_hits(&self, py: Python<'_>) -> (u64, f64) {
        // SAFETY: reads Rust data only.
        let c = unsafe { self.results.with(py, |r| r.counts) };
        (c.hits, c.saved_ns as f64 / 1e9)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.func)?;
        // SAFETY: called by the garbage collector (see `GilCell::peek`).
        let (cached, results) = unsafe { (self.cached.peek(), self.results.peek()) };
        for r in cached.iter().flat_map(|c| c.references()) {
            visit.call(r)?;
        }
        for (v, _) in results.map.values() {
            visit.call(v)?;
        }
        Ok(())
    }
}

/// Forgets every memo registered with the frame hook.
#[pyfunction]
fn unregister_all(py: Python<'_>) {
    if let Some(registry) = REGISTRY.get(py) {
        // SAFETY: the memos are taken out and dropped after.
        let old = unsafe { registry.with(py, std::mem::take) };
        drop(old);
    }
}

/// Every kept result of every function starts over (`bytecache.clear()`).
#[pyfunction]
fn forget_all() {
    CLEARED.fetch_add(1, Ordering::AcqRel);
}

/// Hits answered from kept results in this process, and the time saved.
#[pyfunction]
fn fast_totals(py: Python<'_>) -> (u64, f64) {
    // SAFETY: reads Rust data only.
    let c = unsafe { FAST.with(py, |c| *c) };
    (c.hits, c.saved_ns as f64 / 1e9)
}

/// Enters (`True`) or leaves (`False`) a `bytecache.disabled()` block on
/// this thread.
#[pyfunction]
fn set_disabled(on: bool) {
    DISABLED.with(|d| {
        d.set(if on {
            d.get() + 1
        } else {
            d.get().saturating_sub(1)
        })
    });
}

/// True inside a `bytecache.disabled()` block on this thread.
#[pyfunction]
pub fn is_disabled() -> bool {
    DISABLED.with(|d| d.get() > 0)
}

/// The frame hook's fast path: the kept result of a call of `func` with the
/// frame's bound arguments `args`, if any. Any failure means "not here"
/// (the Python path then handles the call and reports problems).
///
/// # Safety
/// GIL held; `func` and every pointer in `args` are live (borrowed).
pub unsafe fn recall_call(
    py: Python<'_>,
    func: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> Option<*mut ffi::PyObject> {
    if is_disabled() {
        return None;
    }
    let registry = REGISTRY.get(py)?;
    // SAFETY: an incref only. (A `Bound`, not a `Py`: dropping it decrefs at
    // once; pyo3 defers a `Py` drop here, outside any pyo3 entry point.)
    let memo =
        unsafe { registry.with(py, |r| r.get(&(func as usize)).map(|m| m.bind(py).clone())) }?;
    let memo = memo.get();
    if memo.names.len() != args.len() || !memo.has_results(py) {
        return None;
    }
    let arguments = memo.names.iter().zip(args).map(|(n, &v)| {
        // SAFETY: `v` is a live borrowed object (caller).
        let v = unsafe { Bound::from_borrowed_ptr(py, v) };
        (n.bind(py).clone().into_any(), v)
    });
    match memo.compute(py, arguments, false, None) {
        Ok((key, _)) => memo.recall_digest(py, key).map(Py::into_ptr),
        Err(_) => None, // the Python path reports it
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Memo>()?;
    m.add_function(wrap_pyfunction!(unregister_all, m)?)?;
    m.add_function(wrap_pyfunction!(forget_all, m)?)?;
    m.add_function(wrap_pyfunction!(fast_totals, m)?)?;
    m.add_function(wrap_pyfunction!(set_disabled, m)?)?;
    m.add_function(wrap_pyfunction!(is_disabled, m)?)?;
    Ok(())
}
