//! Content hashes of Python values and fingerprints of what a function can
//! reach: its code, defaults, closure cells, the globals it reads (functions
//! transitively, classes by their members and bases, local modules by the
//! attributes used, installed libraries by version), modules imported in its
//! body and `__wrapped__` chains.
//!
//! Everything is hashed by content, never by `hash()` or address, so digests
//! are equal across processes and `PYTHONHASHSEED` values. Anything that
//! cannot be hashed by content is an [`HashError::Unhashable`]: the caller
//! then runs the function without memoizing; no argument is ever dropped.
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use ahash::{AHashMap, AHashSet};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyCFunction, PyCode, PyComplex, PyDict, PyEllipsis, PyFloat,
    PyFrozenSet, PyFunction, PyInt, PyList, PyMappingProxy, PyModule, PyRange, PySet, PySlice,
    PyString, PyTuple, PyType,
};

use super::buffer::Buffer;
use super::code::{code_info, CodeInfo};
use super::digest::{Digest, Hasher, Tag};
use super::guard::{function_parts, FunctionParts};
use super::native;
use super::plan::{Building, Plan};

const MAX_DEPTH: usize = 256;

/// `bytecache._modkind`, imported once.
static SUPPORT: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Module name -> library kind and version (`None`: the user's code). A
/// module's origin does not change within a process.
static LIBRARIES: PyOnceLock<Mutex<AHashMap<String, Option<String>>>> = PyOnceLock::new();

/// Names through which code reads the process environment.
const ENVIRONMENT_NAMES: &[&str] = &["environ", "environb", "getenv", "getenvb"];

/// Class attributes that are caches or metadata, never behaviour.
const SKIPPED_CLASS_ATTRS: &[&str] = &[
    "__dict__",
    "__weakref__",
    "__doc__",
    "__module__",
    "__qualname__",
    "__firstlineno__",
    "__annotations__",
    "__slotnames__",
    "_abc_impl",
];

pub enum HashError {
    /// The value cannot be hashed by content; the message says what and where.
    Unhashable(String),
    Python(PyErr),
}

impl From<PyErr> for HashError {
    fn from(e: PyErr) -> Self {
        HashError::Python(e)
    }
}

impl From<pyo3::CastError<'_, '_>> for HashError {
    fn from(e: pyo3::CastError<'_, '_>) -> Self {
        HashError::Python(e.into())
    }
}

impl From<pyo3::CastIntoError<'_>> for HashError {
    fn from(e: pyo3::CastIntoError<'_>) -> Self {
        HashError::Python(e.into())
    }
}

pub type HResult<T> = Result<T, HashError>;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let t = obj.get_type();
    let module = type_module(&t);
    let name = t.qualname().map(|m| m.to_string()).unwrap_or_default();
    if module == "builtins" {
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
    Ok(PyModule::import(py, "sys")?
        .getattr(intern!(py, "modules"))?
        .cast_into::<PyDict>()?)
}

/// `t.__module__` ("" if it is not a string). Read as an attribute:
/// `PyType::module` looks in the type's dict, which on 3.13 finds the
/// instances' `__module__` descriptor for some extension types.
fn type_module(t: &Bound<'_, PyType>) -> String {
    t.getattr(intern!(t.py(), "__module__"))
        .and_then(|m| m.extract::<String>())
        .unwrap_or_default()
}

/// Hashes constants-like values that need no context: None, bool, int,
/// float, complex, str, bytes, Ellipsis. Anything else is a `TypeError`.
pub fn plain_value(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<()> {
    if try_plain(obj, h)? {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "unexpected constant of type {}",
            type_name(obj)
        )))
    }
}

pub fn try_plain(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<bool> {
    if obj.is_none() {
        h.tag(Tag::None);
    } else if obj.is_exact_instance_of::<PyBool>() {
        h.tag(Tag::Bool);
        h.u64(u64::from(obj.is_truthy()?));
    } else if obj.is_exact_instance_of::<PyInt>() {
        if let Ok(v) = obj.extract::<i64>() {
            h.tag(Tag::Int);
            h.i64(v);
        } else {
            let bits: usize = obj.call_method0("bit_length")?.extract()?;
            let raw = obj.call_method1("to_bytes", (bits / 8 + 1, "little", true))?;
            h.tag(Tag::BigInt);
            h.bytes(raw.cast_into::<PyBytes>()?.as_bytes());
        }
    } else if obj.is_exact_instance_of::<PyFloat>() {
        h.tag(Tag::Float);
        h.u64(obj.extract::<f64>()?.to_bits());
    } else if obj.is_exact_instance_of::<PyComplex>() {
        let c = obj.cast::<PyComplex>()?;
        h.tag(Tag::Complex);
        h.u64(c.real().to_bits());
        h.u64(c.imag().to_bits());
    } else if obj.is_exact_instance_of::<PyString>() {
        h.tag(Tag::Str);
        let s = obj.cast::<PyString>()?;
        match s.to_str() {
            Ok(text) => h.str(text),
            // Lone surrogates have no UTF-8 form; encode them losslessly.
            Err(_) => {
                let raw = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                h.bytes(raw.cast_into::<PyBytes>()?.as_bytes());
            }
        }
    } else if obj.is_exact_instance_of::<PyBytes>() {
        h.tag(Tag::Bytes);
        h.bytes(obj.cast::<PyBytes>()?.as_bytes());
    } else if obj.is_exact_instance_of::<PyEllipsis>() {
        h.tag(Tag::Ellipsis);
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// Walks values, functions, classes and modules, with cycle detection
/// (a back-reference to an object already being hashed) and a per-walk memo
/// of function and class fingerprints.
/// One entry of a dependency record, kept with each stored result so that
/// `explain` can say what changed: a function, a global, an argument.
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
    memo: AHashMap<usize, Digest>,
    /// Every attribute name any code reached in this walk can use.
    pub(super) used: Used,
    /// Some reached code looks attributes up by computed names.
    pub(super) dynamic: bool,
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
}

pub struct Member {
    id: u32,
    class: String,
    name: String,
    digest: Result<Digest, String>,
}

impl<'py> Walker<'py> {
    pub fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Walker {
            py,
            stack: Vec::new(),
            // Keyed by addresses within one walk: fixed seeds are enough.
            memo: AHashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            used: Used::default(),
            dynamic: false,
            members: Vec::new(),
            record: None,
            plan: None,
            base: None,
            next_member: 0,
            folded: Vec::new(),
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
            Err(msg) => Err(HashError::Unhashable(msg.clone())),
        }
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
    fn site(&mut self, v: &Bound<'py, PyAny>, what: impl FnOnce() -> String) {
        if let Some(b) = self.plan.as_mut() {
            if may_hold_leaf(v) {
                b.site = what();
            }
        }
    }

    /// `Some("<kind and version>")` when `module` is the standard library or
    /// an installed distribution (keyed by version, not walked).
    fn library(&self, module: &str) -> PyResult<Option<String>> {
        let cache = LIBRARIES.get_or_init(self.py, || Mutex::new(AHashMap::new()));
        if let Some(kind) = cache.lock().ok().and_then(|c| c.get(module).cloned()) {
            return Ok(kind);
        }
        let kind = self
            .support()?
            .call_method1(intern!(self.py, "classify"), (module,))?
            .extract::<Option<String>>()?;
        if let Ok(mut c) = cache.lock() {
            c.insert(module.to_owned(), kind.clone());
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
        if self.stack.len() >= MAX_DEPTH {
            return Err(HashError::Unhashable(format!(
                "{} is nested more than {MAX_DEPTH} levels deep",
                type_name(obj)
            )));
        }
        self.stack.push(id);
        let r = f(self, h);
        self.stack.pop();
        r
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

    /// The content hash of any value.
    pub fn value(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        if try_plain(obj, h)? {
            return Ok(());
        }
        if let Some(b) = self.plan.as_mut() {
            if is_leaf(obj) {
                h.tag(Tag::Leaf);
                h.u64(b.leaf(obj) as u64);
                return Ok(());
            }
        }
        if let Ok(t) = obj.cast_exact::<PyTuple>() {
            h.tag(Tag::Tuple);
            h.u64(t.len() as u64);
            return self.guarded(obj, h, |w, h| {
                t.iter().try_for_each(|item| w.value(&item, h))
            });
        }
        if let Ok(l) = obj.cast_exact::<PyList>() {
            h.tag(Tag::List);
            return self.guarded(obj, h, |w, h| {
                // Snapshot: a `__reduce__` run below must not resize it under us.
                let items: Vec<_> = l.iter().collect();
                h.u64(items.len() as u64);
                items.iter().try_for_each(|item| w.value(item, h))
            });
        }
        if let Ok(d) = obj.cast_exact::<PyDict>() {
            h.tag(Tag::Dict);
            return self.guarded(obj, h, |w, h| w.items(d.iter(), h));
        }
        if let Ok(d) = obj.cast_exact::<PyMappingProxy>() {
            h.tag(Tag::Dict);
            let items = d.items()?;
            return self.guarded(obj, h, |w, h| {
                let pairs = items
                    .iter()
                    .map(|kv| {
                        let kv = kv.cast_into::<PyTuple>()?;
                        Ok((kv.get_item(0)?, kv.get_item(1)?))
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                w.items(pairs.into_iter(), h)
            });
        }
        if obj.is_exact_instance_of::<PySet>() || obj.is_exact_instance_of::<PyFrozenSet>() {
            // Iteration order depends on the hash seed: hash elements apart
            // and sort their digests.
            let tag = if obj.is_exact_instance_of::<PySet>() {
                Tag::Set
            } else {
                Tag::FrozenSet
            };
            return self.guarded(obj, h, |w, h| {
                let mut digests = Vec::new();
                for item in obj.try_iter()? {
                    let mut sub = Hasher::new();
                    w.value(&item?, &mut sub)?;
                    digests.push(sub.finish());
                }
                digests.sort_unstable();
                h.tag(tag);
                h.u64(digests.len() as u64);
                digests.into_iter().for_each(|d| h.digest(d));
                Ok(())
            });
        }
        if let Ok(b) = obj.cast_exact::<PyByteArray>() {
            h.tag(Tag::ByteArray);
            h.bytes(&b.to_vec());
            return Ok(());
        }
        if obj.is_exact_instance_of::<PyRange>() || obj.is_exact_instance_of::<PySlice>() {
            h.tag(if obj.is_exact_instance_of::<PyRange>() {
                Tag::Range
            } else {
                Tag::Slice
            });
            let py = self.py;
            for attr in [
                intern!(py, "start"),
                intern!(py, "stop"),
                intern!(py, "step"),
            ] {
                self.value(&obj.getattr(attr)?, h)?;
            }
            return Ok(());
        }
        if obj.is_instance_of::<PyFunction>() {
            return self.function(obj, h);
        }
        if let Ok(t) = obj.cast::<PyType>() {
            return self.class(t, h);
        }
        if let Ok(m) = obj.cast::<PyModule>() {
            return self.module(m, None, h);
        }
        if obj.is_instance_of::<PyCode>() {
            h.tag(Tag::Code);
            h.digest(code_info(obj)?.digest);
            return Ok(());
        }
        if obj.is_instance_of::<PyCFunction>() || is_cython_function(obj) {
            return self.builtin_function(obj, h);
        }
        let tname = type_name(obj);
        match tname.as_str() {
            "method" => {
                h.tag(Tag::BoundMethod);
                self.value(&obj.getattr(intern!(obj.py(), "__func__"))?, h)?;
                return self.value(&obj.getattr(intern!(obj.py(), "__self__"))?, h);
            }
            "staticmethod" | "classmethod" => {
                h.tag(Tag::Wrapper);
                h.str(&tname);
                return self.value(&obj.getattr(intern!(obj.py(), "__func__"))?, h);
            }
            "property" => {
                h.tag(Tag::Wrapper);
                h.str(&tname);
                let py = self.py;
                for attr in [
                    intern!(py, "fget"),
                    intern!(py, "fset"),
                    intern!(py, "fdel"),
                ] {
                    self.value(&obj.getattr(attr)?, h)?;
                }
                return Ok(());
            }
            "functools.cached_property" => {
                h.tag(Tag::Wrapper);
                h.str(&tname);
                return self.value(&obj.getattr(intern!(obj.py(), "func"))?, h);
            }
            "cell" => return self.cell(obj, h),
            _ => {}
        }
        if obj.hasattr(intern!(self.py, "__wrapped__"))? {
            // Callable wrappers such as `functools.lru_cache`: the wrapper's
            // type plus the function it wraps.
            h.tag(Tag::Wrapper);
            self.class(&obj.get_type(), h)?;
            return self.wrapped(obj, h);
        }
        if let Some(buf) = Buffer::get(obj) {
            // Object arrays export pointers, not content: those go by reduce.
            if !buf.format().contains(&b'O') {
                h.tag(Tag::Buffer);
                self.class(&obj.get_type(), h)?;
                h.bytes(buf.format());
                h.i64(buf.itemsize());
                for dims in [buf.shape(), buf.strides()] {
                    h.u64(dims.len() as u64);
                    dims.iter().for_each(|&d| h.i64(d));
                }
                let bytes = buf.c_bytes()?;
                h.bytes(&bytes);
                return Ok(());
            }
        }
        self.guarded(obj, h, |w, h| w.reduce(obj, &tname, h))
    }

    fn cell(&mut self, cell: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        match cell.getattr(intern!(cell.py(), "cell_contents")) {
            Ok(v) => {
                h.tag(Tag::Cell);
                self.value(&v, h)
            }
            Err(_) => {
                h.tag(Tag::EmptyCell);
                Ok(())
            }
        }
    }

    fn items(
        &mut self,
        pairs: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        h: &mut Hasher,
    ) -> HResult<()> {
        // Insertion order is deterministic and observable, so it is kept.
        let pairs: Vec<_> = pairs.collect();
        h.u64(pairs.len() as u64);
        for (k, v) in pairs {
            self.value(&k, h)?;
            self.value(&v, h)?;
        }
        Ok(())
    }

    /// Anything else: its class fingerprint plus the state `__reduce_ex__`
    /// exposes, as pickle would see it (dataclasses, enums, plain instances,
    /// `functools.partial`, subclasses of builtins, pandas objects, ...).
    fn reduce(&mut self, obj: &Bound<'py, PyAny>, tname: &str, h: &mut Hasher) -> HResult<()> {
        let reduced = match obj.call_method1(intern!(self.py, "__reduce_ex__"), (4,)) {
            Ok(r) => r,
            Err(e) => {
                return Err(HashError::Unhashable(format!(
                    "{tname} cannot be hashed by content ({})",
                    e.value(self.py)
                )))
            }
        };
        if let Ok(s) = reduced.cast::<PyString>() {
            // A global reference (singletons, ufuncs): the type plus the name.
            h.tag(Tag::ReduceStr);
            self.class(&obj.get_type(), h)?;
            h.str(&s.to_string());
            return Ok(());
        }
        let Ok(parts) = reduced.cast::<PyTuple>() else {
            return Err(HashError::Unhashable(format!(
                "{tname}.__reduce_ex__ returned neither a tuple nor a string"
            )));
        };
        h.tag(Tag::Reduce);
        self.class(&obj.get_type(), h)?;
        h.u64(parts.len() as u64);
        for (i, part) in parts.iter().enumerate() {
            if (i == 3 || i == 4) && !part.is_none() {
                // listitems / dictitems iterators.
                let items: Vec<_> = part.try_iter()?.collect::<PyResult<_>>()?;
                h.u64(items.len() as u64);
                for item in items {
                    self.value(&item, h)?;
                }
            } else {
                self.value(&part, h)?;
            }
        }
        Ok(())
    }

    /// Native code (builtins, C-extension and Cython functions): from the
    /// standard library or an installed distribution by name and version;
    /// from the user's own extension module by the code loaded in this
    /// process (`native`). Bound to an object (`[].append`): that object too.
    fn builtin_function(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = obj.py();
        let qualname: String = obj.getattr(intern!(py, "__qualname__"))?.extract()?;
        // A module-level C function's `__self__` is the module that defined
        // it (its `__module__` may name where it is re-exported); Cython
        // functions have none.
        let owner = obj.getattr_opt(intern!(py, "__self__"))?;
        let defining = match owner {
            Some(o) if o.is_instance_of::<PyModule>() => Some(o.cast_into::<PyModule>()?),
            Some(o) if !o.is_none() => {
                h.tag(Tag::BoundMethod);
                h.str(&qualname);
                return self.value(&o, h);
            }
            _ => None,
        };
        let module = match &defining {
            Some(m) => m.name()?.extract::<String>()?,
            None => match obj.getattr_opt(intern!(py, "__module__"))? {
                Some(m) if !m.is_none() => m.extract::<String>()?,
                _ => String::new(),
            },
        };
        h.tag(Tag::Builtin);
        h.str(&module);
        h.str(&qualname);
        if let Some(lib) = self.library(&module)? {
            h.str(&lib);
            return Ok(());
        }
        let defining = match defining {
            Some(m) => Some(m.into_any()),
            None => loaded_modules(py)?.get_item(&module)?,
        };
        let file = match defining {
            Some(m) => m.getattr_opt(intern!(py, "__file__"))?,
            None => None,
        };
        match file
            .and_then(|f| f.extract::<std::path::PathBuf>().ok())
            .and_then(|f| native::loaded_object_digest(&f))
        {
            Some(d) => {
                h.digest(d);
                Ok(())
            }
            None => Err(HashError::Unhashable(format!(
                "native function `{module}.{qualname}`: the code it runs cannot be located \
                 (not from the standard library, an installed distribution or a loaded \
                 extension module file)"
            ))),
        }
    }

    /// A function's fingerprint: code, defaults, closure, globals read,
    /// modules imported in its body, `__wrapped__`.
    pub fn function(&mut self, f: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        h.tag(Tag::Function);
        if let Some(b) = self.plan.as_mut() {
            b.guards.function(f);
        }
        let parts = function_parts(f.cast::<PyFunction>()?);
        let globals = parts.globals.clone().cast_into::<PyDict>()?;
        let module: String = match self.get(&globals, intern!(self.py, "__name__"))? {
            Some(n) => n.extract().unwrap_or_default(),
            None => String::new(),
        };
        if let Some(lib) = self.library(&module)? {
            h.tag(Tag::Library);
            h.str(&module);
            h.str(&parts.qualname.extract::<String>()?);
            h.str(&lib);
            // A library decorator's wrapper (bytecache.memoize, functools.wraps)
            // stands for the user's function it wraps.
            return self.wrapped(f, h);
        }
        self.memoized(f, h, |w, h| w.function_body(f, &parts, &globals, h))?;
        Ok(())
    }

    fn note(&mut self, dep: Dep) {
        if let Some(record) = self.record.as_mut() {
            if !record
                .iter()
                .any(|d| d.kind == dep.kind && d.name == dep.name)
            {
                record.push(dep);
            }
        }
    }

    fn function_body(
        &mut self,
        f: &Bound<'py, PyAny>,
        parts: &FunctionParts<'py>,
        globals: &Bound<'py, PyDict>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let qualname = &parts.qualname;
        let info = code_info(&parts.code)?;
        if info.writes_globals {
            return Err(HashError::Unhashable(format!(
                "function `{qualname}` assigns a global: a cached call would skip that effect"
            )));
        }
        self.used.add(&info);
        self.dynamic |= info.dynamic;
        // The function itself: code, defaults and closure cells. Its own
        // digest goes into the record, so `explain` can tell an edit of this
        // function from an edit of something it reaches.
        let mut own = Hasher::new();
        own.digest(info.digest);
        self.site(&parts.defaults, || {
            format!("a default argument of `{qualname}`")
        });
        self.value(&parts.defaults, &mut own)?;
        self.value(&parts.kwdefaults, &mut own)?;
        if !parts.closure.is_none() {
            let cells = parts.closure.cast::<PyTuple>()?;
            own.u64(cells.len() as u64);
            for cell in cells.iter() {
                self.site(&cell, || format!("a closure variable of `{qualname}`"));
                self.cell(&cell, &mut own)?;
            }
        }
        let own = own.finish();
        h.digest(own);
        if self.record.is_some() {
            let module: String = match globals.get_item("__name__")? {
                Some(n) => n.extract().unwrap_or_default(),
                None => String::new(),
            };
            let file: String = parts
                .code
                .getattr(intern!(f.py(), "co_filename"))?
                .extract()?;
            self.note(Dep {
                kind: "function",
                name: format!("{module}.{qualname}"),
                display: file.rsplit('/').next().map(str::to_owned),
                digest: own,
                leaf: None,
            });
        }
        let builtins = parts
            .builtins
            .as_ref()
            .and_then(|b| b.cast::<PyDict>().ok());
        let mut names: Vec<Bound<'py, PyString>> = info
            .globals
            .iter()
            .map(|n| n.bind(self.py).clone())
            .collect();
        if info.dynamic {
            self.read_all(globals);
            for k in globals.keys() {
                if let Ok(k) = k.cast_into::<PyString>() {
                    let t = k.to_str()?;
                    if !(t.starts_with("__") && t.ends_with("__")) {
                        names.push(k);
                    }
                }
            }
            let text = |n: &Bound<'py, PyString>| n.to_str().map(str::to_owned).unwrap_or_default();
            names.sort_by_cached_key(text);
            names.dedup_by(|a, b| text(a) == text(b));
        }
        let attrs = if info.dynamic {
            None
        } else {
            Some(info.attrs.as_slice())
        };
        for key in &names {
            let name = key.to_str()?;
            h.tag(Tag::Global);
            h.str(name);
            if let Some(v) = self.get(globals, key)? {
                let mut sub = Hasher::new();
                self.site(&v, || format!("global `{name}` of `{qualname}`"));
                self.dependency(&v, attrs, &mut sub)
                    .map_err(|e| context(e, || format!("global `{name}` of `{qualname}`")))?;
                let d = sub.finish();
                h.digest(d);
                // The value itself became a leaf: its digest comes later.
                let leaf = self.plan.as_ref().and_then(|b| b.index_of(&v));
                if self.record.is_some() && !v.is_instance_of::<PyFunction>() {
                    let module: String = match globals.get_item("__name__")? {
                        Some(n) => n.extract().unwrap_or_default(),
                        None => String::new(),
                    };
                    self.note(Dep {
                        kind: "global",
                        name: format!("{module}.{name}"),
                        display: short_display(&v),
                        digest: d,
                        leaf,
                    });
                }
            } else if let Some(b) = match builtins {
                Some(b) => self.get(b, key)?,
                None => None,
            } {
                h.tag(Tag::Builtin);
                self.value(&b, h)?;
            } else {
                h.tag(Tag::Missing);
            }
        }
        if ENVIRONMENT_NAMES.iter().any(|n| info.names_attr(n)) {
            // The process environment is read: its content is a dependency,
            // which no guard watches.
            if let Some(b) = self.plan.as_mut() {
                b.guards.uncacheable = true;
            }
            h.tag(Tag::Global);
            h.str("os.environ");
            self.value(&self.support()?.call_method0("environment")?, h)?;
        }
        for (level, name) in &info.imports {
            h.tag(Tag::Module);
            let target = self
                .support()?
                .call_method1("imported", (globals, *level, name.as_str()))?;
            // It depends on `__package__` and on what is loaded.
            self.get(globals, intern!(self.py, "__package__"))?;
            self.read_all(&loaded_modules(self.py)?);
            if let Ok(m) = target.cast::<PyModule>() {
                self.module(m, attrs, h)?;
            } else {
                h.tag(Tag::Unloaded);
                self.value(&target, h)?;
            }
        }
        self.wrapped(f, h)
    }

    /// The `__wrapped__` chain of a decorated callable, if any.
    fn wrapped(&mut self, f: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        // Functions keep `__wrapped__` in their `__dict__`: look there first,
        // which costs no AttributeError when it is absent.
        let wrapped = match f.cast::<PyFunction>() {
            Ok(func) => match function_parts(func).dict {
                Some(d) => self.get(&d, intern!(self.py, "__wrapped__"))?,
                None => None,
            },
            Err(_) => f.getattr_opt(intern!(self.py, "__wrapped__"))?,
        };
        if let Some(wrapped) = wrapped {
            h.tag(Tag::Wrapper);
            self.value(&wrapped, h)?;
        }
        Ok(())
    }

    /// A global (or module attribute) a function reads: modules are walked
    /// through the attribute names the code uses.
    fn dependency(
        &mut self,
        v: &Bound<'py, PyAny>,
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        match v.cast::<PyModule>() {
            Ok(m) => self.module(m, attrs, h),
            Err(_) => self.value(v, h),
        }
    }

    /// A class by its members, properties, class attributes and bases;
    /// classes of the standard library and installed distributions by name
    /// and version.
    pub fn class(&mut self, t: &Bound<'py, PyType>, h: &mut Hasher) -> HResult<()> {
        let module = type_module(t);
        let qualname = t.qualname().map(|m| m.to_string()).unwrap_or_default();
        if module == "builtins" {
            h.tag(Tag::Builtin);
            h.str(&qualname);
            return Ok(());
        }
        if let Some(lib) = self.library(&module)? {
            h.tag(Tag::Library);
            h.str(&module);
            h.str(&qualname);
            h.str(&lib);
            return Ok(());
        }
        h.tag(Tag::Class);
        if let Some(b) = self.plan.as_mut() {
            b.guards.class(t);
        }
        let obj = t.as_any();
        self.memoized(obj, h, |w, h| {
            h.str(&qualname);
            let bases = t
                .getattr(intern!(t.py(), "__bases__"))?
                .cast_into::<PyTuple>()?;
            h.u64(bases.len() as u64);
            for base in bases.iter() {
                w.class(base.cast::<PyType>()?, h)?;
            }
            let members = t
                .getattr(intern!(t.py(), "__dict__"))?
                .cast_into::<PyMappingProxy>()?;
            let mut items: Vec<(String, Bound<'py, PyAny>)> = Vec::new();
            for kv in members.items()?.iter() {
                let kv = kv.cast_into::<PyTuple>()?;
                let name: String = kv.get_item(0)?.extract()?;
                if !SKIPPED_CLASS_ATTRS.contains(&name.as_str()) {
                    items.push((name, kv.get_item(1)?));
                }
            }
            items.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, v) in items {
                let mut sub = Hasher::new();
                let id = w.next_member;
                w.next_member += 1;
                let outer = w.plan.as_mut().map(|b| b.scope.replace(id));
                w.site(&v, || format!("attribute `{name}` of class `{qualname}`"));
                let walked = w.dependency(&v, None, &mut sub);
                if let (Some(b), Some(outer)) = (w.plan.as_mut(), outer) {
                    b.scope = outer;
                }
                let digest = match walked {
                    Ok(()) => Ok(sub.finish()),
                    Err(HashError::Unhashable(msg)) => {
                        Err(format!("attribute `{name}` of class `{qualname}`: {msg}"))
                    }
                    Err(e) => return Err(e),
                };
                w.members.push(Member {
                    id,
                    class: qualname.clone(),
                    name,
                    digest,
                });
            }
            Ok(())
        })?;
        Ok(())
    }

    /// A module: the standard library and installed distributions by name
    /// and version; a local module by the attributes in `attrs` (all of them
    /// when `None`).
    fn module(
        &mut self,
        m: &Bound<'py, PyModule>,
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let name: String = m.name()?.extract()?;
        if let Some(lib) = self.library(&name)? {
            h.tag(Tag::Library);
            h.str(&name);
            h.str(&lib);
            return Ok(());
        }
        h.tag(Tag::Module);
        h.str(&name);
        let obj = m.as_any();
        self.guarded(obj, h, |w, h| {
            let dict = m.dict();
            let mut items: Vec<(String, Bound<'py, PyAny>)> = Vec::new();
            match attrs {
                Some(names) => {
                    for k in names {
                        let k = k.bind(w.py);
                        if let Some(v) = w.get(&dict, k)? {
                            items.push((k.to_str()?.to_owned(), v));
                        }
                    }
                }
                None => {
                    w.read_all(&dict);
                    for (k, v) in dict.iter() {
                        if let Ok(k) = k.extract::<String>() {
                            if !(k.starts_with("__") && k.ends_with("__")) {
                                items.push((k, v));
                            }
                        }
                    }
                }
            }
            // Nested code objects name the same attribute more than once.
            items.sort_by(|a, b| a.0.cmp(&b.0));
            items.dedup_by(|a, b| a.0 == b.0);
            h.u64(items.len() as u64);
            for (k, v) in items {
                h.tag(Tag::Name);
                h.str(&k);
                w.site(&v, || format!("`{name}.{k}`"));
                w.dependency(&v, attrs, h)
                    .map_err(|e| context(e, || format!("`{name}.{k}`")))?;
            }
            Ok(())
        })
    }
}

/// Whether `v` is, or is a tuple holding, a plan leaf (functions, classes and
/// modules name their own sites for what they hold).
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
    !scalar && is_leaf(v)
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
    !walked
        && !matches!(
            type_name(obj).as_str(),
            "method" | "staticmethod" | "classmethod" | "property"
        )
}

/// Prefixes an unhashable message with where the value was found.
pub fn context(e: HashError, what: impl FnOnce() -> String) -> HashError {
    match e {
        HashError::Unhashable(msg) if !msg.starts_with("global") && !msg.starts_with('`') => {
            HashError::Unhashable(format!("{}: {msg}", what()))
        }
        other => other,
    }
}
