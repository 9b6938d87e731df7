//! Instances by their true state, not by what pickling chooses to keep.
//!
//! An instance of the user's own class is its class's fingerprint plus all
//! it holds: the built-in part of a built-in base (a `list` subclass's
//! items, read through `list` itself), the reduction of any other native
//! base, its `__dict__` and its slots. A `__getstate__` that leaves data out
//! is not consulted. So is a callable object of a library (a wrapper such
//! as `toolz.curry`, a `functools.lru_cache` wrapper, a mock): what it does
//! depends on what it holds. Other library objects are what their library
//! says they are: their reduction, as pickle sees it (a `pathlib.Path`
//! caches derived strings in slots; a logger reduces to its name).
use super::value::Builtin;
use super::*;

/// How the instances of one class hold their state.
pub struct Layout {
    /// Held so its address is not reused within the walk.
    _class: Py<PyType>,
    /// Hashed by true state (else by reduction).
    own: bool,
    /// The first base made natively (not by a `class` statement), other
    /// than `object`: its part of the state is not in `__dict__` or slots.
    native: Option<Native>,
    /// Slot descriptors of the classes made by `class` statements, in MRO
    /// order.
    slots: Vec<(String, Py<PyAny>)>,
}

enum Native {
    Builtin(Builtin),
    Other,
}

impl<'py> Walker<'py> {
    fn layout(&mut self, t: &Bound<'py, PyType>) -> HResult<Rc<Layout>> {
        let id = t.as_ptr() as usize;
        if let Some(l) = self.layouts.get(&id) {
            return Ok(l.clone());
        }
        let py = self.py;
        let known = types::interpreter(py)?;
        let object = py.get_type::<PyAny>();
        let mut native = None;
        let mut slots = Vec::new();
        for base in t.mro().iter() {
            let base = base.cast_into::<PyType>()?;
            if base.is(&object) {
                continue;
            }
            if layout::class_statement(&base)? {
                let members = base
                    .getattr(intern!(py, "__dict__"))?
                    .cast_into::<pyo3::types::PyMappingProxy>()?;
                for kv in members.items()?.iter() {
                    let kv = kv.cast_into::<PyTuple>()?;
                    let v = kv.get_item(1)?;
                    if types::is(&v, &known.member_descriptor) {
                        slots.push((kv.get_item(0)?.extract::<String>()?, v.unbind()));
                    }
                }
            } else if native.is_none() {
                native = Some(match Builtin::of(&base) {
                    Some(b) => Native::Builtin(b),
                    None => Native::Other,
                });
            }
        }
        let module = type_module(t);
        let library = &*module == "builtins" || self.library(&module)?.is_some();
        let own = !library || layout::instances_callable(t);
        let l = Rc::new(Layout {
            _class: t.clone().unbind(),
            own,
            native,
            slots,
        });
        self.layouts.insert(id, l.clone());
        Ok(l)
    }

    /// Any value not handled before: by true state or by reduction (see
    /// the module docs); an exported buffer by its content.
    pub(super) fn instance(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let t = obj.get_type();
        let layout = self.layout(&t)?;
        if !layout.own {
            if let Some(buf) = Buffer::get(obj) {
                // Object buffers export pointers, not content.
                if !buf.format().contains(&b'O') {
                    h.tag(Tag::Buffer);
                    self.class(&t, h)?;
                    return self.buffer(&buf, h);
                }
            }
            return self.reduce(obj, h);
        }
        // The dict first: reading it may create it, which a native base's
        // reduction can see (`functools.partial` reduces an absent dict to
        // None and an empty one to `{}`); keys must not change by keying.
        let dict = layout::instance_dict(obj)?;
        h.tag(Tag::Instance);
        self.class(&t, h)?;
        match layout.native {
            None => h.tag(Tag::None),
            Some(Native::Builtin(kind)) => self.builtin(obj, kind, h)?,
            Some(Native::Other) => self.reduce(obj, h)?,
        }
        match dict {
            Some(d) => {
                h.tag(Tag::Dict);
                let pairs: Vec<_> = d.iter().collect();
                h.u64(pairs.len() as u64);
                for (k, v) in pairs {
                    self.value(&k, h)?;
                    self.value(&v, h).map_err(|e| {
                        e.at(Step::Attribute(
                            k.extract::<String>().unwrap_or_else(|_| "?".to_owned()),
                        ))
                    })?;
                }
            }
            None => h.tag(Tag::None),
        }
        h.u64(layout.slots.len() as u64);
        for (name, slot) in &layout.slots {
            h.str(name);
            match slot
                .bind(self.py)
                .call_method1(intern!(self.py, "__get__"), (obj,))
            {
                Ok(v) => self
                    .value(&v, h)
                    .map_err(|e| e.at(Step::Attribute(name.clone())))?,
                Err(e) if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(self.py) => {
                    h.tag(Tag::EmptySlot)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The class fingerprint plus the state `__reduce_ex__` exposes (or the
    /// reducer `copyreg` registers for the type, as pickle would use), as
    /// pickle would see it.
    pub(super) fn reduce(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let t = obj.get_type();
        let known = types::interpreter(py)?;
        let reduced = match known.dispatch_table.bind(py).get_item(&t)? {
            Some(reducer) => reducer.call1((obj,)),
            None => obj.call_method1(intern!(py, "__reduce_ex__"), (4,)),
        };
        let reduced = match reduced {
            Ok(r) => r,
            Err(e) => return Err(self.unreducible(obj, e)),
        };
        if let Ok(s) = reduced.cast::<PyString>() {
            // A global reference (singletons, ufuncs): the type plus the name.
            h.tag(Tag::ReduceStr);
            self.class(&t, h)?;
            h.str(&s.to_string());
            return Ok(());
        }
        let Ok(parts) = reduced.cast::<PyTuple>() else {
            return Err(HashError::new(Kind::NoReduce {
                type_name: type_name(obj),
                reason: "__reduce_ex__ returned neither a tuple nor a string".to_owned(),
            }));
        };
        h.tag(Tag::Reduce);
        self.class(&t, h)?;
        h.u64(parts.len() as u64);
        for (i, part) in parts.iter().enumerate() {
            if (i == 3 || i == 4) && !part.is_none() {
                // listitems / dictitems iterators.
                let items: Vec<_> = part.try_iter()?.collect::<PyResult<_>>()?;
                h.u64(items.len() as u64);
                self.sequence(items.into_iter(), h)?;
            } else {
                self.value(&part, h)?;
            }
        }
        Ok(())
    }

    /// Why `obj` has no reduction, in the user's terms where possible.
    fn unreducible(&self, obj: &Bound<'py, PyAny>, e: PyErr) -> HashError {
        let py = self.py;
        let raised = match HashError::from(e) {
            HashError::Unhashable(u) => u,
            passed => return passed, // not an `Exception`
        };
        let type_name = type_name(obj);
        let Ok(known) = types::interpreter(py) else {
            return HashError::Unhashable(raised);
        };
        let kind = if obj.is_instance(known.io_base.bind(py)).unwrap_or(false) {
            Kind::OpenFile(type_name)
        } else if known.locks.iter().any(|t| types::is(obj, t)) {
            Kind::Lock(type_name)
        } else if known.generators.iter().any(|t| types::is(obj, t)) {
            Kind::Generator(type_name)
        } else if types::socket(py).is_some_and(|t| obj.is_instance(t.bind(py)).unwrap_or(false)) {
            Kind::Socket(type_name)
        } else {
            match raised.kind {
                // "cannot pickle ...": pickling does not support the type.
                Kind::Raised { exception, message } if exception == "TypeError" => Kind::NoReduce {
                    type_name,
                    reason: message,
                },
                _ => return HashError::Unhashable(raised),
            }
        };
        HashError::new(kind)
    }
}
