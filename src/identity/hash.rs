//! Content hashes of Python values and fingerprints of what a function can
//! reach: its code, defaults, closure cells, `__dict__` and annotations, the
//! globals it reads (functions transitively, classes by their members, bases
//! and metaclass, local modules by the attributes used, installed libraries
//! by version) and modules imported in its body.
//!
//! Everything is hashed by content, never by `hash()` or address, so digests
//! are equal across processes and `PYTHONHASHSEED` values: values by what
//! they hold (`hash/value.rs`, `state.rs`, `array.rs`, `frame.rs`), code by
//! what it does (`hash/fingerprint.rs`). Anything that cannot be hashed by
//! content is an [`HashError::Unhashable`] (`hash/error.rs`): the caller then
//! runs the function without memoizing; no argument is ever dropped. No
//! walk goes deeper than [`MAX_DEPTH`] levels or closer than [`RED_ZONE`] to
//! the end of the stack.
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ahash::{AHashMap, AHashSet};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyCFunction, PyCode, PyComplex, PyDict, PyEllipsis, PyFloat,
    PyFrozenSet, PyFunction, PyInt, PyList, PyModule, PyRange, PySet, PySlice, PyString, PyTuple,
    PyType,
};

use super::buffer::Buffer;
use super::code::{code_info, CodeInfo};
use super::digest::{Digest, Hasher, Tag};
use super::layout;
use super::native;
use super::plan::{Building, Plan};
use crate::cpython::function::{function_parts, FunctionParts};
use crate::cpython::{types as cpython_types, GilCell};

mod array;
mod error;
mod fingerprint;
mod frame;
mod imports;
pub mod patches;
mod state;
mod types;
mod value;

pub use error::{HResult, HashError, Kind, Step, Unhashable};
pub use patches::Unit;
pub use value::{plain_value, try_plain, try_plain_tuple, unseeded};

/// How deep a walk may go (values and containers entered), whatever the
/// stack: past it, a value is [`Kind::TooDeep`].
const MAX_DEPTH: usize = 1000;
/// Stack that must be left for the Python code a level may run (a
/// `__reduce__`, a property): below it a value is [`Kind::TooDeep`]. So a
/// walk in a thread with a small stack stops early instead of overflowing.
const RED_ZONE: usize = 96 * 1024;

/// `bytecache._modkind`, imported once.
static SUPPORT: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Module name -> library kind and version (`None`: the user's code). A
/// module's origin does not change within a process, but which modules the
/// user marks as theirs does (`forget_classifications`).
static LIBRARIES: PyOnceLock<Mutex<AHashMap<String, Option<String>>>> = PyOnceLock::new();

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let t = obj.get_type();
    let module = type_module(&t);
    let name = t.qualname().map(|m| m.to_string()).unwrap_or_default();
    if &*module == "builtins" {
        name
    } else {
        format!("{module}.{name}")
    }
}

/// Cython's compiled functions (`cython_function_or_method` and its fused
/// subclass, defined in a `_cython_<version>` shim module): native code like
/// builtins, though not `PyCFunction`s.
fn is_cython_function(obj: &Bound<'_, PyAny>) -> bool {
    let t = obj.get_type();
    type_module(&t).starts_with("_cython_")
        && t.mro().iter().any(|base| {
            base.cast::<PyType>().is_ok_and(|b| {
                b.qualname()
                    .is_ok_and(|q| q.to_str().is_ok_and(|q| q == "cython_function_or_method"))
            })
        })
}

/// `sys.modules`.
fn loaded_modules(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    Ok(types::interpreter(py)?.modules.bind(py).clone())
}

/// `t.__module__` ("" if it is not a string). Read as an attribute:
/// `PyType::module` looks in the type's dict, which on 3.13 finds the
/// instances' `__module__` descriptor for some extension types.
fn type_module(t: &Bound<'_, PyType>) -> Rc<str> {
    let read = || -> Rc<str> {
        t.getattr(intern!(t.py(), "__module__"))
            .and_then(|m| m.extract::<String>())
            .unwrap_or_default()
            .into()
    };
    if !cpython_types::is_static(t) {
        return read(); // a class: its dict's `__module__`, which can change
    }
    // A static type's `__module__` is made from its C name on every read
    // (a new interned string): read once per process (they are immortal).
    let key = t.as_ptr() as usize;
    // SAFETY: a map lookup and an `Rc` clone run no Python code.
    let known = unsafe {
        STATIC_TYPE_MODULES.with(t.py(), |m| m.as_ref().and_then(|m| m.get(&key).cloned()))
    };
    known.unwrap_or_else(|| {
        let module = read();
        // SAFETY: a map insert runs no Python code.
        unsafe {
            STATIC_TYPE_MODULES.with(t.py(), |m| {
                m.get_or_insert_with(AHashMap::new)
                    .insert(key, module.clone())
            });
        }
        module
    })
}

/// Static type address -> its `__module__` (see [`type_module`]).
static STATIC_TYPE_MODULES: GilCell<Option<AHashMap<usize, Rc<str>>>> = GilCell::new(None);

/// Notes that the modules `names` are library `lib` (as classified).
fn known_libraries(py: Python<'_>, names: &[&str], lib: &str) {
    let cache = LIBRARIES.get_or_init(py, || Mutex::new(AHashMap::new()));
    if let Ok(mut c) = cache.lock() {
        for &n in names {
            if !c.contains_key(n) {
                c.insert(n.to_owned(), Some(lib.to_owned()));
            }
        }
    }
}

/// Walks values, functions, classes and modules, with cycle detection
/// (a back-reference to an object already being hashed) and a per-walk memo
/// of function and class fingerprints.
/// One entry of a dependency record, kept with each stored result so that
/// `explain` can say what changed: a function, a global, an argument.
#[derive(Clone)]
pub struct Dep {
    pub kind: &'static str,
    pub name: String,
    /// A short rendering (file of a function, value of a small scalar global).
    pub display: Option<String>,
    pub digest: Digest,
    /// The plan leaf this global's value is (its digest is filled in when
    /// the leaf is hashed).
    pub leaf: Option<usize>,
}

/// `repr` of small scalars only: never of arbitrary objects (cost, privacy).
fn short_display(v: &Bound<'_, PyAny>) -> Option<String> {
    let scalar = v.is_none()
        || v.is_exact_instance_of::<PyBool>()
        || v.is_exact_instance_of::<PyInt>()
        || v.is_exact_instance_of::<PyFloat>()
        || v.is_exact_instance_of::<PyString>();
    if !scalar {
        return None;
    }
    let r = v.repr().ok()?.to_string();
    (r.len() <= 60).then_some(r)
}

pub struct Walker<'py> {
    py: Python<'py>,
    stack: Vec<usize>,
    /// Values and containers entered and not yet left.
    depth: usize,
    /// Per class: how its instances' true state is read (see `state.rs`).
    layouts: AHashMap<usize, Rc<state::Layout>>,
    memo: AHashMap<usize, Digest>,
    /// Every attribute name any code reached in this walk can use.
    pub(super) used: Used,
    /// Some reached code looks attributes up by computed names.
    pub(super) dynamic: bool,
    /// Functions' annotations are hashed on fingerprinted code too (some
    /// reached code introspects them); else only on function values.
    pub(super) annotations: bool,
    /// Some fingerprinted function's annotations were left out.
    pub(super) skipped_annotations: bool,
    /// Top-level packages of the libraries reached (standard library
    /// included), in the order first reached.
    pub(super) libraries: Vec<String>,
    /// Class members, hashed apart and folded in by [`Walker::finish`] only
    /// when reachable code can name them (or they are dunder protocol
    /// methods): an edit to a method nothing calls does not invalidate.
    members: Vec<Member>,
    /// Collected only when asked for (misses and `explain`, not hits).
    pub record: Option<Vec<Dep>>,
    /// While building a plan: guards and leaves (see `plan.rs`).
    pub plan: Option<Building>,
    /// The plan this walk completes (a call's arguments and leaves).
    pub base: Option<Rc<Plan>>,
    next_member: u32,
    folded: Vec<u32>,
    /// Modules keyed as not loaded (see `imports.rs`), in walk order.
    pub unloaded: Vec<String>,
    /// Modules to key as not loaded even if they are loaded now: those not
    /// loaded when the key before a call was computed (see `Memo.key`).
    pub view: Option<Rc<AHashSet<String>>>,
    /// Library units reached: see `patches.rs`.
    pub units: Vec<Arc<patches::Unit>>,
    /// (library module, attribute names) -> digest of its patches.
    patched: AHashMap<(usize, usize), Option<Digest>>,
}

pub struct Member {
    id: u32,
    class: String,
    name: String,
    digest: Result<Digest, Unhashable>,
}

/// Forgets every module classification (the modules marked as the user's
/// changed: `bytecache.enable(modules=...)`).
pub fn forget_classifications(py: Python<'_>) {
    if let Some(cache) = LIBRARIES.get(py) {
        if let Ok(mut c) = cache.lock() {
            c.clear();
        }
    }
}

/// A map keyed by addresses within one walk: fixed seeds are enough, and
/// cheaper than `AHashMap::new`'s random ones (drawn on every call's key).
fn address_map<K, V>() -> AHashMap<K, V> {
    AHashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
}

/// What `obj` is as a ctypes function pointer; `None` when it is not one
/// (or ctypes is not loaded).
pub fn ctypes_function(obj: &Bound<'_, PyAny>) -> PyResult<Option<native::CtypesFunction>> {
    let py = obj.py();
    match types::ctypes(py) {
        Some(c) => native::ctypes_function(obj, c.func.bind(py), c.cdll.bind(py)),
        None => Ok(None),
    }
}

impl<'py> Walker<'py> {
    pub fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Walker {
            py,
            stack: Vec::new(),
            depth: 0,
            layouts: address_map(),
            memo: address_map(),
            used: Used::default(),
            dynamic: false,
            annotations: false,
            skipped_annotations: false,
            libraries: Vec::new(),
            members: Vec::new(),
            record: None,
            plan: None,
            base: None,
            next_member: 0,
            folded: Vec::new(),
            unloaded: Vec::new(),
            view: None,
            units: Vec::new(),
            patched: address_map(),
        })
    }

    pub fn py(&self) -> Python<'py> {
        self.py
    }

    /// `bytecache._modkind` (imported on first use).
    fn support(&self) -> PyResult<Bound<'py, PyModule>> {
        let py = self.py;
        Ok(SUPPORT
            .get_or_try_init(py, || py.import("bytecache._modkind").map(Bound::unbind))?
            .bind(py)
            .clone())
    }

    fn fold(&mut self, m: &Member, h: &mut Hasher) -> HResult<()> {
        h.tag(Tag::Name);
        h.str(&m.class);
        h.str(&m.name);
        self.folded.push(m.id);
        match &m.digest {
            Ok(d) => {
                h.digest(*d);
                Ok(())
            }
            Err(u) => Err(u.clone().into()),
        }
    }

    /// Whether reached code can introspect functions' annotations or
    /// signatures.
    pub(super) fn introspects(&self) -> bool {
        const NAMES: [&str; 5] = [
            "__annotations__",
            "__signature__",
            "signature",
            "get_type_hints",
            "get_annotations",
        ];
        self.dynamic || NAMES.iter().any(|n| self.used.contains(n))
    }

    /// Whether reached code can use member `name`.
    fn uses(&self, name: &str) -> bool {
        let dunder = name.starts_with("__") && name.ends_with("__");
        let base = self.base.as_deref();
        dunder
            || self.dynamic
            || self.used.contains(name)
            || base.is_some_and(|b| b.dynamic || b.used.contains(name))
    }

    /// Folds in the class members that reached code can use. Call once, after
    /// everything of one key was walked.
    pub fn finish(&mut self, h: &mut Hasher) -> HResult<()> {
        for m in std::mem::take(&mut self.members) {
            if self.uses(&m.name) {
                self.fold(&m, h)?;
            }
        }
        Ok(())
    }

    /// At the end of a plan's walk: folds in the members used so far and
    /// returns the others (pending).
    pub fn fold_used(&mut self, h: &mut Hasher) -> HResult<Vec<Member>> {
        let mut pending = Vec::new();
        for m in std::mem::take(&mut self.members) {
            if self.uses(&m.name) {
                self.fold(&m, h)?;
            } else {
                pending.push(m);
            }
        }
        Ok(pending)
    }

    /// The ids of the members folded in so far.
    pub fn folded_ids(&self) -> AHashSet<u32> {
        self.folded.iter().copied().collect()
    }

    /// Folds in the base plan's pending members that this walk (a call's
    /// arguments and leaves) can use; returns their ids.
    pub fn fold_pending(&mut self, h: &mut Hasher) -> HResult<Vec<u32>> {
        let Some(base) = self.base.clone() else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        for m in &base.pending {
            if self.dynamic || self.used.contains(&m.name) {
                self.fold(m, h)?;
                ids.push(m.id);
            }
        }
        Ok(ids)
    }

    /// `d[name]`, noted in the plan being built.
    /// `d[key]`, noted in the plan being built; `key` must be interned.
    fn get(
        &mut self,
        d: &Bound<'py, PyDict>,
        key: &Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let v = d.get_item(key)?;
        if let Some(b) = self.plan.as_mut() {
            b.guards.read(d, key, v.as_ref());
        }
        Ok(v)
    }

    /// All of `d` is read; noted in the plan being built.
    fn read_all(&mut self, d: &Bound<'py, PyDict>) {
        if let Some(b) = self.plan.as_mut() {
            b.guards.read_all(d);
        }
    }

    /// Where the values hashed next come from (for a leaf's messages).
    /// (Only worked out when `v` can be or hold a leaf.)
    fn site(&mut self, v: &Bound<'py, PyAny>, what: impl FnOnce() -> Vec<Step>) {
        if let Some(b) = self.plan.as_mut() {
            if may_hold_leaf(v) {
                b.site = what();
            }
        }
    }

    /// `Some("<kind and identity>")` when `module` is the standard library
    /// or an installed distribution (keyed by what is installed, not
    /// walked); its unit is noted as reached (see `patches.rs`).
    fn library(&mut self, module: &str) -> PyResult<Option<String>> {
        let cache = LIBRARIES.get_or_init(self.py, || Mutex::new(AHashMap::new()));
        let cached = cache.lock().ok().and_then(|c| c.get(module).cloned());
        let kind = match cached {
            Some(kind) => kind,
            None => {
                let kind = self
                    .support()?
                    .call_method1(intern!(self.py, "classify"), (module,))?
                    .extract::<Option<String>>()?;
                if let Ok(mut c) = cache.lock() {
                    c.insert(module.to_owned(), kind.clone());
                }
                kind
            }
        };
        if let Some(unit) = kind
            .as_deref()
            .and_then(|k| patches::unit_of(self.py, module, k))
        {
            if !self.units.iter().any(|u| Arc::ptr_eq(u, &unit)) {
                self.units.push(unit);
            }
        }
        Ok(kind)
    }

    /// `library`, also noting the library's top-level package as reached
    /// (some libraries read interpreter-wide state: see `_deps.LIBRARY_STATE`).
    fn reach_library(&mut self, module: &str) -> PyResult<Option<String>> {
        let kind = self.library(module)?;
        if kind.is_some() {
            let top = module.split('.').next().unwrap_or(module);
            if !self.libraries.iter().any(|l| l == top) {
                self.libraries.push(top.to_owned());
            }
        }
        Ok(kind)
    }

    /// Runs `f` with `obj` on the cycle stack, or writes a back-reference if
    /// `obj` is already being hashed.
    fn guarded(
        &mut self,
        obj: &Bound<'py, PyAny>,
        h: &mut Hasher,
        f: impl FnOnce(&mut Self, &mut Hasher) -> HResult<()>,
    ) -> HResult<()> {
        let id = obj.as_ptr() as usize;
        if let Some(pos) = self.stack.iter().rposition(|&x| x == id) {
            h.tag(Tag::BackRef);
            h.u64((self.stack.len() - pos) as u64);
            return Ok(());
        }
        self.descend()?;
        self.stack.push(id);
        let r = f(self, h);
        self.stack.pop();
        self.depth -= 1;
        r
    }

    /// One level deeper, unless the walk is already as deep as it may go
    /// or the stack is short: then [`Kind::TooDeep`]. Every recursion goes
    /// through here (`value` and `guarded`); the caller undoes it.
    fn descend(&mut self) -> HResult<()> {
        let short = stacker::remaining_stack().is_some_and(|left| left < RED_ZONE);
        if self.depth >= MAX_DEPTH || short {
            return Err(HashError::new(Kind::TooDeep));
        }
        self.depth += 1;
        Ok(())
    }

    /// Like `guarded`, for objects whose digest can be memoized in this walk
    /// (functions, classes). Writes the object's digest into `h` and returns it.
    fn memoized(
        &mut self,
        obj: &Bound<'py, PyAny>,
        h: &mut Hasher,
        f: impl FnOnce(&mut Self, &mut Hasher) -> HResult<()>,
    ) -> HResult<Digest> {
        let id = obj.as_ptr() as usize;
        if let Some(d) = self.memo.get(&id) {
            h.digest(*d);
            return Ok(*d);
        }
        let mut sub = Hasher::new();
        let on_stack = self.stack.contains(&id);
        self.guarded(obj, &mut sub, f)?;
        let d = sub.finish();
        if !on_stack {
            self.memo.insert(id, d);
        }
        h.digest(d);
        Ok(d)
    }
}

/// Whether `v` is, or may hold, a plan leaf (functions, classes and
/// modules name their own sites for what they hold; a bound method's
/// `__self__` may be a leaf).
fn may_hold_leaf(v: &Bound<'_, PyAny>) -> bool {
    if let Ok(t) = v.cast_exact::<PyTuple>() {
        return t.iter().any(|item| may_hold_leaf(&item));
    }
    let scalar = v.is_none()
        || v.is_exact_instance_of::<PyBool>()
        || v.is_exact_instance_of::<PyInt>()
        || v.is_exact_instance_of::<PyFloat>()
        || v.is_exact_instance_of::<PyString>()
        || v.is_exact_instance_of::<PyBytes>();
    let names_its_own = v.is_instance_of::<PyFunction>()
        || v.is_instance_of::<PyType>()
        || v.is_instance_of::<PyModule>()
        || v.is_instance_of::<PyCode>();
    !scalar && !names_its_own
}

/// The attribute names reached code can use: the code analyses it came from
/// (shared, not copied).
#[derive(Default)]
pub struct Used(Vec<Arc<CodeInfo>>);

impl Used {
    fn add(&mut self, info: &Arc<CodeInfo>) {
        if !self.0.iter().any(|i| Arc::ptr_eq(i, info)) {
            self.0.push(info.clone());
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|i| i.names_attr(name))
    }
}

/// Whether a plan hashes `obj` by content on every call: anything that can
/// change without a guarded dict or slot changing. Tuples, functions,
/// classes, modules, code, builtins, ranges, slices and the read-only
/// wrappers are walked (their parts may be leaves).
fn is_leaf(obj: &Bound<'_, PyAny>) -> bool {
    let walked = obj.is_exact_instance_of::<PyTuple>()
        || obj.is_instance_of::<PyFunction>()
        || obj.is_instance_of::<PyType>()
        || obj.is_instance_of::<PyModule>()
        || obj.is_instance_of::<PyCode>()
        || obj.is_instance_of::<PyCFunction>()
        || obj.is_exact_instance_of::<PyRange>()
        || obj.is_exact_instance_of::<PySlice>();
    if walked {
        return false;
    }
    match types::interpreter(obj.py()) {
        Ok(t) => ![&t.method, &t.staticmethod, &t.classmethod, &t.property]
            .into_iter()
            .any(|k| types::is(obj, k)),
        Err(_) => true,
    }
}
