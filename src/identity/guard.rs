//! Guards: the cheap checks that keep a cached fingerprint valid, so a call
//! does not walk its function's graph again.
//!
//! A fingerprint reads dictionaries (globals, builtins, module and class
//! dicts), function slots (`__code__`, defaults, closure cells, `__dict__`)
//! and class bases. A guard remembers what each read saw, holding a strong
//! reference so an address is never reused while we compare against it;
//! except the function the plan belongs to (its *root*), which a plan must
//! not keep alive (the plan lives as long as the root's memo, which holds
//! the root weakly): the root is only compared by address, and only while
//! the memo's caller holds the root.
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

/// What a slot held.
enum Slot {
    Null,
    /// The plan's root function (not held).
    Root,
    Held(Py<PyAny>),
}

impl Slot {
    /// What `p` (NULL or a live object the caller borrowed) holds, for a
    /// plan whose root function is at `root`.
    fn new(py: Python<'_>, p: *mut ffi::PyObject, root: usize) -> Self {
        if p as usize == root {
            return Slot::Root;
        }
        // SAFETY: `p` is NULL or a live borrowed object (caller; GIL held).
        match unsafe { Bound::from_borrowed_ptr_or_opt(py, p) } {
            Some(o) => Slot::Held(o.unbind()),
            None => Slot::Null,
        }
    }

    /// Whether `p` is what this slot held.
    fn same(&self, p: *mut ffi::PyObject, root: usize) -> bool {
        match self {
            Slot::Null => p.is_null(),
            Slot::Root => p as usize == root,
            Slot::Held(o) => o.as_ptr() == p,
        }
    }

    fn held(&self) -> Option<&Py<PyAny>> {
        match self {
            Slot::Held(o) => Some(o),
            _ => None,
        }
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
    /// True when the dict is as it was when its entries last held.
    fn unchanged(&self, py: Python<'_>) -> bool {
        self.stamp
            .as_ref()
            .is_some_and(|s| s.now(self.dict.bind(py)) == self.version.load(Ordering::Relaxed))
    }

    fn holds(&self, py: Python<'_>, root: usize) -> bool {
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
            if !seen.same(p, root) {
                return false;
            }
        }
        self.version.store(now, Ordering::Relaxed);
        true
    }
}

/// A function's mutable slots: `__code__`, `__defaults__`, `__kwdefaults__`,
/// `__dict__`, `__annotations__`, and the contents of its closure cells.
struct FunctionGuard {
    func: Slot,
    slots: [Slot; 5],
    cells: Vec<Slot>,
    /// The addresses `func` and `slots` stand for, compared on every call
    /// (a guard is checked with the root it was built with: see
    /// [`Guards::hold`]).
    addresses: [usize; 6],
}

impl FunctionGuard {
    fn new(f: &Bound<'_, PyAny>, root: usize) -> Self {
        let py = f.py();
        let mut cells = Vec::new();
        // SAFETY: callers pass functions only (checked by `Builder::function`).
        let slots = unsafe {
            function::cell_contents(f.as_ptr(), |p| cells.push(Slot::new(py, p, root)));
            function::slots(f.as_ptr())
        };
        let mut addresses = [f.as_ptr() as usize; 6];
        for (a, p) in addresses[1..].iter_mut().zip(slots) {
            *a = p as usize;
        }
        FunctionGuard {
            func: Slot::new(py, f.as_ptr(), root),
            slots: slots.map(|p| Slot::new(py, p, root)),
            cells,
            addresses,
        }
    }

    fn holds(&self, root: usize) -> bool {
        let func = self.addresses[0] as *mut ffi::PyObject;
        // SAFETY: `func` is a live function: one we hold, or the root, which
        // the caller of `Guards::hold` holds (GIL held).
        let slots = unsafe { function::slots(func) };
        if slots
            .iter()
            .zip(&self.addresses[1..])
            .any(|(&p, &a)| p as usize != a)
        {
            return false;
        }
        let mut i = 0;
        let mut same_cells = true;
        // SAFETY: as above.
        let n = unsafe {
            function::cell_contents(func, |p| {
                same_cells &= self.cells.get(i).is_some_and(|s| s.same(p, root));
                i += 1;
            })
        };
        same_cells && n == self.cells.len()
    }
}

/// A class's bases and metaclass (its dict is a strict [`DictGuard`]).
struct TypeGuard {
    ty: Py<PyType>,
    bases: Slot,
    /// `type(t)`: `__class__` can be assigned on a class.
    meta: Slot,
}

impl TypeGuard {
    fn holds(&self, py: Python<'_>, root: usize) -> bool {
        let t = self.ty.bind(py);
        self.bases.same(types::bases(t), root) && self.meta.same(t.get_type().as_ptr(), root)
    }
}

/// All guards of one cached fingerprint.
#[derive(Default)]
pub struct Guards {
    /// The address of the plan's root function.
    root: usize,
    dicts: Vec<DictGuard>,
    functions: Vec<FunctionGuard>,
    types: Vec<TypeGuard>,
}

impl Guards {
    /// True while everything the fingerprint read is unchanged. `root` is
    /// the plan's root function, held by the caller.
    pub fn hold(&self, root: &Bound<'_, PyAny>) -> bool {
        let py = root.py();
        if root.as_ptr() as usize != self.root {
            return false;
        }
        self.functions.iter().all(|f| f.holds(self.root))
            && self.types.iter().all(|t| t.holds(py, self.root))
            && self.dicts.iter().all(|d| d.holds(py, self.root))
    }

    /// [`Guards::hold`] for guards built without a root function
    /// (`Builder::default()`: a library unit's scan).
    pub fn hold_unrooted(&self, py: Python<'_>) -> bool {
        self.root == 0
            && self.functions.iter().all(|f| f.holds(0))
            && self.types.iter().all(|t| t.holds(py, 0))
            && self.dicts.iter().all(|d| d.holds(py, 0))
    }

    /// [`Guards::hold_unrooted`] without looking anything up: true only
    /// when no watched dict changed at all since the entries last held. It
    /// runs no Python code (no dict lookup, so no key's `__eq__`), so it may
    /// be asked inside a `GilCell`; false means "ask `hold_unrooted`".
    pub fn unchanged_unrooted(&self, py: Python<'_>) -> bool {
        self.root == 0
            && self.functions.iter().all(|f| f.holds(0))
            && self.types.iter().all(|t| t.holds(py, 0))
            && self.dicts.iter().all(|d| d.unchanged(py))
    }

    /// Every reference held, for the garbage collector.
    pub fn references(&self) -> impl Iterator<Item = &Py<PyAny>> {
        let dicts = self.dicts.iter().flat_map(|d| {
            std::iter::once(d.dict.as_any()).chain(
                d.entries
                    .iter()
                    .flat_map(|(n, s)| std::iter::once(n.as_any()).chain(s.held())),
            )
        });
        let functions = self.functions.iter().flat_map(|f| {
            f.func
                .held()
                .into_iter()
                .chain(f.slots.iter().filter_map(Slot::held))
                .chain(f.cells.iter().filter_map(Slot::held))
        });
        let types = self.types.iter().flat_map(|t| {
            std::iter::once(t.ty.as_any())
                .chain(t.bases.held())
                .chain(t.meta.held())
        });
        dicts.chain(functions).chain(types)
    }
}

/// Collects guards while a plan is built.
#[derive(Default)]
pub struct Builder {
    /// The address of the function whose plan this is.
    root: usize,
    dicts: AHashMap<usize, DictGuard>,
    functions: AHashMap<usize, FunctionGuard>,
    types: AHashMap<usize, TypeGuard>,
    /// Something was read that no guard can watch (the process environment):
    /// the plan must not be reused.
    pub uncacheable: bool,
}

impl Builder {
    /// Guards for the plan of `root`.
    pub fn new(root: &Bound<'_, PyAny>) -> Self {
        Builder {
            root: root.as_ptr() as usize,
            ..Builder::default()
        }
    }

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
        let root = self.root;
        let g = self.dict(d);
        if !g.strict && g.names.insert(name.as_ptr() as usize) {
            let seen = found.map_or(std::ptr::null_mut(), |v| v.as_ptr());
            g.entries
                .push((name.clone().unbind(), Slot::new(d.py(), seen, root)));
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
            let root = self.root;
            self.functions
                .entry(f.as_ptr() as usize)
                .or_insert_with(|| FunctionGuard::new(f, root));
        } else {
            self.uncacheable = true;
        }
    }

    /// A class's bases and members were read.
    pub fn class(&mut self, t: &Bound<'_, PyType>) {
        let py = t.py();
        let root = self.root;
        self.types
            .entry(t.as_ptr() as usize)
            .or_insert_with(|| TypeGuard {
                ty: t.clone().unbind(),
                bases: Slot::new(py, types::bases(t), root),
                meta: Slot::new(py, t.get_type().as_ptr(), root),
            });
        // SAFETY: `tp_dict` is NULL or a live dict the type holds (GIL held).
        let dict = unsafe { Bound::from_borrowed_ptr_or_opt(py, types::dict(t)) };
        match dict.map(|d| d.cast_into::<PyDict>()) {
            Some(Ok(d)) => self.read_all(&d),
            _ => self.uncacheable = true,
        }
    }

    pub fn finish(self) -> Guards {
        Guards {
            root: self.root,
            dicts: self.dicts.into_values().collect(),
            functions: self.functions.into_values().collect(),
            types: self.types.into_values().collect(),
        }
    }
}
