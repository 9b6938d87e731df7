//! Fingerprints of what code can reach: functions (code, defaults, closure,
//! `__dict__` and annotations, globals read, modules imported in the body),
//! classes by their members, bases and metaclass, modules by the attributes
//! used, native code.
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
            None => Err(HashError::new(Kind::NativeCode(format!(
                "{module}.{qualname}"
            )))),
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
            Ok(n) => n.to_string(),
            Err(_) => String::new(),
        };
        let native::CtypesFunction::Exported(entry) = f else {
            return Err(HashError::new(Kind::CtypesPointer(name())));
        };
        h.tag(Tag::Builtin);
        h.str("ctypes");
        match entry {
            None => h.tag(Tag::None),
            Some(e) => {
                let Some(id) = native::callee(e.addr) else {
                    return Err(HashError::new(Kind::NativeCode(name())));
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
            match obj.getattr_opt(attr)? {
                Some(v) => self.value(&v, h)?,
                None => h.tag(Tag::Missing),
            }
        }
        Ok(())
    }

    /// A function's fingerprint: code, defaults, closure, `__dict__`,
    /// annotations, globals read, modules imported in its body. A library's
    /// function by name and version plus its `__dict__`: what a library
    /// decorator's wrapper holds (`__wrapped__`, a `singledispatch`
    /// registry) is the user's.
    pub fn function(&mut self, f: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        h.tag(Tag::Function);
        if let Some(b) = self.plan.as_mut() {
            b.guards.function(f);
        }
        let parts = function_parts(f.cast::<PyFunction>()?);
        let at = |e: HashError| {
            e.at(Step::Function(
                parts.qualname.extract::<String>().unwrap_or_default(),
            ))
        };
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
            self.memoized(f, h, |w, h| {
                h.tag(Tag::Library);
                h.str(&module);
                h.str(&qualname);
                h.str(&lib);
                if !own {
                    // Made at run time by the library (a decorator's wrapper,
                    // a factory's closure or lambda, an exec'd def): its code
                    // (one factory can make two lambdas with one qualname)
                    // and parameters (`times=3`, the wrapped function). A
                    // static definition is covered by the library's identity.
                    h.digest(code_info(&parts.code)?.digest);
                    w.parameters(&parts, h)?;
                }
                // Its `__dict__` holds what was set on it (`__wrapped__`, a
                // registry).
                w.function_dict(&parts, true, h)
            })
            .map_err(at)?;
            return Ok(());
        }
        self.memoized(f, h, |w, h| w.function_body(f, &parts, &globals, h))
            .map_err(at)?;
        Ok(())
    }

    /// A library-made function's parameters: the plain values (scalars,
    /// strings, tuples of them) and the callables and classes among its
    /// defaults and closure cells, in order. Other objects there (caches,
    /// registries, locks, weak maps) are the library's internal state,
    /// covered by its identity, and are skipped.
    fn parameters(&mut self, parts: &FunctionParts<'py>, h: &mut Hasher) -> HResult<()> {
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
            } else if v.is_instance_of::<PyFunction>()
                || v.is_instance_of::<PyType>()
                || v.is_exact_instance_of::<PyTuple>()
                || (v.is_instance_of::<PyCFunction>()
                    && v.getattr_opt(intern!(self.py, "__self__"))?
                        .is_none_or(|s| s.is_none() || s.is_instance_of::<PyModule>()))
            {
                self.value(&v, h)?;
            } else {
                h.tag(Tag::Missing);
            }
        }
        Ok(())
    }

    /// A function's `__dict__` (`__wrapped__`, `__signature__`, a registry,
    /// whatever was set on it): while a plan is built the dict is guarded as
    /// a whole, so setting or changing an attribute changes the key. Of a
    /// `library`'s function, the private names (`_clear_cache`: the
    /// library's bookkeeping, keyed by its version) are left out.
    fn function_dict(
        &mut self,
        parts: &FunctionParts<'py>,
        library: bool,
        h: &mut Hasher,
    ) -> HResult<()> {
        let private = |k: &Bound<'py, PyAny>| {
            library
                && k.cast::<PyString>()
                    .ok()
                    .and_then(|s| {
                        s.to_str()
                            .ok()
                            .map(|s| s.starts_with('_') && !s.starts_with("__"))
                    })
                    .unwrap_or(false)
        };
        let pairs: Vec<_> = match &parts.dict {
            Some(d) => {
                self.read_all(d);
                d.iter().filter(|(k, _)| !private(k)).collect()
            }
            None => Vec::new(),
        };
        self.attributes(parts, Tag::FunctionDict, pairs, h)
    }

    /// Name-value pairs of a function (its `__dict__` or annotations); none
    /// at all and an empty dict are the same (reading `__annotations__` or
    /// `__dict__` creates an empty one).
    fn attributes(
        &mut self,
        parts: &FunctionParts<'py>,
        tag: Tag,
        pairs: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        h: &mut Hasher,
    ) -> HResult<()> {
        if pairs.is_empty() {
            h.tag(Tag::None);
            return Ok(());
        }
        h.tag(tag);
        h.u64(pairs.len() as u64);
        for (k, v) in pairs {
            let name = k.extract::<String>().unwrap_or_default();
            self.value(&k, h)?;
            self.site(&v, || {
                vec![
                    Step::Function(parts.qualname.extract::<String>().unwrap_or_default()),
                    Step::Attribute(name.clone()),
                ]
            });
            self.value(&v, h).map_err(|e| e.at(Step::Attribute(name)))?;
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

    /// A function's annotations, the same whether still the interpreter's
    /// flat tuple or already the dict `__annotations__` made of it.
    fn annotations(&mut self, parts: &FunctionParts<'py>, h: &mut Hasher) -> HResult<()> {
        let pairs: Vec<_> = if let Some(d) = parts
            .annotations
            .as_ref()
            .and_then(|a| a.cast::<PyDict>().ok())
        {
            self.read_all(d);
            d.iter().collect()
        } else if let Some(a) = &parts.annotations {
            let flat: Vec<_> = a.try_iter()?.collect::<PyResult<_>>()?;
            flat.chunks(2)
                .filter_map(|kv| Some((kv.first()?.clone(), kv.get(1)?.clone())))
                .collect()
        } else {
            Vec::new()
        };
        // Keyed by their text, as written: `x: int` and (under `from
        // __future__ import annotations`) `x: "int"` are the same, and a
        // class named only in annotations is not what the code runs.
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((k, annotation_text(&v)?.into_any())))
            .collect::<PyResult<Vec<_>>>()?;
        self.attributes(parts, Tag::Annotations, pairs, h)
            .map_err(|e| e.at(Step::Attribute("__annotations__".to_owned())))
    }

    pub(super) fn note(&mut self, dep: Dep) {
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
            return Err(HashError::new(Kind::AssignsGlobal));
        }
        self.used.add(&info);
        self.dynamic |= info.dynamic;
        // The function itself: code, defaults and closure cells. Its own
        // digest goes into the record, so `explain` can tell an edit of this
        // function from an edit of something it reaches.
        let mut own = Hasher::new();
        own.digest(info.digest);
        let function = || Step::Function(qualname.extract::<String>().unwrap_or_default());
        self.site(&parts.defaults, || vec![function(), Step::Defaults]);
        self.value(&parts.defaults, &mut own)
            .map_err(|e| e.at(Step::Defaults))?;
        self.site(&parts.kwdefaults, || vec![function(), Step::Defaults]);
        self.value(&parts.kwdefaults, &mut own)
            .map_err(|e| e.at(Step::Defaults))?;
        if !parts.closure.is_none() {
            let cells = parts.closure.cast::<PyTuple>()?;
            own.u64(cells.len() as u64);
            for (i, cell) in cells.iter().enumerate() {
                let variable = || {
                    let names = parts.code.getattr("co_freevars").ok();
                    let name = names.and_then(|n| n.get_item(i).ok()?.extract::<String>().ok());
                    Step::Closure(name.unwrap_or_else(|| i.to_string()))
                };
                self.site(&cell, || vec![function(), variable()]);
                self.cell(&cell, &mut own).map_err(|e| e.at(variable()))?;
            }
        }
        self.function_dict(parts, false, &mut own)?;
        // Annotations are what introspection sees (a function value handed
        // to `inspect.signature`, code reading `f.__annotations__`); code
        // that nothing introspects runs the same with or without type hints.
        if self.plan.is_none() || self.annotations || self.introspects() {
            self.annotations(parts, &mut own)?;
        } else {
            self.skipped_annotations = true;
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
                self.site(&v, || vec![function(), Step::Global(name.to_owned())]);
                let keys = info.keys_of(name).filter(|_| !info.dynamic);
                match (keys, v.cast_exact::<PyDict>()) {
                    (Some(keys), Ok(d)) => self.dict_keys(d, keys, &mut sub),
                    _ => self.dependency(&v, attrs, &mut sub),
                }
                .map_err(|e| e.at(Step::Global(name.to_owned())))?;
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
                self.value(&b, h)
                    .map_err(|e| e.at(Step::Global(name.to_owned())))?;
            } else {
                h.tag(Tag::Missing);
            }
        }
        self.imports(globals, &info.imports, attrs, h)?;
        Ok(())
    }

    /// A global dict the code reads only by the constant `keys` (it never
    /// escapes: not iterated, passed on or subscripted by a variable): the
    /// items with those keys, so a key added that the code never reads does
    /// not change the key. A plan leaf (items change in place).
    fn dict_keys(
        &mut self,
        d: &Bound<'py, PyDict>,
        keys: &[Py<PyAny>],
        h: &mut Hasher,
    ) -> HResult<()> {
        if let Some(b) = self.plan.as_mut() {
            h.tag(Tag::Leaf);
            h.u64(b.leaf_keys(d.as_any(), keys) as u64);
            return Ok(());
        }
        self.items_of(d, keys, h)
    }

    /// The items of `d` with `keys` (present or not), in that order.
    pub fn items_of(
        &mut self,
        d: &Bound<'py, PyDict>,
        keys: &[Py<PyAny>],
        h: &mut Hasher,
    ) -> HResult<()> {
        h.tag(Tag::DictItems);
        h.u64(keys.len() as u64);
        for k in keys {
            let k = k.bind(self.py);
            self.value(k, h)?;
            match d.get_item(k)? {
                Some(v) => {
                    h.tag(Tag::Name);
                    self.value(&v, h)?;
                }
                None => h.tag(Tag::Missing),
            }
        }
        Ok(())
    }

    /// A global (or module attribute) a function reads: modules are walked
    /// through the attribute names the code uses.
    pub(super) fn dependency(
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
        if &*module == "builtins" {
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
            // A metaclass's members (a property read as `Model.scale`) are
            // the class's too.
            let meta = t.get_type();
            if !meta.is(t.py().get_type::<PyType>()) {
                h.tag(Tag::Metaclass);
                w.class(&meta, h)?;
            }
            let members = t
                .getattr(intern!(t.py(), "__dict__"))?
                .cast_into::<pyo3::types::PyMappingProxy>()?;
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
                w.site(&v, || {
                    vec![Step::Class(qualname.clone()), Step::Attribute(name.clone())]
                });
                let walked = w.dependency(&v, None, &mut sub);
                if let (Some(b), Some(outer)) = (w.plan.as_mut(), outer) {
                    b.scope = outer;
                }
                let digest = match walked {
                    Ok(()) => Ok(sub.finish()),
                    Err(HashError::Unhashable(u)) => Err((*u)
                        .at(Step::Attribute(name.clone()))
                        .at(Step::Class(qualname.clone()))),
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
            if let Some(attrs) = attrs {
                self.patches(m, &name, attrs, h)?;
            }
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
                w.site(&v, || {
                    vec![Step::Module(name.clone()), Step::Attribute(k.clone())]
                });
                w.dependency(&v, attrs, h).map_err(|e| {
                    e.at(Step::Attribute(k.clone()))
                        .at(Step::Module(name.clone()))
                })?;
            }
            Ok(())
        })
    }
}

/// An annotation as text: a string as written, a class by its qualified
/// name, anything else (`list[int]`, `typing.Optional[int]`) by its repr
/// without the `typing.` prefixes.
fn annotation_text<'py>(v: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let py = v.py();
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(s.clone());
    }
    if let Ok(t) = v.cast::<PyType>() {
        return t.qualname();
    }
    let text = v.repr()?.to_str()?.replace("typing.", "");
    Ok(PyString::new(py, &text))
}
