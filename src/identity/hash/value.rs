//! Content hashes of values: scalars, containers, buffers, and anything
//! else by the state `__reduce_ex__` exposes.
use super::*;

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
            let kwargs = pyo3::types::PyDict::new(obj.py());
            kwargs.set_item("signed", true)?;
            let raw = obj.call_method("to_bytes", (bits / 8 + 1, "little"), Some(&kwargs))?;
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

impl<'py> Walker<'py> {
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
        if let Some(f) = native::ctypes_function(obj)? {
            return self.ctypes_function(obj, f, h);
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
}
