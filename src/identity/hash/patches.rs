//! Monkeypatches: what the user's code put into library modules.
//!
//! A library is keyed by what is installed, never walked. But its modules
//! are objects a program changes at run time (`math.sqrt = ...`, a test's
//! `monkeypatch.setattr(lib, "f", fake)`), so a library's key also covers:
//!
//! * the attributes the user's code names (`np.mean` names `mean`). One the
//!   library defined under that name (a function, builtin or class of the
//!   same top-level package with that `__name__`, an instance of one of its
//!   own types) keys as the library: nothing more. Anything else found
//!   there (a user function, a lambda, a partial, a mock, another library's
//!   function, a constant) is walked like the user's code and values. The
//!   plan's guards hold each attribute read, so a later `setattr`
//!   invalidates it.
//! * what library code reaches internally (`pd.read_csv` calling a patched
//!   `pandas.io.common.get_handle`): the values of the user's making (their
//!   functions, classes and instances, mocks, and methods and partials of
//!   those) found in any loaded module of the library's *unit* (its
//!   distribution; for the standard library, a collection of libraries, the
//!   top-level package). One scan per unit and process, redone only when one
//!   of its module dicts changes (the guards); checked on every call.
//!
//! Unpatched, both add nothing: a library module that is not loaded keys
//! the same as one that is. Not seen: a library's own object moved to
//! another of its attributes when only library code reaches it, constants
//! changed that only library code reads, and class attributes of library
//! classes. `sys` and `builtins` hold the interpreter's state (registries,
//! streams, hooks) and are never keyed by value; patched builtins are seen
//! through each function's builtins.
use std::sync::OnceLock;

use super::known_libraries;
use super::*;
use crate::cpython::function::function_globals;
use crate::cpython::{dict, GilCell};
use crate::identity::guard::{self, Guards};
use crate::identity::layout;

/// Modules that are no library unit's.
const INTERPRETER: &[&str] = &["sys", "builtins"];

/// A library unit (see the module docs) and its latest scan.
pub struct Unit {
    pub name: String,
    /// One of its modules, to find the others by.
    module: String,
    /// Read on every call of a plan that reaches the unit: a `GilCell`,
    /// not a lock (two atomic operations were a fifth of a warm hit).
    scan: GilCell<Option<Arc<Scan>>>,
}

/// The values of the user's making in a unit's modules.
struct Scan {
    /// Hold while no module dict of the unit changed.
    guards: Guards,
    /// (module, attribute, value), sorted.
    foreign: Vec<(String, String, Py<PyAny>)>,
}

/// Unit name -> unit.
static UNITS: PyOnceLock<Mutex<AHashMap<String, Arc<Unit>>>> = PyOnceLock::new();

/// Object address -> whether it is of the user's making, for the globals
/// dicts and classes met in scans (each kept alive, so no address is
/// reused while it is a key).
static MADE_BY_USER: PyOnceLock<Mutex<Verdicts>> = PyOnceLock::new();

/// Address -> (the object, kept alive; the verdict).
type Verdicts = AHashMap<usize, (Py<PyAny>, bool)>;

/// Type pointers of the holders a patch is made of: methods, static and
/// class methods (their function and object), partials (function and
/// arguments), `lru_cache` wrappers (the function).
struct Holders {
    method: usize,
    staticmethod: usize,
    classmethod: usize,
    partial: usize,
    lru_wrapper: usize,
}

impl Holders {
    /// Whether the type at `tp` is one of them.
    fn any(&self, tp: usize) -> bool {
        [
            self.method,
            self.staticmethod,
            self.classmethod,
            self.partial,
            self.lru_wrapper,
        ]
        .contains(&tp)
    }
}

static HOLDERS: OnceLock<Holders> = OnceLock::new();

fn holders(py: Python<'_>) -> PyResult<&'static Holders> {
    if let Some(h) = HOLDERS.get() {
        return Ok(h);
    }
    let functools = py.import("functools")?;
    let builtins = py.import("builtins")?;
    let ptr = |m: &Bound<'_, PyModule>, name: &str| -> PyResult<usize> {
        Ok(m.getattr(name)?.as_ptr() as usize)
    };
    let h = Holders {
        method: ptr(&py.import("types")?, "MethodType")?,
        staticmethod: ptr(&builtins, "staticmethod")?,
        classmethod: ptr(&builtins, "classmethod")?,
        partial: ptr(&functools, "partial")?,
        lru_wrapper: ptr(&functools, "_lru_cache_wrapper")?,
    };
    Ok(HOLDERS.get_or_init(|| h))
}

/// The unit of library module `module` classified as `lib`: its
/// distribution, or its top-level package for the standard library.
pub(super) fn unit_of(py: Python<'_>, module: &str, lib: &str) -> Option<Arc<Unit>> {
    if INTERPRETER.contains(&module) {
        return None;
    }
    let top = module.split('.').next().unwrap_or(module);
    let name = if lib.starts_with("python-") {
        format!("{lib}:{top}")
    } else {
        lib.to_owned()
    };
    let units = UNITS.get_or_init(py, || Mutex::new(AHashMap::new()));
    let mut units = units.lock().ok()?;
    let unit = units.entry(name.clone()).or_insert_with(|| {
        Arc::new(Unit {
            name,
            module: module.to_owned(),
            scan: GilCell::new(None),
        })
    });
    Some(unit.clone())
}

/// Whether every unit in `units` has a current scan that found nothing of
/// the user's: the common case, answered without a walker.
/// False also when a module dict of a unit changed since its scan: the
/// walker's `fold_units` then checks the scan's entries (or scans again).
pub fn clean(py: Python<'_>, units: &[Arc<Unit>]) -> bool {
    units.iter().all(|u| {
        // SAFETY: reads Rust data and compares stamps and pointers
        // (`unchanged_unrooted` runs no Python code).
        unsafe {
            u.scan.with(py, |s| {
                s.as_ref()
                    .is_some_and(|s| s.foreign.is_empty() && s.guards.unchanged_unrooted(py))
            })
        }
    })
}

/// A mock (`unittest.mock`) is not hashed: it makes up attributes and state
/// for whatever is asked of it, so a walk of it never ends. The call runs
/// normally while a library attribute is a mock.
fn refuse_mock(v: &Bound<'_, PyAny>, what: impl FnOnce() -> String) -> HResult<()> {
    let mock = v.get_type().mro().iter().any(|t| {
        t.cast::<PyType>()
            .is_ok_and(|t| &*type_module(t) == "unittest.mock")
    });
    if mock {
        return Err(HashError::new(Kind::Mock(type_name(v))).at(Step::Attribute(what())));
    }
    Ok(())
}

/// A value that cannot be inspected (an exception raised looking at it) is
/// taken to be of the user's making.
fn taken_for_foreign(r: HResult<bool>) -> HResult<bool> {
    match r {
        Err(HashError::Unhashable(u)) if matches!(u.kind, Kind::Raised { .. }) => Ok(true),
        other => other,
    }
}

/// Errors while looking at a library's modules, located there (an
/// exception became "unhashable": the key cannot be computed, the call runs;
/// an interrupt passes through).
fn unhashable(e: HashError, what: impl FnOnce() -> String) -> HashError {
    e.at(Step::Attribute(what()))
}

impl<'py> Walker<'py> {
    /// The attributes in `attrs` of library module `m` (named `name`) that
    /// the library did not define there, walked; returns whether there were
    /// any (nothing is written when there are none).
    pub(super) fn patches(
        &mut self,
        m: &Bound<'py, PyModule>,
        name: &str,
        attrs: &[Py<PyString>],
        h: &mut Hasher,
    ) -> HResult<bool> {
        if INTERPRETER.contains(&name) {
            return Ok(false);
        }
        let memo_key = (m.as_ptr() as usize, attrs.as_ptr() as usize);
        if let Some(d) = self.patched.get(&memo_key) {
            if let Some(d) = d {
                h.tag(Tag::Patched);
                h.digest(*d);
            }
            return Ok(d.is_some());
        }
        self.patched.insert(memo_key, None); // a cycle back here adds nothing
        let top = name.split('.').next().unwrap_or(name).to_owned();
        let dict = m.dict();
        let mut sub = Hasher::new();
        let mut any = false;
        let mut names: Vec<&Py<PyString>> = attrs.iter().collect();
        names.sort_by_cached_key(|n| {
            n.bind(self.py)
                .to_str()
                .map(str::to_owned)
                .unwrap_or_default()
        });
        names.dedup_by(|a, b| a.as_ptr() == b.as_ptr());
        for k in names {
            let k = k.bind(self.py);
            let Some(v) = self.get(&dict, k)? else {
                continue;
            };
            let key = k.to_str()?;
            let mut one = Hasher::new();
            if let Ok(module) = v.cast::<PyModule>() {
                let module_name: String = module.name()?.extract()?;
                if self.library(&module_name)?.is_some() {
                    // A library's module: its own patches, if any.
                    if !self.patches(module, &module_name, attrs, &mut one)? {
                        continue;
                    }
                } else {
                    self.module(module, Some(attrs), &mut one)?;
                }
            } else if self
                .owned(&v, key, &top)
                .map_err(|e| unhashable(e, || format!("`{name}.{key}`")))?
            {
                continue;
            } else {
                refuse_mock(&v, || format!("`{name}.{key}`"))?;
                self.site(&v, || {
                    vec![
                        Step::Module(name.to_owned()),
                        Step::Attribute(key.to_owned()),
                    ]
                });
                self.dependency(&v, Some(attrs), &mut one).map_err(|e| {
                    e.at(Step::Attribute(key.to_owned()))
                        .at(Step::Module(name.to_owned()))
                })?;
            }
            any = true;
            sub.tag(Tag::Name);
            sub.str(key);
            sub.digest(one.finish());
        }
        let d = any.then(|| sub.finish());
        self.patched.insert(memo_key, d);
        if let Some(d) = d {
            h.tag(Tag::Patched);
            h.digest(d);
        }
        Ok(any)
    }

    /// Whether `v`, found at attribute `key` of a module of top-level
    /// package `top`, is what that library defined there.
    fn owned(&mut self, v: &Bound<'py, PyAny>, key: &str, top: &str) -> HResult<bool> {
        let py = self.py;
        let same_top = |module: &str| module.split('.').next() == Some(top);
        let named = |v: &Bound<'py, PyAny>| -> PyResult<bool> {
            Ok(v.getattr_opt(intern!(py, "__name__"))?
                .is_some_and(|n| n.extract::<String>().is_ok_and(|n| n == key)))
        };
        // A method of an interpreter-wide generator (`random.shuffle` is
        // `random._inst.shuffle`, `np.random.rand` the legacy `_rand`'s): the
        // library's own. The generator's state is not part of a key: a miss
        // observes whether it drew from it, keys the state it started from
        // and replays the state it left (`_observe`, `_deps`).
        if let Some(owner) = v.getattr_opt(intern!(py, "__self__"))? {
            if is_global_generator(&owner)? {
                return Ok(true);
            }
        }
        if let Ok(f) = v.cast::<PyFunction>() {
            let globals = function_globals(f);
            let module = globals
                .cast::<PyDict>()
                .ok()
                .and_then(|g| g.get_item(intern!(py, "__name__")).ok().flatten())
                .and_then(|n| n.extract::<String>().ok())
                .unwrap_or_default();
            return Ok(same_top(&module) && self.library(&module)?.is_some() && named(v)?);
        }
        if is_cython_function(v) {
            let module = type_attr_module(v)?;
            return Ok(same_top(&module) && self.library(&module)?.is_some() && named(v)?);
        }
        if v.is_instance_of::<PyCFunction>() {
            let owner = v.getattr_opt(intern!(py, "__self__"))?;
            let module = match owner {
                Some(o) if o.is_instance_of::<PyModule>() => {
                    o.cast_into::<PyModule>()?.name()?.extract()?
                }
                Some(o) if !o.is_none() => return Ok(false), // a bound method: walked
                _ => type_attr_module(v)?,
            };
            return Ok(same_top(&module) && self.library(&module)?.is_some() && named(v)?);
        }
        if let Ok(t) = v.cast::<PyType>() {
            let module = type_module(t);
            return Ok(same_top(&module) && self.library(&module)?.is_some() && named(v)?);
        }
        if is_plain(v) || v.is_instance_of::<PyModule>() {
            return Ok(false);
        }
        // An instance: of one of the library's own types (a ufunc, a
        // dispatcher, `os.environ`, an enum member), and, if callable,
        // named like the attribute (`np.abs` is `absolute`: walked, cheaply).
        let t = v.get_type();
        let module = type_module(&t);
        Ok(
            same_top(&module)
                && self.library(&module)?.is_some()
                && (!v.is_callable() || named(v)?),
        )
    }

    /// Folds in the values of the user's making found in the library units
    /// reached by this walk (and by the plan it completes).
    pub fn fold_units(&mut self, h: &mut Hasher) -> HResult<()> {
        let base = self.base.clone();
        let own = std::mem::take(&mut self.units);
        let mut units: Vec<&Arc<Unit>> = base.iter().flat_map(|b| b.units.iter()).collect();
        if !own.is_empty() {
            units.extend(own.iter());
            units.sort_unstable_by(|a, b| a.name.cmp(&b.name));
            units.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        for unit in units {
            let scan = self
                .scan(unit)
                .map_err(|e| unhashable(e, || format!("library {}", unit.name)))?;
            if scan.foreign.is_empty() {
                continue;
            }
            let mut sub = Hasher::new();
            for (module, key, v) in &scan.foreign {
                let v = v.bind(self.py);
                refuse_mock(v, || format!("`{module}.{key}`"))?;
                let mut one = Hasher::new();
                self.value(v, &mut one).map_err(|e| {
                    e.at(Step::Attribute(key.to_string()))
                        .at(Step::Module(module.to_string()))
                })?;
                let d = one.finish();
                sub.str(module);
                sub.str(key);
                sub.digest(d);
                self.note(Dep {
                    kind: "patch",
                    name: format!("{module}.{key}"),
                    display: None,
                    digest: d,
                    leaf: None,
                });
            }
            h.tag(Tag::Patched);
            h.str(&unit.name);
            h.digest(sub.finish());
        }
        Ok(())
    }

    /// The current scan of `unit`: the latest, while its guards hold.
    fn scan(&mut self, unit: &Unit) -> HResult<Arc<Scan>> {
        let py = self.py;
        // SAFETY: cloning an `Arc` runs no Python code.
        let latest = unsafe { unit.scan.with(py, |s| s.clone()) };
        if let Some(s) = latest {
            if s.guards.hold_unrooted(py) {
                return Ok(s);
            }
        }
        // Python's strings, as `sys.modules` keys them (their hashes made).
        let names = self
            .support()?
            .call_method1(intern!(py, "unit_modules"), (unit.module.as_str(),))?
            .extract::<Vec<Bound<'py, PyString>>>()?;
        // They are all the library the unit's module is: known without
        // asking `_modkind` about each again.
        if let Some(lib) = self.library(&unit.module)? {
            let names: Vec<&str> = names.iter().map(|n| n.to_str()).collect::<PyResult<_>>()?;
            known_libraries(py, &names, &lib);
        }
        let modules = loaded_modules(py)?;
        let mut builder = guard::Builder::default();
        let mut foreign = Vec::new();
        // Type addresses whose instances `native_instance` found no user's:
        // most of a library's values are instances of a few (numpy's 4,000
        // attributes are half ufuncs and dispatchers).
        let mut native: AHashSet<usize> = AHashSet::new();
        let kinds = holders(py)?;
        layout::prepare(py)?; // `class_statement` runs no Python code from here
        for name in names {
            let Some(m) = modules.get_item(&name)? else {
                continue;
            };
            let Ok(m) = m.cast_into::<PyModule>() else {
                continue;
            };
            let name = name.to_str()?;
            // (`modules_under`, just before, asked for each dict and table.)
            let dict = m.dict();
            builder.read_all(&dict);
            // What the values' types (and functions' globals) decide, without
            // a reference to each: native instances, functions defined in
            // this module, the module's own dunders.
            // SAFETY: the selection reads type pointers, slots and flags, a
            // function's globals pointer and a key's text, and updates a
            // Rust set (`holders` and the class-statement probe are made
            // above): no Python code runs.
            let undecided = unsafe {
                dict::items_where(&dict, |k, v| {
                    let tp = v.get_type_ptr() as usize;
                    if native.contains(&tp) {
                        return false;
                    }
                    if let Ok(f) = v.cast::<PyFunction>() {
                        if function_globals(f).is(&dict) {
                            return false; // defined in this library module
                        }
                    } else if native_instance(kinds, v).unwrap_or(false) {
                        native.insert(tp);
                        return false;
                    }
                    // A key that is not a `str` names no attribute: passed
                    // over. One whose text cannot be read is left to the walk
                    // (an error).
                    let Ok(k) = k.cast::<PyString>() else {
                        return false;
                    };
                    !k.to_str()
                        .is_ok_and(|k| k.starts_with("__") && k.ends_with("__"))
                })
            };
            // Looking at these may run code that changes the dict: each is
            // held.
            for (k, v) in undecided {
                let key = k.cast::<PyString>()?.to_str()?;
                if taken_for_foreign(self.foreign(&v, &dict, name, 0))? {
                    foreign.push((name.to_owned(), key.to_owned(), v.unbind()));
                }
            }
        }
        foreign.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let s = Arc::new(Scan {
            guards: builder.finish(),
            foreign,
        });
        // The replaced scan is dropped outside the cell (its references'
        // deallocation can run Python code).
        // SAFETY: a swap runs no Python code.
        let old = unsafe { unit.scan.with(py, |slot| slot.replace(s.clone())) };
        drop(old);
        Ok(s)
    }

    /// Whether `v`, found in library module `module` (whose dict is
    /// `dict`), is of the user's making (see [`taken_for_foreign`]).
    fn foreign(
        &mut self,
        v: &Bound<'py, PyAny>,
        dict: &Bound<'py, PyDict>,
        module: &str,
        depth: u32,
    ) -> HResult<bool> {
        let py = self.py;
        if depth > 4 || is_plain(v) {
            return Ok(false);
        }
        if let Ok(f) = v.cast::<PyFunction>() {
            let globals = function_globals(f);
            if globals.is(dict) {
                return Ok(false); // defined in this library module
            }
            return self.cached(&globals, |w| {
                let name = globals
                    .cast::<PyDict>()
                    .ok()
                    .and_then(|g| g.get_item(intern!(py, "__name__")).ok().flatten())
                    .and_then(|n| n.extract::<String>().ok());
                Ok(match name {
                    Some(m) => w.library(&m)?.is_none(),
                    None => true, // exec'd with fresh globals (a mock's signature copy)
                })
            });
        }
        if let Ok(t) = v.cast::<PyType>() {
            // A class of the user's, unless defined in this library module.
            return self.foreign_type(t, module);
        }
        let t = v.get_type();
        let tp = t.as_ptr() as usize;
        let kinds = holders(py)?;
        let held: Vec<Bound<'py, PyAny>> =
            if tp == kinds.method || tp == kinds.staticmethod || tp == kinds.classmethod {
                let mut held = Vec::new();
                for a in [intern!(py, "__func__"), intern!(py, "__self__")] {
                    held.extend(v.getattr_opt(a)?);
                }
                held
            } else if tp == kinds.partial {
                let mut held = vec![v.getattr(intern!(py, "func"))?];
                held.extend(
                    v.getattr(intern!(py, "args"))?
                        .cast_into::<PyTuple>()?
                        .iter(),
                );
                if let Ok(kw) = v.getattr(intern!(py, "keywords"))?.cast_into::<PyDict>() {
                    held.extend(kw.values().iter());
                }
                held
            } else if tp == kinds.lru_wrapper {
                v.getattr_opt(intern!(py, "__wrapped__"))?
                    .into_iter()
                    .collect()
            } else if !layout::class_statement(&t)? || v.is_instance_of::<PyModule>() {
                // Native code (builtins, an extension's objects such as
                // ufuncs) and modules: no user's patch. (The common case:
                // decided by the type's deallocator, no subclass check.)
                return Ok(false);
            } else {
                // An instance of a user's class, unless made where its class
                // is defined (`unittest.mock.ANY`, an enum member): then the
                // library's own.
                return self.foreign_type(&t, module);
            };
        for item in held {
            if taken_for_foreign(self.foreign(&item, dict, module, depth + 1))? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether class `t`, or an instance of it, found in library module
    /// `module` is of the user's making: a class of the user's not defined in
    /// `module` itself. Most of a library's classes are defined where they
    /// are found, which its name tells without classifying anything.
    /// A class decided before (a library's, as most, or a `TypeVar` met 200
    /// times) is answered without reading its name.
    fn foreign_type(&mut self, t: &Bound<'py, PyType>, module: &str) -> HResult<bool> {
        if !layout::class_statement(t)?
            || verdict(t.as_any()) == Some(false)
            || &*type_module(t) == module
        {
            return Ok(false);
        }
        self.user_type(t)
    }

    /// A class of the user's: made by a `class` statement in a loaded module
    /// of the user's (or a mock's: whatever a mock is, the user made it). A
    /// class naming no loaded module, or Cython's shim module
    /// (`_cython_3_2_4`, made by an extension), is no user's.
    fn user_type(&mut self, t: &Bound<'py, PyType>) -> HResult<bool> {
        let py = self.py;
        // Native types (built in, or an extension's) are no user's: they
        // need neither the cache nor their module classified.
        if !layout::class_statement(t)? {
            return Ok(false);
        }
        self.cached(t.as_any(), |w| {
            let module = type_module(t);
            if &*module == "unittest.mock" {
                return Ok(true);
            }
            // Cython's shim module (`_cython_3_2_4`, made by an extension).
            if module.starts_with("_cython_") {
                return Ok(false);
            }
            // Not loaded (a library's lazy submodule): no user's, and not
            // worth classifying.
            if !loaded_modules(py)?.contains(&*module)? {
                return Ok(false);
            }
            Ok(w.library(&module)?.is_none())
        })
    }

    /// `f()`, cached per process for `obj` (kept alive).
    fn cached(
        &mut self,
        obj: &Bound<'py, PyAny>,
        f: impl FnOnce(&mut Self) -> HResult<bool>,
    ) -> HResult<bool> {
        if let Some(b) = verdict(obj) {
            return Ok(b);
        }
        let b = f(self)?;
        let entry = (obj.clone().unbind(), b);
        let cache = MADE_BY_USER.get_or_init(self.py, || Mutex::new(AHashMap::new()));
        // A replaced entry is dropped after the lock is released.
        let old = cache
            .lock()
            .ok()
            .and_then(|mut c| c.insert(obj.as_ptr() as usize, entry));
        drop(old);
        Ok(b)
    }
}

/// What [`Walker::cached`] found for `obj` in this process, if it looked.
fn verdict(obj: &Bound<'_, PyAny>) -> Option<bool> {
    let cache = MADE_BY_USER.get_or_init(obj.py(), || Mutex::new(AHashMap::new()));
    let key = obj.as_ptr() as usize;
    cache.lock().ok().and_then(|c| c.get(&key).map(|e| e.1))
}

/// Whether `v` is an instance of a native type (built in, or an
/// extension's) that holds nothing `foreign` looks into: neither a function,
/// a class, nor a method, partial or `lru_cache` wrapper. Such a value is no
/// user's, nor is any other instance of its type (the answer depends on the
/// type alone). Runs no Python code once the class-statement probe is made.
fn native_instance(kinds: &Holders, v: &Bound<'_, PyAny>) -> PyResult<bool> {
    if v.is_instance_of::<PyFunction>() || v.is_instance_of::<PyType>() {
        return Ok(false);
    }
    let t = v.get_type();
    if kinds.any(t.as_ptr() as usize) {
        return Ok(false);
    }
    Ok(!layout::class_statement(&t)?)
}

fn type_attr_module(v: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(match v.getattr_opt(intern!(v.py(), "__module__"))? {
        Some(m) if !m.is_none() => m.extract().unwrap_or_default(),
        _ => String::new(),
    })
}

fn is_plain(v: &Bound<'_, PyAny>) -> bool {
    v.is_none()
        || v.is_exact_instance_of::<PyBool>()
        || v.is_exact_instance_of::<PyInt>()
        || v.is_exact_instance_of::<PyFloat>()
        || v.is_exact_instance_of::<PyString>()
        || v.is_exact_instance_of::<PyBytes>()
        || v.is_exact_instance_of::<PyTuple>()
        || v.is_exact_instance_of::<PyList>()
        || v.is_exact_instance_of::<PyDict>()
        || v.is_exact_instance_of::<PySet>()
        || v.is_exact_instance_of::<PyFrozenSet>()
}

/// `random`'s or numpy's interpreter-wide generator (`random._inst`,
/// `numpy.random.mtrand._rand`), whose use a miss observes.
fn is_global_generator(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = obj.py();
    let modules = py.import("sys")?.getattr("modules")?;
    for (module, attr) in [("random", "_inst"), ("numpy.random.mtrand", "_rand")] {
        if let Ok(m) = modules.get_item(module) {
            if m.getattr_opt(attr)?.is_some_and(|g| g.is(obj)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
