//! Fingerprints of what code can reach: functions (code, defaults, closure,
//! globals read, modules imported in the body, `__wrapped__`), classes by
//! their members and bases, modules by the attributes used, native code.
use super::*;

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

impl<'py> Walker<'py> {
    /// Native code (builtins, C-extension and Cython functions): from the
    /// standard library or an installed distribution by name and version;
    /// from the user's own code by the code loaded in this process
    /// (`native`). Bound to an object (`[].append`): that object too.
    pub(super) fn builtin_function(
        &mut self,
        obj: &Bound<'py, PyAny>,
        h: &mut Hasher,
    ) -> HResult<()> {
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
        if let Some(lib) = self.reach_library(&module)? {
            h.str(&lib);
            return Ok(());
        }
        // The user's own code: the function's machine code where a walk can
        // bound it, its whole loaded object otherwise (`native`).
        if let Some(entry) = native::entry(obj) {
            if let Some(id) = native::callee(entry.addr) {
                h.i64(entry.flags);
                h.digest(id.digest);
                return Ok(());
            }
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
            .and_then(|f| native::loaded_object(&f))
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

    /// A ctypes function pointer: a library's exported function by its
    /// code (`native`) and how ctypes calls it (flags, argument and result
    /// types, `errcheck`). Any other pointer cannot be keyed: its address
    /// says nothing of the code there in another process, or after the
    /// callback it wrapped was freed.
    pub(super) fn ctypes_function(
        &mut self,
        obj: &Bound<'py, PyAny>,
        f: native::CtypesFunction,
        h: &mut Hasher,
    ) -> HResult<()> {
        let py = obj.py();
        let name = || match obj.getattr(intern!(py, "__name__")) {
            Ok(n) => format!("ctypes function `{n}`"),
            Err(_) => "a ctypes function pointer".to_owned(),
        };
        let native::CtypesFunction::Exported(entry) = f else {
            return Err(HashError::Unhashable(format!(
                "{}: only a library's function as a `ctypes.CDLL` gives it \
                 (`lib.name`) can be keyed by its code",
                name()
            )));
        };
        h.tag(Tag::Builtin);
        h.str("ctypes");
        match entry {
            None => h.tag(Tag::None),
            Some(e) => {
                let Some(id) = native::callee(e.addr) else {
                    return Err(HashError::Unhashable(format!(
                        "{}: no loaded object holds its code",
                        name()
                    )));
                };
                h.i64(e.flags);
                h.digest(id.digest);
            }
        }
        for attr in [
            intern!(py, "argtypes"),
            intern!(py, "restype"),
            intern!(py, "errcheck"),
        ] {
            let v = obj.getattr_opt(attr)?;
            match v {
                Some(v) => self.value(&v, h)?,
                None => h.tag(Tag::Missing),
            }
        }
        Ok(())
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
        if let Some(lib) = self.reach_library(&module)? {
            let qualname = parts.qualname.extract::<String>()?;
            // The library's own definition: its identity covers it. A
            // function a library made at run time (a lambda, a closure, an
            // exec'd def) is what its code, defaults and cells are: walked
            // below like the user's.
            let own = self.defines(&globals, &qualname, f)?;
            let wrapper = !own
                && parts
                    .dict
                    .as_ref()
                    .is_some_and(|d| d.contains(intern!(self.py, "__wrapped__")).unwrap_or(false));
            if own || wrapper {
                h.tag(Tag::Library);
                h.str(&module);
                h.str(&qualname);
                h.str(&lib);
                h.digest(code_info(&parts.code)?.digest);
                if wrapper {
                    // A library decorator's wrapper (bytecache.memoize,
                    // functools.wraps): the library's code applied to what it
                    // wraps, with the decorator's plain parameters (`times=3`);
                    // its other cells are the decorator's internals (caches,
                    // locks), not what the wrapped call computes.
                    self.plain_parts(&parts, h)?;
                }
                return self.wrapped(f, h);
            }
        }
        self.memoized(f, h, |w, h| w.function_body(f, &parts, &globals, h))?;
        Ok(())
    }

    /// The plain values (scalars, strings, tuples of them) among a
    /// function's defaults and closure cells, in order; others are skipped.
    fn plain_parts(&mut self, parts: &FunctionParts<'py>, h: &mut Hasher) -> HResult<()> {
        let mut items: Vec<Bound<'py, PyAny>> = Vec::new();
        for d in [&parts.defaults, &parts.kwdefaults] {
            if let Ok(t) = d.cast::<PyTuple>() {
                items.extend(t.iter());
            } else if let Ok(m) = d.cast::<PyDict>() {
                items.extend(m.values().iter());
            }
        }
        if let Ok(cells) = parts.closure.cast::<PyTuple>() {
            for cell in cells.iter() {
                if let Ok(v) = cell.getattr(intern!(self.py, "cell_contents")) {
                    items.push(v);
                }
            }
        }
        for v in items {
            let mut sub = Hasher::new();
            if try_plain(&v, &mut sub)? {
                h.digest(sub.finish());
            }
        }
        Ok(())
    }

    /// Whether `f` is what `qualname` names in the module whose globals are
    /// `globals` (a static definition, not one made at run time).
    fn defines(
        &mut self,
        globals: &Bound<'py, PyDict>,
        qualname: &str,
        f: &Bound<'py, PyAny>,
    ) -> PyResult<bool> {
        if qualname.contains('<') {
            return Ok(false);
        }
        let mut parts = qualname.split('.');
        let Some(first) = parts.next() else {
            return Ok(false);
        };
        let key = PyString::intern(self.py, first);
        let Some(mut obj) = self.get(globals, &key)? else {
            return Ok(false);
        };
        for part in parts {
            let Ok(t) = obj.cast::<PyType>() else {
                return Ok(false);
            };
            let Some(member) = t.getattr(intern!(self.py, "__dict__"))?.get_item(part).ok() else {
                return Ok(false);
            };
            obj = match member.getattr_opt(intern!(self.py, "__func__"))? {
                Some(inner) if !member.is_instance_of::<PyFunction>() => inner,
                _ => member,
            };
        }
        Ok(obj.is(f))
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
    pub(super) fn wrapped(&mut self, f: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
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
        if let Some(lib) = self.reach_library(&module)? {
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
    pub(super) fn module(
        &mut self,
        m: &Bound<'py, PyModule>,
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let name: String = m.name()?.extract()?;
        if let Some(lib) = self.reach_library(&name)? {
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
