//! `Memo`: what Rust keeps about one memoized function: its cached plan (so
//! a key costs the arguments plus a guard check) and the small immutable
//! results already returned in this process, so a repeated call is answered
//! without the store, without unpickling and, under `enable()`, without
//! leaving Rust (`recall_call`).
//!
//! Only results that are indistinguishable from a fresh unpickled copy are
//! kept (None, bool, int, float, complex, str, bytes and tuples/frozensets of
//! those, bounded in size), and only for entries with nothing to re-validate
//! on a hit: no data files read, no output to replay. Everything else goes
//! through the store on every hit.
//!
//! A memo never keeps its function alive: it holds it through a weak
//! reference (when the function has one) and its plan's guards do not hold
//! it either, so a function redefined in a notebook is collected with its
//! memo, its plan and the globals that plan read. The registry that
//! `recall_call` searches holds memos weakly too.
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use ahash::AHashMap;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyCode, PyComplex, PyDict, PyEllipsis, PyFloat, PyFrozenSet, PyFunction,
    PyInt, PyString, PyTuple, PyWeakrefReference,
};

use super::code::{parameter_count, varnames};
use super::contained;
use super::digest::{Digest, DigestMap};
use super::hash::{Dep, HashError, Kind};
use super::plan::{self, Cached, View};
use super::source::{Hint, Loaded};
use crate::cpython::code::code_parts;
use crate::cpython::function::function_code;
use crate::cpython::{weakref, GilCell};

/// Results kept per function; beyond this the table starts over.
const MAX_RESULTS: usize = 4096;
/// Largest result kept (bytes of str/bytes content plus 16 per item).
const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Keys remembered with the modules they keyed as not loaded (for the key
/// after a call that imports them), most recent first.
const MAX_VIEWS: usize = 64;
/// Calls in a row that ran and could not be stored before a function's
/// calls run unmemoized for a while (see [`Memo::skipping`]).
const REFUSALS_BEFORE_BACKOFF: u32 = 3;
/// The most calls run unmemoized between two tries.
const MAX_SKIP: u32 = 1024;

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

/// Function address -> its memo, for `recall_call` ([`register`]).
static REGISTRY: GilCell<Registry> = GilCell::new(Registry {
    memos: None,
    prune_at: 64,
});

struct Registry {
    memos: Option<AHashMap<usize, Weak<Memo>>>,
    /// Entries whose memo is gone are dropped when the table reaches this.
    prune_at: usize,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    hits: u64,
    saved_ns: u64,
}

#[derive(Default)]
struct Results {
    epoch: u64,
    /// Values are `shareable`: dropping one never runs Python code.
    map: DigestMap<(Py<PyAny>, u64)>,
    counts: Counts,
}

/// How a memo holds its function.
enum Held {
    /// A weak reference: the function is not kept alive by its memo.
    Weak(Py<PyWeakrefReference>),
    /// An object without weak references (not a Python function).
    Strong(Py<PyAny>),
}

pub struct Memo {
    func: Held,
    /// The function's address (valid while `func` can be upgraded).
    root: usize,
    ignore: Vec<String>,
    /// Parameter names in frame order (`*args`, `**kwargs` last).
    names: Vec<Py<PyString>>,
    cached: GilCell<Option<Rc<Cached>>>,
    results: GilCell<Results>,
    /// Recent keys that keyed modules as not loaded, with those modules.
    views: GilCell<Vec<(Digest, View)>>,
    /// The store its stored results are read from (see `source`).
    source: GilCell<Option<Hint>>,
    backoff: GilCell<Backoff>,
}

/// Calls in a row that could not be stored, and how many calls still run
/// unmemoized before the next try.
#[derive(Clone, Copy, Default)]
struct Backoff {
    refused: u32,
    skip: u32,
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
    /// The memo of `func`; `ignore` names arguments left out of keys.
    pub fn new(func: &Bound<'_, PyAny>, ignore: Vec<String>) -> PyResult<Self> {
        let names = match func.cast::<PyFunction>() {
            Ok(f) => {
                let code = function_code(f).cast_into::<PyCode>()?;
                let parts = code_parts(&code);
                varnames(&parts)
                    .take(parameter_count(&parts))
                    .map(|v| Ok(v.cast_into::<PyString>()?.unbind()))
                    .collect::<PyResult<_>>()?
            }
            Err(_) => Vec::new(),
        };
        let func_held = match PyWeakrefReference::new(func) {
            Ok(w) => Held::Weak(w.unbind()),
            Err(_) => Held::Strong(func.clone().unbind()),
        };
        Ok(Memo {
            func: func_held,
            root: func.as_ptr() as usize,
            ignore,
            names,
            cached: GilCell::new(None),
            results: GilCell::new(Results {
                epoch: CLEARED.load(Ordering::Acquire),
                ..Results::default()
            }),
            views: GilCell::new(Vec::new()),
            source: GilCell::new(None),
            backoff: GilCell::new(Backoff::default()),
        })
    }

    /// The function, unless it was collected.
    pub fn function<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        match &self.func {
            Held::Weak(w) => w.bind(py).upgrade(),
            Held::Strong(f) => Some(f.bind(py).clone()),
        }
    }

    /// Whether `func` is this memo's (live) function.
    fn is_for(&self, py: Python<'_>, func: *mut ffi::PyObject) -> bool {
        match &self.func {
            Held::Weak(w) => weakref::referent(w.bind(py)) == func,
            Held::Strong(f) => f.as_ptr() == func,
        }
    }

    fn gone() -> HashError {
        HashError::new(Kind::Internal(
            "the memoized function no longer exists".to_owned(),
        ))
    }

    /// The cached plan while its guards hold, else a new one, with the
    /// dependency record when asked (the cached plan's when it has one). A
    /// view always means a new walk, and a plan built in a view is not kept.
    fn plan(
        &self,
        func: &Bound<'_, PyAny>,
        record: bool,
        view: Option<View>,
    ) -> Result<(Rc<Cached>, Option<Vec<Dep>>), HashError> {
        let py = func.py();
        if view.is_none() {
            // SAFETY: cloning an `Rc` runs no Python code.
            let cached = unsafe { self.cached.with(py, |c| c.clone()) };
            if let Some(c) = cached {
                if (!record || c.record.is_some()) && c.guards.hold(func) {
                    let deps = if record { c.record.clone() } else { None };
                    return Ok((c, deps));
                }
            }
        }
        let in_view = view.is_some();
        let (c, deps) = plan::build(func, record, view)?;
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

    /// The key of a call with its bound `arguments` (name, value) in
    /// parameter order, defaults applied; with the dependency record when
    /// `record` (see `identity::call_key`). With `before` (the key computed
    /// before the call that has just run), the modules not loaded then are
    /// keyed as not loaded now: a module the call imported is not a
    /// mutation of what it read.
    pub fn key<'py>(
        &self,
        py: Python<'py>,
        arguments: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        record: bool,
        before: Option<Digest>,
    ) -> Result<(Digest, Option<Vec<Dep>>), HashError> {
        let func = self.function(py).ok_or_else(Self::gone)?;
        self.key_of(&func, arguments, record, before)
    }

    /// [`Memo::key`] for the memo's function `func`, held by the caller.
    pub fn key_of<'py>(
        &self,
        func: &Bound<'py, PyAny>,
        arguments: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        record: bool,
        before: Option<Digest>,
    ) -> Result<(Digest, Option<Vec<Dep>>), HashError> {
        let py = func.py();
        // SAFETY: reads Rust data and clones an `Rc`.
        let view = before.and_then(|b| unsafe {
            self.views.with(py, |v| {
                v.iter().find(|(d, _)| *d == b).map(|(_, v)| v.clone())
            })
        });
        let keyed = contained(|| {
            let (c, deps) = self.plan(func, record, view.clone())?;
            let plan = match &c.plan {
                Ok(p) => p,
                Err(u) => return Err(HashError::Unhashable(Box::new(u.clone()))),
            };
            plan::key(py, plan, arguments, &self.ignore, deps, view.as_ref())
        })?;
        if let Some(names) = keyed.unloaded.filter(|_| view.is_none()) {
            // SAFETY: Rust data only; the dropped entry holds no Python object.
            unsafe {
                self.views.with(py, |v| {
                    if v.first()
                        .is_some_and(|(d, n)| *d == keyed.digest && Rc::ptr_eq(n, &names))
                    {
                        return; // the same key again (a repeated call)
                    }
                    v.retain(|(d, _)| *d != keyed.digest);
                    v.truncate(MAX_VIEWS - 1);
                    v.insert(0, (keyed.digest, names));
                });
            }
        }
        Ok((keyed.digest, keyed.record))
    }

    /// The top-level packages of the libraries this function's fingerprint
    /// reaches, and whether its code names `argv` (`_deps.LIBRARY_STATE`).
    pub fn reach(&self, py: Python<'_>) -> Result<(Vec<String>, bool), HashError> {
        let func = self.function(py).ok_or_else(Self::gone)?;
        let (c, _) = self.plan(&func, false, None)?;
        Ok(match &c.plan {
            Ok(p) => (
                p.libraries.clone(),
                p.names_attr("argv") || p.names_attr("orig_argv"),
            ),
            Err(_) => (Vec::new(), false),
        })
    }

    /// For Rust callers (benches): the key of a call whose bound arguments
    /// are in `arguments`.
    pub fn key_digest(&self, arguments: &Bound<'_, PyDict>) -> Result<Digest, HashError> {
        Ok(self.key(arguments.py(), arguments.iter(), false, None)?.0)
    }

    /// The kept result for `key`, counting the hit.
    pub fn recall(&self, py: Python<'_>, key: Digest) -> Option<Py<PyAny>> {
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
                Some((value.clone_ref(py), *saved_ns))
            })?;
            self.count_hit(py, saved_ns);
            Some(value)
        }
    }

    /// True when this call runs without memoizing: the function's last
    /// calls could not be stored (see [`Memo::refused`]), so for a while its
    /// calls are neither keyed nor observed (running a call is always
    /// correct); after 2, 4, 8 ... (at most 1024) such calls one is tried
    /// again, and a result stored or reused ends it.
    pub fn skipping(&self, py: Python<'_>) -> bool {
        // SAFETY: Rust data only.
        unsafe {
            self.backoff.with(py, |b| {
                let skip = b.skip > 0;
                b.skip = b.skip.saturating_sub(1);
                skip
            })
        }
    }

    /// A call ran and its result was not stored.
    pub fn refused(&self, py: Python<'_>) {
        // SAFETY: Rust data only.
        unsafe {
            self.backoff.with(py, |b| {
                b.refused = b.refused.saturating_add(1);
                if b.refused >= REFUSALS_BEFORE_BACKOFF {
                    let doublings = (b.refused - REFUSALS_BEFORE_BACKOFF + 1).min(10);
                    b.skip = (1u32 << doublings).min(MAX_SKIP);
                }
            });
        }
    }

    /// A result of the function was stored or reused: its calls are
    /// memoized again.
    pub fn reused(&self, py: Python<'_>) {
        // SAFETY: Rust data only.
        unsafe { self.backoff.with(py, |b| *b = Backoff::default()) };
    }

    /// Calls in a row that could not be stored, and the calls that still
    /// run unmemoized before the next try.
    pub fn backoff(&self, py: Python<'_>) -> (u32, u32) {
        // SAFETY: Rust data only.
        let b = unsafe { self.backoff.with(py, |b| *b) };
        (b.refused, b.skip)
    }

    /// Counts a hit answered without Python, which saved `saved_ns`.
    fn count_hit(&self, py: Python<'_>, saved_ns: u64) {
        // SAFETY: Rust data only.
        self.reused(py);
        // SAFETY: Rust data only.
        unsafe {
            self.results.with(py, |r| {
                r.counts.hits += 1;
                r.counts.saved_ns += saved_ns;
            });
            FAST.with(py, |c| {
                c.hits += 1;
                c.saved_ns += saved_ns;
            });
        }
    }

    /// Reads this function's stored results from `hint`'s store from now on.
    pub fn set_source(&self, py: Python<'_>, hint: Hint) {
        // SAFETY: a swap runs no Python code; the old hint is dropped after.
        let old = unsafe { self.source.with(py, |s| s.replace(hint)) };
        drop(old);
    }

    /// The plain result stored for `key` in the hinted store (while the hint
    /// holds), counted as a hit and kept like a computed one.
    pub fn load(&self, py: Python<'_>, key: Digest) -> Loaded {
        // SAFETY: reads Rust data and clones an `Arc`.
        let source = unsafe {
            self.source
                .with(py, |s| s.as_ref().and_then(|h| h.source(py)))
        };
        let Some(source) = source else {
            return Loaded::Other;
        };
        let loaded = source.load(py, key);
        if let Loaded::Hit(value, seconds) = &loaded {
            self.count_hit(py, (seconds.max(0.0) * 1e9) as u64);
            self.remember(key, value.bind(py), *seconds);
        }
        loaded
    }

    /// The result kept for `key` in this process, else the plain one stored
    /// for it in the hinted store (see [`Memo::load`]); both are counted
    /// (a kept result's `Hit` carries no seconds).
    pub fn answer(&self, py: Python<'_>, key: Digest) -> Loaded {
        match self.recall(py, key) {
            Some(value) => Loaded::Hit(value, 0.0),
            None => self.load(py, key),
        }
    }

    /// Whether stored results can be read in Rust (see `set_source`).
    pub fn has_source(&self, py: Python<'_>) -> bool {
        // SAFETY: reads Rust data only.
        unsafe { self.source.with(py, |s| s.is_some()) }
    }

    pub fn has_results(&self, py: Python<'_>) -> bool {
        // SAFETY: reads Rust data only.
        unsafe { self.results.with(py, |r| !r.map.is_empty()) }
    }

    /// Keeps `value` for `key` when it is shareable (see the module docs);
    /// `seconds` is what computing it took. Returns whether it was kept.
    pub fn remember(&self, key: Digest, value: &Bound<'_, PyAny>, seconds: f64) -> bool {
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
                r.map.insert(key, (value, ns));
            });
        }
        true
    }

    /// Drops the results kept for this function.
    pub fn forget(&self, py: Python<'_>) {
        // SAFETY: as in `remember`.
        unsafe { self.results.with(py, |r| r.map.clear()) };
    }

    /// The parameter names, in frame order.
    pub fn names(&self) -> &[Py<PyString>] {
        &self.names
    }

    /// The parameter names its keys leave out.
    pub fn ignore(&self) -> &[String] {
        &self.ignore
    }

    /// Hits answered from kept results, and the compute time they saved.
    pub fn fast_hits(&self, py: Python<'_>) -> (u64, f64) {
        // SAFETY: reads Rust data only.
        let c = unsafe { self.results.with(py, |r| r.counts) };
        (c.hits, c.saved_ns as f64 / 1e9)
    }

    /// Calls `visit` with every reference held, for the garbage collector.
    ///
    /// # Safety
    /// Call only from a `__traverse__` (see `GilCell::peek`).
    pub unsafe fn traverse<E>(
        &self,
        mut visit: impl FnMut(&Py<PyAny>) -> Result<(), E>,
    ) -> Result<(), E> {
        match &self.func {
            Held::Weak(w) => visit(w.as_any())?,
            Held::Strong(f) => visit(f)?,
        }
        // SAFETY: forwarded to the caller.
        let (cached, results) = unsafe { (self.cached.peek(), self.results.peek()) };
        for r in cached.iter().flat_map(|c| c.references()) {
            visit(r)?;
        }
        for (v, _) in results.map.values() {
            visit(v)?;
        }
        Ok(())
    }
}

/// Lets `recall_call` answer calls of `memo`'s function from its kept
/// results (held weakly: the registry keeps neither memo nor function).
pub fn register(py: Python<'_>, memo: &Arc<Memo>) {
    let weak = Arc::downgrade(memo);
    // SAFETY: map operations; what is dropped is a `Weak` (no Python code).
    unsafe {
        REGISTRY.with(py, |r| {
            let memos = r.memos.get_or_insert_with(AHashMap::new);
            if memos.len() >= r.prune_at {
                memos.retain(|_, m| m.strong_count() > 0);
                r.prune_at = (memos.len() * 2).max(64);
            }
            memos.insert(memo.root, weak);
        })
    };
}

/// Forgets every registered memo.
pub fn unregister_all(py: Python<'_>) {
    // SAFETY: the `Weak`s are taken out and dropped after.
    let old = unsafe { REGISTRY.with(py, |r| r.memos.take()) };
    drop(old);
}

/// Every kept result of every function starts over (`bytecache.clear()`).
pub fn forget_all() {
    CLEARED.fetch_add(1, Ordering::AcqRel);
}

/// Hits answered from kept results in this process, and the time saved.
pub fn fast_totals(py: Python<'_>) -> (u64, f64) {
    // SAFETY: reads Rust data only.
    let c = unsafe { FAST.with(py, |c| *c) };
    (c.hits, c.saved_ns as f64 / 1e9)
}

/// `disabled()` blocks open on all threads: while none is, no call needs
/// to read its thread's depth (a thread-local read is a call in a shared
/// library, on every call).
static DISABLED_ANYWHERE: AtomicU64 = AtomicU64::new(0);

/// Enters (`true`) or leaves (`false`) a `bytecache.disabled()` block on
/// this thread.
pub fn set_disabled(on: bool) {
    DISABLED.with(|d| {
        let depth = d.get();
        if on {
            d.set(depth + 1);
            DISABLED_ANYWHERE.fetch_add(1, Ordering::AcqRel);
        } else if depth > 0 {
            d.set(depth - 1);
            DISABLED_ANYWHERE.fetch_sub(1, Ordering::AcqRel);
        }
    });
}

/// True inside a `bytecache.disabled()` block on this thread.
#[inline]
pub fn is_disabled() -> bool {
    DISABLED_ANYWHERE.load(Ordering::Acquire) > 0 && DISABLED.with(|d| d.get() > 0)
}

/// What the hook's fast path found for a call.
pub enum Recalled {
    /// The kept (or plain stored) result, a new reference.
    Hit(*mut ffi::PyObject),
    /// Run the function unmemoized (see [`Memo::skipping`]).
    Run,
    /// Ask the Python path (which also reports any failure).
    Ask,
    /// Reading the stored result was interrupted; the exception is set.
    Interrupted,
}

/// The hook's fast path for a call of `func` with its bound arguments
/// `args` (frame order).
///
/// # Safety
/// GIL held; `func` and every pointer in `args` are live (borrowed).
pub unsafe fn recall_call(
    py: Python<'_>,
    func: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> Recalled {
    // SAFETY: the caller's guarantees, forwarded (GIL held, `func` live).
    let Some(memo) = (unsafe { recall_memo(py, func) }) else {
        return Recalled::Ask;
    };
    if memo.skipping(py) {
        return Recalled::Run;
    }
    // SAFETY: the caller's guarantees, forwarded (GIL held, all live).
    unsafe { recall_with(py, &memo, func, args) }
}

/// The registered memo of `func` (see [`register`]).
///
/// # Safety
/// GIL held; `func` is live (borrowed).
unsafe fn recall_memo(py: Python<'_>, func: *mut ffi::PyObject) -> Option<Arc<Memo>> {
    if is_disabled() {
        return None;
    }
    // SAFETY: a map lookup and a `Weak` upgrade (no Python code).
    let memo =
        unsafe { REGISTRY.with(py, |r| r.memos.as_ref()?.get(&(func as usize))?.upgrade()) }?;
    // A registered address can be a new function in a dead one's place.
    memo.is_for(py, func).then_some(memo)
}

/// [`recall_call`] for `memo`, the registered memo of `func`.
///
/// # Safety
/// As [`recall_call`].
unsafe fn recall_with(
    py: Python<'_>,
    memo: &Memo,
    func: *mut ffi::PyObject,
    args: &[*mut ffi::PyObject],
) -> Recalled {
    if memo.names.len() != args.len() || !(memo.has_results(py) || memo.has_source(py)) {
        return Recalled::Ask;
    }
    // SAFETY: `func` is live (caller).
    let own = unsafe { Bound::from_borrowed_ptr(py, func) };
    let arguments = memo.names.iter().zip(args).map(|(n, &v)| {
        // SAFETY: `v` is a live borrowed object (caller).
        let v = unsafe { Bound::from_borrowed_ptr(py, v) };
        (n.bind(py).clone().into_any(), v)
    });
    let Ok((key, _)) = memo.key_of(&own, arguments, false, None) else {
        return Recalled::Ask; // the Python path reports it
    };
    match memo.answer(py, key) {
        Loaded::Hit(value, _) => Recalled::Hit(value.into_ptr()),
        Loaded::Interrupted => Recalled::Interrupted,
        Loaded::Absent | Loaded::Other => Recalled::Ask,
    }
}
