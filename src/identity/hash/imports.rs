//! Modules imported inside a function body, keyed without importing them.
//!
//! A module that is loaded is keyed like any module the code reads (a
//! library by its installed identity, the user's module by the attributes
//! used). One that is not loaded yet is keyed by what importing it would
//! run, found without running it: a library by its installed identity (the
//! same bytes as the loaded, unpatched library, so the call that imports it
//! keys the same before and after); the user's module by its *static
//! closure*: the code compiled from its file (not executed), the code of
//! its parent packages that are not loaded either, and, recursively, the
//! modules that code imports. An edit to any of those files changes the key.
//! What top-level code reads at run time (files, the environment) is seen as
//! for any call: files through the record of the miss that imports it, the
//! environment when its code names it.
//!
//! Source files have no guard, so a plan holding a static closure is never
//! reused: it is walked again on the next call (the closure's compiled code
//! is cached by file size and modification time).
use super::*;
use crate::identity::code::Import;

impl<'py> Walker<'py> {
    /// The `import` statements of a function whose globals are `globals`;
    /// `attrs`: the attribute names its code uses.
    pub(super) fn imports(
        &mut self,
        globals: &Bound<'py, PyDict>,
        imports: &[Import],
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let py = self.py;
        for imp in imports {
            h.tag(Tag::Module);
            if imp.level > 0 {
                // Resolved against the importing module's package.
                for key in [
                    intern!(py, "__package__"),
                    intern!(py, "__spec__"),
                    intern!(py, "__name__"),
                ] {
                    self.get(globals, key)?;
                }
            }
            let resolved = self
                .support()?
                .call_method1(
                    intern!(py, "resolve"),
                    (globals, imp.level, imp.name.as_str()),
                )?
                .extract::<Option<String>>()?;
            let Some(name) = resolved else {
                // The call raises ImportError (beyond the top-level package).
                h.tag(Tag::Missing);
                h.u64(u64::from(imp.level));
                h.str(&imp.name);
                continue;
            };
            self.import(&name, attrs, h)?;
            self.submodules(&name, &imp.fromlist, attrs, h)?;
        }
        Ok(())
    }

    /// `from name import a, b`: each of `a`, `b` that is not an attribute of
    /// the (loaded) module `name` is its submodule, imported by the statement.
    fn submodules(
        &mut self,
        name: &str,
        fromlist: &[String],
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let py = self.py;
        let package = self.loaded(name)?;
        for item in fromlist.iter().filter(|f| f.as_str() != "*") {
            if let Some(m) = &package {
                if let Ok(dict) = m.getattr(intern!(py, "__dict__"))?.cast_into::<PyDict>() {
                    if self.get(&dict, &PyString::intern(py, item))?.is_some() {
                        continue; // an attribute: walked with the module
                    }
                }
            }
            let sub = format!("{name}.{item}");
            if self.loaded(&sub)?.is_some()
                || self.library(&sub)?.is_some()
                || self.locatable(&sub)?
            {
                h.tag(Tag::Name);
                h.str(item);
                self.import(&sub, attrs, h)?;
            }
        }
        Ok(())
    }

    /// The module `name` as an `import` in code using `attrs` binds it.
    fn import(
        &mut self,
        name: &str,
        attrs: Option<&[Py<PyString>]>,
        h: &mut Hasher,
    ) -> HResult<()> {
        match self.loaded(name)? {
            Some(m) => match m.cast::<PyModule>() {
                Ok(m) => self.module(m, attrs, h),
                Err(_) => self.value(&m, h), // `sys.modules` may hold anything
            },
            None => self.unloaded(name, h),
        }
    }

    /// `sys.modules[name]` (noted in the plan), or `None` when it is not
    /// loaded, or when this walk keys it as not loaded (the view of the key
    /// computed before a call that imported it).
    fn loaded(&mut self, name: &str) -> HResult<Option<Bound<'py, PyAny>>> {
        if self.view.as_ref().is_some_and(|v| v.contains(name)) {
            return Ok(None);
        }
        let modules = loaded_modules(self.py)?;
        Ok(self.get(&modules, &PyString::intern(self.py, name))?)
    }

    fn locatable(&self, name: &str) -> HResult<bool> {
        let spec = self
            .support()?
            .call_method1(intern!(self.py, "locate"), (name,))?;
        Ok(!spec.is_none())
    }

    /// A module that is not loaded: a library by its installed identity,
    /// the user's module by its static closure.
    fn unloaded(&mut self, name: &str, h: &mut Hasher) -> HResult<()> {
        if !self.unloaded.iter().any(|n| n == name) {
            self.unloaded.push(name.to_owned());
        }
        if let Some(lib) = self.library(name)? {
            h.tag(Tag::Library);
            h.str(name);
            h.str(&lib);
            return Ok(());
        }
        h.tag(Tag::Module);
        h.str(name);
        h.tag(Tag::Unloaded);
        if let Some(b) = self.plan.as_mut() {
            b.guards.uncacheable = true; // source files have no guard
        }
        let mut seen = AHashSet::new();
        self.static_module(name, &mut seen, h)
    }

    /// What importing the user's module `name` runs: its parent packages
    /// not loaded yet, its compiled code, and what that code imports.
    fn static_module(
        &mut self,
        name: &str,
        seen: &mut AHashSet<String>,
        h: &mut Hasher,
    ) -> HResult<()> {
        if !seen.insert(name.to_owned()) {
            h.tag(Tag::BackRef);
            h.str(name);
            return Ok(());
        }
        if let Some((parent, _)) = name.rsplit_once('.') {
            if self.loaded(parent)?.is_none() && self.library(parent)?.is_none() {
                self.static_module(parent, seen, h)?;
            }
        }
        let found = self
            .support()?
            .call_method1(intern!(self.py, "unloaded"), (name,))?
            .cast_into::<PyTuple>()?;
        let kind: String = found.get_item(0)?.extract()?;
        h.tag(Tag::Name);
        h.str(name);
        h.str(&kind);
        match kind.as_str() {
            "source" => {
                let package = if found.get_item(1)?.is_truthy()? {
                    name
                } else {
                    name.rsplit_once('.').map_or("", |(p, _)| p)
                };
                let info = code_info(&found.get_item(2)?)?;
                h.digest(info.digest);
                // Its file is code the key covers, not data the call read.
                self.note(Dep {
                    kind: "module",
                    name: name.to_owned(),
                    display: Some(found.get_item(3)?.extract()?),
                    digest: info.digest,
                    leaf: None,
                });
                for imp in &info.imports {
                    let Some(target) = resolve(package, imp.level, &imp.name) else {
                        h.tag(Tag::Missing);
                        continue;
                    };
                    h.tag(Tag::Module);
                    self.static_import(&target, &info, seen, h)?;
                    for item in imp.fromlist.iter().filter(|f| f.as_str() != "*") {
                        let sub = format!("{target}.{item}");
                        if self.loaded(&sub)?.is_some()
                            || self.library(&sub)?.is_some()
                            || self.locatable(&sub)?
                        {
                            self.static_import(&sub, &info, seen, h)?;
                        }
                    }
                }
                Ok(())
            }
            "extension" => {
                let path: std::path::PathBuf = found.get_item(1)?.extract()?;
                match crate::identity::file_digest(&path) {
                    Ok(d) => {
                        h.digest(d);
                        Ok(())
                    }
                    Err(e) => Err(HashError::new(Kind::NoReduce {
                        type_name: format!("module `{name}`"),
                        reason: format!("not loaded, and its file cannot be read: {e}"),
                    })),
                }
            }
            "namespace" | "missing" => Ok(()),
            "error" => {
                h.str(&found.get_item(1)?.extract::<String>()?);
                Ok(())
            }
            _ => Err(HashError::new(Kind::NoReduce {
                type_name: format!("module `{name}`"),
                reason: format!(
                    "not loaded, and its code cannot be read without importing it ({})",
                    found.get_item(1)?.str()?
                ),
            })),
        }
    }

    /// A module imported by the top-level code of a module in a static
    /// closure (whose code uses the attributes in `info`).
    fn static_import(
        &mut self,
        name: &str,
        info: &Arc<CodeInfo>,
        seen: &mut AHashSet<String>,
        h: &mut Hasher,
    ) -> HResult<()> {
        match self.loaded(name)? {
            Some(m) => match m.cast::<PyModule>() {
                Ok(m) => self.module(m, Some(info.attrs.as_slice()), h),
                Err(_) => self.value(&m, h),
            },
            None => {
                if !self.unloaded.iter().any(|n| n == name) {
                    self.unloaded.push(name.to_owned());
                }
                match self.library(name)? {
                    Some(lib) => {
                        h.tag(Tag::Library);
                        h.str(name);
                        h.str(&lib);
                        Ok(())
                    }
                    None => self.static_module(name, seen, h),
                }
            }
        }
    }
}

/// The absolute name of `import <level dots><name>` in package `package`
/// (`importlib.util.resolve_name`); `None` beyond the top-level package.
fn resolve(package: &str, level: u32, name: &str) -> Option<String> {
    if level == 0 {
        return Some(name.to_owned());
    }
    let mut base = package;
    for _ in 1..level {
        base = base.rsplit_once('.')?.0;
    }
    if base.is_empty() {
        return None;
    }
    Some(if name.is_empty() {
        base.to_owned()
    } else {
        format!("{base}.{name}")
    })
}
