//! Content hashes of values: scalars and the built-in containers here;
//! arrays and frames by logical content (`array.rs`, `frame.rs`); instances
//! by their true state or their reduction (`state.rs`).
use super::*;
use pyo3::type_object::PyTypeInfo;

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
        int(obj, h)?;
    } else if obj.is_exact_instance_of::<PyFloat>() {
        h.tag(Tag::Float);
        h.u64(obj.extract::<f64>()?.to_bits());
    } else if obj.is_exact_instance_of::<PyComplex>() {
        complex(obj, h)?;
    } else if obj.is_exact_instance_of::<PyString>() {
        string(obj, h)?;
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

/// An exact tuple of plain values (see [`try_plain`]), hashed as the walker
/// hashes it (`Builtin::Tuple`: its tag, its length, then each item), but
/// without a walker: the common small tuple argument. False for anything
/// else, after which `h` holds a partial hash (the caller starts afresh).
pub fn try_plain_tuple(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<bool> {
    let Ok(t) = obj.cast_exact::<PyTuple>() else {
        return Ok(false);
    };
    h.tag(Tag::Tuple);
    h.u64(t.len() as u64);
    for item in t.iter_borrowed() {
        if !try_plain(&item, h)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An int (or the int part of a subclass): 64-bit values as such, larger
/// ones by their two's-complement bytes, read through `int` itself.
fn int(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<()> {
    if let Ok(v) = obj.extract::<i64>() {
        h.tag(Tag::Int);
        h.i64(v);
        return Ok(());
    }
    let py = obj.py();
    let int = py.get_type::<PyInt>();
    let bits: usize = int
        .call_method1(intern!(py, "bit_length"), (obj,))?
        .extract()?;
    let kwargs = PyDict::new(py);
    kwargs.set_item(intern!(py, "signed"), true)?;
    let raw = int.call_method(
        intern!(py, "to_bytes"),
        (obj, bits / 8 + 1, intern!(py, "little")),
        Some(&kwargs),
    )?;
    h.tag(Tag::BigInt);
    h.bytes(raw.cast_into::<PyBytes>()?.as_bytes());
    Ok(())
}

fn complex(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<()> {
    let c = obj.cast::<PyComplex>()?;
    h.tag(Tag::Complex);
    h.u64(c.real().to_bits());
    h.u64(c.imag().to_bits());
    Ok(())
}

fn string(obj: &Bound<'_, PyAny>, h: &mut Hasher) -> PyResult<()> {
    h.tag(Tag::Str);
    let s = obj.cast::<PyString>()?;
    match s.to_str() {
        Ok(text) => h.str(text),
        // Lone surrogates have no UTF-8 form; encode them losslessly.
        Err(_) => {
            let py = obj.py();
            let raw = py.get_type::<PyString>().call_method1(
                intern!(py, "encode"),
                (s, intern!(py, "utf-8"), intern!(py, "surrogatepass")),
            )?;
            h.bytes(raw.cast_into::<PyBytes>()?.as_bytes());
        }
    }
    Ok(())
}

/// The built-in types whose content is read through their own C API, for
/// exact instances and for the built-in part of subclasses alike (so an
/// overridden `__iter__` or `items` cannot hide content).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Int,
    Float,
    Complex,
    Str,
    Bytes,
    ByteArray,
    Tuple,
    List,
    Dict,
    Set,
    FrozenSet,
}

impl Builtin {
    /// `t` if it is one of these types (pointer compares, no references).
    pub fn of(t: &Bound<'_, PyType>) -> Option<Builtin> {
        let py = t.py();
        let p = t.as_type_ptr();
        let table = [
            (PyInt::type_object_raw(py), Builtin::Int),
            (PyFloat::type_object_raw(py), Builtin::Float),
            (PyComplex::type_object_raw(py), Builtin::Complex),
            (PyString::type_object_raw(py), Builtin::Str),
            (PyBytes::type_object_raw(py), Builtin::Bytes),
            (PyByteArray::type_object_raw(py), Builtin::ByteArray),
            (PyTuple::type_object_raw(py), Builtin::Tuple),
            (PyList::type_object_raw(py), Builtin::List),
            (PyDict::type_object_raw(py), Builtin::Dict),
            (PySet::type_object_raw(py), Builtin::Set),
            (PyFrozenSet::type_object_raw(py), Builtin::FrozenSet),
        ];
        table
            .into_iter()
            .find(|(b, _)| *b == p)
            .map(|(_, kind)| kind)
    }
}

/// Whether `v`'s `hash()` is the same in every process (not seeded, not an
/// address): when every element's is, a set's iteration order is a
/// function of what was done to it, and results may depend on it.
pub fn unseeded(v: &Bound<'_, PyAny>) -> bool {
    unseeded_within(v, 0)
}

fn unseeded_within(v: &Bound<'_, PyAny>, depth: usize) -> bool {
    if v.is_exact_instance_of::<PyInt>() || v.is_exact_instance_of::<PyBool>() {
        return true;
    }
    if v.is_exact_instance_of::<PyFloat>() {
        // NaN hashes by address.
        return v.extract::<f64>().is_ok_and(|f| !f.is_nan());
    }
    if let Ok(c) = v.cast_exact::<PyComplex>() {
        return !c.real().is_nan() && !c.imag().is_nan();
    }
    if let Ok(t) = v.cast_exact::<PyTuple>() {
        return depth < 8 && t.iter().all(|item| unseeded_within(&item, depth + 1));
    }
    false
}

impl<'py> Walker<'py> {
    /// The content hash of any value.
    pub fn value(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        if try_plain(obj, h)? {
            return Ok(());
        }
        self.descend()?;
        let r = self.compound(obj, h);
        self.depth -= 1;
        r
    }

    fn compound(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let known = types::interpreter(py)?;
        if types::is(obj, &known.mappingproxy) {
            return self.mapping_proxy(obj, h);
        }
        if let Some(b) = self.plan.as_mut() {
            if is_leaf(obj) {
                h.tag(Tag::Leaf);
                h.u64(b.leaf(obj) as u64);
                return Ok(());
            }
        }
        if let Some(kind) = Builtin::of(&obj.get_type()) {
            return self.guarded(obj, h, |w, h| w.builtin(obj, kind, h));
        }
        if obj.is_exact_instance_of::<PyRange>() || obj.is_exact_instance_of::<PySlice>() {
            h.tag(if obj.is_exact_instance_of::<PyRange>() {
                Tag::Range
            } else {
                Tag::Slice
            });
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
        if let Some(f) = ctypes_function(obj)? {
            return self.ctypes_function(obj, f, h);
        }
        if types::is(obj, &known.method) {
            h.tag(Tag::BoundMethod);
            self.value(&obj.getattr(intern!(py, "__func__"))?, h)?;
            return self.value(&obj.getattr(intern!(py, "__self__"))?, h);
        }
        if types::is(obj, &known.staticmethod) || types::is(obj, &known.classmethod) {
            h.tag(Tag::Wrapper);
            self.class(&obj.get_type(), h)?;
            return self.value(&obj.getattr(intern!(py, "__func__"))?, h);
        }
        if types::is(obj, &known.property) {
            h.tag(Tag::Wrapper);
            self.class(&obj.get_type(), h)?;
            for attr in [
                intern!(py, "fget"),
                intern!(py, "fset"),
                intern!(py, "fdel"),
            ] {
                self.value(&obj.getattr(attr)?, h)?;
            }
            return Ok(());
        }
        if types::is(obj, &known.cached_property) {
            h.tag(Tag::Wrapper);
            self.class(&obj.get_type(), h)?;
            return self.value(&obj.getattr(intern!(py, "func"))?, h);
        }
        if types::is(obj, &known.cell) {
            return self.cell(obj, h);
        }
        if let Some(np) = types::numpy(py) {
            if obj.is_instance(np.ndarray.bind(py))? {
                return self.guarded(obj, h, |w, h| w.array(obj, h));
            }
        }
        if let Some(pd) = types::pandas(py) {
            if obj.is_instance(pd.frame.bind(py))? {
                return self.guarded(obj, h, |w, h| w.frame(obj, h));
            }
            if obj.is_instance(pd.series.bind(py))? {
                return self.guarded(obj, h, |w, h| w.series(obj, h));
            }
        }
        self.guarded(obj, h, |w, h| w.instance(obj, h))
    }

    /// The content of a built-in container or scalar, read through the
    /// built-in type's own API (so also the built-in part of a subclass).
    /// The caller has put `obj` on the cycle stack.
    pub(super) fn builtin(
        &mut self,
        obj: &Bound<'py, PyAny>,
        kind: Builtin,
        h: &mut Hasher,
    ) -> HResult<()> {
        match kind {
            Builtin::Int => int(obj, h)?,
            Builtin::Float => {
                h.tag(Tag::Float);
                h.u64(obj.extract::<f64>()?.to_bits());
            }
            Builtin::Complex => complex(obj, h)?,
            Builtin::Str => string(obj, h)?,
            Builtin::Bytes => {
                h.tag(Tag::Bytes);
                h.bytes(obj.cast::<PyBytes>()?.as_bytes());
            }
            Builtin::ByteArray => {
                h.tag(Tag::ByteArray);
                h.bytes(&obj.cast::<PyByteArray>()?.to_vec());
            }
            Builtin::Tuple => {
                let t = obj.cast::<PyTuple>()?;
                h.tag(Tag::Tuple);
                h.u64(t.len() as u64);
                self.sequence(t.iter(), h)?;
            }
            Builtin::List => {
                let l = obj.cast::<PyList>()?;
                h.tag(Tag::List);
                // Snapshot: code run below (a `__reduce__`) must not resize
                // it under us.
                let items: Vec<_> = l.iter().collect();
                h.u64(items.len() as u64);
                self.sequence(items.into_iter(), h)?;
            }
            Builtin::Dict => {
                let d = obj.cast::<PyDict>()?;
                h.tag(Tag::Dict);
                self.items(d.iter(), h)?;
            }
            Builtin::Set | Builtin::FrozenSet => self.set(obj, kind == Builtin::Set, h)?,
        }
        Ok(())
    }

    pub(super) fn sequence(
        &mut self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        h: &mut Hasher,
    ) -> HResult<()> {
        for (i, item) in items.enumerate() {
            self.value(&item, h)
                .map_err(|e| e.at(Step::Item(i as u64)))?;
        }
        Ok(())
    }

    /// A set in iteration order when that order is the same in every
    /// process (see [`unseeded`]): code may depend on it, so two sets that
    /// iterate differently differ. Otherwise the order depends on the hash
    /// seed: the elements' digests are sorted.
    fn set(&mut self, obj: &Bound<'py, PyAny>, mutable: bool, h: &mut Hasher) -> HResult<()> {
        let items: Vec<Bound<'py, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        if items.iter().all(|v| unseeded(v)) {
            h.tag(if mutable {
                Tag::SetInOrder
            } else {
                Tag::FrozenSetInOrder
            });
            h.u64(items.len() as u64);
            return self.sequence(items.into_iter(), h);
        }
        let mut digests = Vec::with_capacity(items.len());
        for item in items {
            let mut sub = Hasher::new();
            self.value(&item, &mut sub)
                .map_err(|e| e.at(Step::Element))?;
            digests.push(sub.finish());
        }
        digests.sort_unstable();
        h.tag(if mutable { Tag::Set } else { Tag::FrozenSet });
        h.u64(digests.len() as u64);
        digests.into_iter().for_each(|d| h.digest(d));
        Ok(())
    }

    /// A read-only view of a mapping (`types.MappingProxyType`): hashed like
    /// the dict it shows. While a plan is built, a proxied dict is guarded
    /// (any change to it invalidates the plan) rather than hashed on every
    /// call: a `functools.singledispatch` registry is one.
    fn mapping_proxy(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let referents = types::interpreter(py)?.referents.bind(py).call1((obj,))?;
        let proxied = match referents.cast::<PyList>() {
            Ok(l) if l.len() == 1 => l.get_item(0)?.cast_into_exact::<PyDict>().ok(),
            _ => None,
        };
        if let Some(d) = proxied {
            self.read_all(&d);
            h.tag(Tag::Dict);
            return self.guarded(obj, h, |w, h| w.items(d.iter(), h));
        }
        if let Some(b) = self.plan.as_mut() {
            h.tag(Tag::Leaf);
            h.u64(b.leaf(obj) as u64);
            return Ok(());
        }
        let items = obj.call_method0(intern!(py, "items"))?;
        let pairs = items
            .try_iter()?
            .map(|kv| {
                let kv = kv?.cast_into::<PyTuple>()?;
                Ok((kv.get_item(0)?, kv.get_item(1)?))
            })
            .collect::<HResult<Vec<_>>>()?;
        h.tag(Tag::Dict);
        self.guarded(obj, h, |w, h| w.items(pairs.into_iter(), h))
    }

    pub(super) fn cell(&mut self, cell: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
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

    /// Key-value pairs in insertion order (deterministic and observable).
    pub(super) fn items(
        &mut self,
        pairs: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        h: &mut Hasher,
    ) -> HResult<()> {
        let pairs: Vec<_> = pairs.collect();
        h.u64(pairs.len() as u64);
        for (k, v) in pairs {
            let at = |e: HashError| e.at(Step::Key(key_display(&k)));
            self.value(&k, h).map_err(at)?;
            self.value(&v, h).map_err(at)?;
        }
        Ok(())
    }
}

/// How a dict key is named in a location: its repr when a short scalar.
pub fn key_display(k: &Bound<'_, PyAny>) -> String {
    short_display(k).unwrap_or_else(|| format!("of type {}", type_name(k)))
}
