//! Guards: the cheap checks that keep a cached fingerprint valid, so a call
//! does not walk its function's graph again.
//!
//! A fingerprint reads dictionaries (globals, builtins, module and class
//! dicts), function slots (`__code__`, defaults, closure cells, `__dict__`)
//! and class bases. A guard remembers what each read saw, holding a strong
//! reference so an address is never reused while we compare against it.
//!
//! Dictionaries are checked by their stamp (`cpython::dict::Stamp`: the
//! version tag on 3.11, a dict watcher's counter from 3.12), which moves with
//! every mutation. When it moved (a script's top-level loop assigns
//! unrelated globals all the time), the names actually read are looked up
//! again and compared by identity; only a different object invalidates.
//! Values are compared by identity only, which is sound because a plan
//! hashes every value that can change in place (lists, dicts, arrays,
//! instances) as a leaf, by content, on every call.
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::{AHashMap, AHashSet};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFunction, PyString, PyType};

use crate::cpython::dict::Stamp;
use crate::cpython::{function, types};

/// What a slot held: a strong reference, or `None` for NULL.
type Slot = Option<Py<PyAny>>;

fn slot(py: Python<'_>, p: *mut ffi::PyObject) -> Slot {
    // SAFETY: `p` is NULL or a live object the caller borrowed (GIL held).
    unsafe { Bound::from_borrowed_ptr_or_opt(py, p) }.map(Bound::unbind)
}

fn same(s: &Slot, p: *mut ffi::PyObject) -> bool {
    match s {
        Some(o) => o.as_ptr() == p,
        None => p.is_null(),
    }
}

struct DictGuard {
    dict: Py<PyDict>,
    /// `None`: the dict could not be watched (the plan is not reused).
    stamp: Option<Stamp>,
    /// The stamp when the entries were last known to hold.
    version: AtomicU64,
    /// Every key matters (class dicts, `globals()` users, `sys.modules`):
    /// any mutation invalidates.
    strict: bool,
    /// The names read and what each was bound to.
    entries: Vec<(Py<PyString>, Slot)>,
    /// The addresses of the (interned) names in `entries`.
    names: AHashSet<usize>,
}

impl DictGuard {
    fn holds(&self, py: Python<'_>) -> bool {
        let d = self.dict.bind(py);
        let Some(stamp) = &self.stamp else {
            return false;
        };
        let now = stamp.now(d);
        if now == self.version.load(Ordering::Relaxed) {
            return true;
        }
        if self.strict {
            return false;
        }
        for (name, seen) in &self.entries {
            // SAFETY: GIL held; both live; `PyDict_GetItem` returns a
            // borrowed reference (or NULL) and never raises for str keys.
            let p = unsafe { ffi::PyDict_GetItem(d.as_ptr(), name.as_ptr()) };
            if !same(seen, p) {
                return false;
            }
        }
        self.version.store(now, Ordering::Relaxed);
        true
    }
}

/// A function's mutable slots: `__code__`, `__defaults__`, `__kwdefaults__`,
/// `__dict__`, and the contents of its closure cells.
struct FunctionGuard {
    func: Py<PyAny>,
    slots: [Slot; 4],
    cells: Vec<Slot>,
}

impl FunctionGuard {
    fn new(f: &Bound<'_, PyAny>) -> Self {
        let py = f.py();
        let mut cells = Vec::new();
        // SAFETY: callers pass functions only (checked by `Builder::function`).
        let slots = unsafe {
            function::cell_contents(f.as_ptr(), |p| cells.push(slot(py, p)));
            function::slots(f.as_ptr())
        };
        FunctionGuard {
            func: f.clone().unbind(),
            slots: slots.map(|p| slot(py, p)),
            cells,
        }
    }

    fn holds(&self) -> bool {
        let mut i = 0;
        let mut same_cells = true;
        // SAFETY: `func` is a live function we hold (GIL held by caller).
        let (slots, n) = unsafe {
            let n = function::cell_contents(self.func.as_ptr(), |p| {
                same_cells &= self.cells.get(i).is_some_and(|s| same(s, p));
                i += 1;
            });
            (function::slots(self.func.as_ptr()), n)
        };
        same_cells && n == self.cells.len() && self.slots.iter().zip(slots).all(|(s, p)| same(s, p))
    }
}

/// A class's bases (its dict is a strict [`DictGuard`]).
struct TypeGuard {
    ty: Py<PyType>,
    bases: Slot,
}

impl TypeGuard {
    fn holds(&self, py: Python<'_>) -> bool {
        same(&self.bases, types::bases(self.ty.bind(py)))
    }
}

/// All guards of one cached fingerprint.
#[derive(Default)]
pub struct Guards {
    dicts: Vec<DictGuard>,
    functions: Vec<FunctionGuard>,
    types: Vec<TypeGuard>,
}

impl Guards {
    /// True while everything the fingerprint read is unchanged.
    pub fn hold(&self, py: Python<'_>) -> bool {
        self.functions.iter().all(FunctionGuard::holds)
            && self.types.iter().all(|t| t.holds(py))
            && self.dicts.iter().all(|d| d.holds(py))
    }

    /// Every reference held, for the garbage collector.
    pub fn references(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let dicts = self.dicts.iter().flat_map(|d| {
            std::iter::once(d.dict.as_any()).chain(
                d.entries
                    .iter()
                    .flat_map(|(n, s)| std::iter::once(n.as_any()).chain(s.iter())),
            )
        });
        let functions = self.functions.iter().flat_map(|f| {
            std::iter::once(&f.func)
                .chain(f.slots.iter().flatten())
                .chain(f.cells.iter().flatten())
        });
        let types = self
            .types
            .iter()
            .flat_map(|t| std::iter::once(t.ty.as_any()).chain(t.bases.iter()));
        dicts.chain(functions).chain(types)
    }
}

/// Collects guards while a plan is built.
#[derive(Default)]
pub struct Builder {
    dicts: AHashMap<usize, DictGuard>,
    functions: AHashMap<usize, FunctionGuard>,
    types: AHashMap<usize, TypeGuard>,
    /// Something was read that no guard can watch (the process environment):
    /// the plan must not be reused.
    pub uncacheable: bool,
}

impl Builder {
    fn dict(&mut self, d: &Bound<'_, PyDict>) -> &mut DictGuard {
        let uncacheable = &mut self.uncacheable;
        self.dicts.entry(d.as_ptr() as usize).or_insert_with(|| {
            let stamp = Stamp::watch(d);
            // Unwatchable (no watcher slot free): never reused.
            *uncacheable |= stamp.is_none();
            DictGuard {
                dict: d.clone().unbind(),
                version: AtomicU64::new(stamp.as_ref().map_or(0, |s| s.now(d))),
                stamp,
                strict: false,
                entries: Vec::new(),
                names: AHashSet::new(),
            }
        })
    }

    /// `d[name]` was read and found `found`; `name` is interned, so one
    /// object stands for each distinct name.
    pub fn read(
        &mut self,
        d: &Bound<'_, PyDict>,
        name: &Bound<'_, PyString>,
        found: Option<&Bound<'_, PyAny>>,
    ) {
        let g = self.dict(d);
        if !g.strict && g.names.insert(name.as_ptr() as usize) {
            g.entries
                .push((name.clone().unbind(), found.map(|v| v.clone().unbind())));
        }
    }

    /// All of `d` was read (its keys or every item).
    pub fn read_all(&mut self, d: &Bound<'_, PyDict>) {
        let g = self.dict(d);
        g.strict = true;
        g.entries.clear();
    }

    /// A function's slots were read.
    pub fn function(&mut self, f: &Bound<'_, PyAny>) {
        if f.is_instance_of::<PyFunction>() {
            self.functions
                .entry(f.as_ptr() as usize)
                .or_insert_with(|| FunctionGuard::new(f));
        } else {
            self.uncacheable = true;
        }
    }

    /// A class's bases and members were read.
    pub fn class(&mut self, t: &Bound<'_, PyType>) {
        let py = t.py();
        self.types
            .entry(t.as_ptr() as usize)
            .or_insert_with(|| TypeGuard {
                ty: t.clone().unbind(),
                bases: slot(py, types::bases(t)),
            });
        let dict = slot(py, types::dict(t));
        match dict.map(|d| d.into_bound(py).cast_into::<PyDict>()) {
            Some(Ok(d)) => self.read_all(&d),
            _ => self.uncacheable = true,
        }
    }

    pub fn finish(self) -> Guards {
        Guards {
            dicts: self.dicts.into_values().collect(),
            functions: self.functions.into_values().collect(),
            types: self.types.into_values().collect(),
        }
    }
}
