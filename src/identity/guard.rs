//! Guards: the cheap checks that keep a cached fingerprint valid, so a call
//! does not walk its function's graph again.
//!
//! A fingerprint reads dictionaries (globals, builtins, module and class
//! dicts), function slots (`__code__`, defaults, closure cells, `__dict__`)
//! and class bases. A guard remembers what each read saw, holding a strong
//! reference so an address is never reused while we compare against it.
//!
//! Dictionaries are checked by their version tag (`ma_version_tag`, bumped
//! by every mutation on CPython 3.11–3.13; one field read, no callback, no
//! watcher slot taken from the interpreter's eight). When the tag moved
//! (a script's top-level loop assigns unrelated globals all the time), the
//! names actually read are looked up again and compared by identity; only a
//! different object invalidates. Values are compared by identity only, which
//! is sound because a plan hashes every value that can change in place (lists,
//! dicts, arrays, instances) as a leaf, by content, on every call.
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::{AHashMap, AHashSet};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFunction, PyString, PyType};

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

/// The version tag of a dict.
fn version(d: &Bound<'_, PyDict>) -> u64 {
    // SAFETY: `d` is a live exact-or-subclass dict (its type was checked by
    // the cast that produced the `Bound<PyDict>`), so it has the
    // `PyDictObject` layout; reading a field needs only the GIL.
    #[allow(deprecated)]
    unsafe {
        (*d.as_ptr().cast::<ffi::PyDictObject>()).ma_version_tag
    }
}

struct DictGuard {
    dict: Py<PyDict>,
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
        let now = version(d);
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

/// A function's parts, read from its struct: the `__code__`, `__defaults__`
/// and `__kwdefaults__` getters raise an `object.__getattr__` audit event,
/// which would call every audit hook (ours included) on every read.
pub struct FunctionParts<'py> {
    pub code: Bound<'py, PyAny>,
    pub globals: Bound<'py, PyAny>,
    pub builtins: Option<Bound<'py, PyAny>>,
    /// `None` (Python's `None`) when absent, as the attributes read.
    pub defaults: Bound<'py, PyAny>,
    pub kwdefaults: Bound<'py, PyAny>,
    pub closure: Bound<'py, PyAny>,
    /// Its `__dict__`, if it has one (reading `f.__dict__` would create one).
    pub dict: Option<Bound<'py, PyDict>>,
    /// Its annotations, if any: a dict, or the flat `(name, value, ...)`
    /// tuple the interpreter stores until `__annotations__` is first read.
    pub annotations: Option<Bound<'py, PyAny>>,
    /// `__qualname__`, for messages and the dependency record.
    pub qualname: Bound<'py, PyAny>,
}

pub fn function_parts<'py>(f: &Bound<'py, PyFunction>) -> FunctionParts<'py> {
    let py = f.py();
    let none = || py.None().into_bound(py);
    // SAFETY: `f` is a live function (type checked by the cast that produced
    // the `Bound<PyFunction>`); each field is NULL or a borrowed reference,
    // which `slot` turns into a new one.
    let (raw, globals, builtins, closure, qualname) = unsafe {
        let o = &*f.as_ptr().cast::<ffi::PyFunctionObject>();
        (
            function_slots(f.as_ptr()),
            o.func_globals,
            o.func_builtins,
            o.func_closure,
            o.func_qualname,
        )
    };
    let get = |p| slot(py, p).map(|o| o.into_bound(py));
    FunctionParts {
        code: get(raw[0]).unwrap_or_else(none),
        globals: get(globals).unwrap_or_else(none),
        builtins: get(builtins),
        defaults: get(raw[1]).unwrap_or_else(none),
        kwdefaults: get(raw[2]).unwrap_or_else(none),
        closure: get(closure).unwrap_or_else(none),
        dict: get(raw[3]).and_then(|d| d.cast_into::<PyDict>().ok()),
        annotations: get(raw[4]),
        qualname: get(qualname).unwrap_or_else(none),
    }
}

/// A function's mutable slots: `__code__`, `__defaults__`, `__kwdefaults__`,
/// `__dict__`, `__annotations__`, and the contents of its closure cells.
struct FunctionGuard {
    func: Py<PyAny>,
    slots: [Slot; 5],
    cells: Vec<Slot>,
}

/// Reads a function's mutable slots (borrowed pointers).
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
unsafe fn function_slots(f: *mut ffi::PyObject) -> [*mut ffi::PyObject; 5] {
    // SAFETY: forwarded (layout from pyo3-ffi for the running version).
    unsafe {
        let f = &*f.cast::<ffi::PyFunctionObject>();
        [
            f.func_code,
            f.func_defaults,
            f.func_kwdefaults,
            f.func_dict,
            f.func_annotations,
        ]
    }
}

/// The content pointer of each closure cell (borrowed), passed to `each`
/// in order; returns the number of cells.
///
/// # Safety
/// GIL held; `f` is a live `PyFunctionObject`.
unsafe fn cell_contents(f: *mut ffi::PyObject, mut each: impl FnMut(*mut ffi::PyObject)) -> usize {
    // SAFETY: forwarded; `func_closure` is NULL or a tuple of cells.
    unsafe {
        let closure = (*f.cast::<ffi::PyFunctionObject>()).func_closure;
        if closure.is_null() || ffi::PyTuple_Check(closure) == 0 {
            return 0;
        }
        let n = ffi::PyTuple_GET_SIZE(closure);
        for i in 0..n {
            let cell = ffi::PyTuple_GET_ITEM(closure, i);
            each(if ffi::PyCell_Check(cell) == 0 {
                cell // not a cell: its identity stands in
            } else {
                (*cell.cast::<ffi::PyCellObject>()).ob_ref
            });
        }
        usize::try_from(n).unwrap_or(0)
    }
}

impl FunctionGuard {
    fn new(f: &Bound<'_, PyAny>) -> Self {
        let py = f.py();
        let mut cells = Vec::new();
        // SAFETY: callers pass functions only (checked by `Builder::function`).
        let slots = unsafe {
            cell_contents(f.as_ptr(), |p| cells.push(slot(py, p)));
            function_slots(f.as_ptr())
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
            let n = cell_contents(self.func.as_ptr(), |p| {
                same_cells &= self.cells.get(i).is_some_and(|s| same(s, p));
                i += 1;
            });
            (function_slots(self.func.as_ptr()), n)
        };
        same_cells && n == self.cells.len() && self.slots.iter().zip(slots).all(|(s, p)| same(s, p))
    }
}

/// A class's bases and metaclass (its dict is a strict [`DictGuard`]).
struct TypeGuard {
    ty: Py<PyType>,
    bases: Slot,
    meta: Slot,
}

impl TypeGuard {
    fn bases(t: &Bound<'_, PyType>) -> *mut ffi::PyObject {
        // SAFETY: `t` is a live type object; reading a field needs the GIL.
        unsafe { (*t.as_type_ptr()).tp_bases }
    }

    /// `type(t)` (borrowed): `__class__` can be assigned on a class.
    fn meta(t: &Bound<'_, PyType>) -> *mut ffi::PyObject {
        t.get_type().as_ptr()
    }

    fn holds(&self, py: Python<'_>) -> bool {
        let t = self.ty.bind(py);
        same(&self.bases, Self::bases(t)) && same(&self.meta, Self::meta(t))
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
        let types = self.types.iter().flat_map(|t| {
            std::iter::once(t.ty.as_any())
                .chain(t.bases.iter())
                .chain(t.meta.iter())
        });
        dicts.chain(functions).chain(types)
    }
}

/// Collects guards while a plan is built.
#[derive(Default)]
pub struct Builder {
    dicts: AHashMap<usize, DictGuard>,
    functions: AHashMap<usize, FunctionGuard>,
    types: AHashMap<usize, TypeGuard>,
    /// Something was read that no guard can watch (a callable that is not a
    /// function, a class without a dict):
    /// the plan must not be reused.
    pub uncacheable: bool,
}

impl Builder {
    fn dict(&mut self, d: &Bound<'_, PyDict>) -> &mut DictGuard {
        self.dicts
            .entry(d.as_ptr() as usize)
            .or_insert_with(|| DictGuard {
                dict: d.clone().unbind(),
                version: AtomicU64::new(version(d)),
                strict: false,
                entries: Vec::new(),
                names: AHashSet::new(),
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
                bases: slot(py, TypeGuard::bases(t)),
                meta: slot(py, TypeGuard::meta(t)),
            });
        // SAFETY: `t` is a live type; `tp_dict` is NULL or a borrowed dict.
        let dict = unsafe { slot(py, (*t.as_type_ptr()).tp_dict) };
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
