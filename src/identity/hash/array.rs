//! Arrays by logical content: dtype, shape and elements in C order, never
//! strides or memory order, so a view and its contiguous copy (which is
//! what a hit returns) key the same. A subclass adds its own state: a
//! masked array its mask, fill value and hardness (not whether its mask is
//! shared, which is layout); any other subclass its `__dict__`.
use super::*;
use crate::identity::digest::Run;

/// Bytes of collected strings written to the hasher at once.
const RUN: usize = 64 << 10;

impl<'py> Walker<'py> {
    /// A numpy array (or subclass instance).
    pub(super) fn array(&mut self, a: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let t = a.get_type();
        h.tag(Tag::Array);
        self.class(&t, h)?;
        let dtype = a.getattr(intern!(py, "dtype"))?;
        self.value(&dtype.getattr(intern!(py, "descr"))?, h)?;
        self.value(&a.getattr(intern!(py, "shape"))?, h)?;
        if dtype.getattr(intern!(py, "hasobject"))?.is_truthy()? {
            // Pointers, not content: the elements themselves, in C order
            // (`ravel` copies only what is not C-contiguous).
            let flat = a.call_method0(intern!(py, "ravel"))?;
            let objects = Buffer::get(&flat)
                .and_then(|b| Some((b.object_count()?, b)))
                .ok_or_else(|| {
                    HashError::new(Kind::NoReduce {
                        type_name: type_name(a),
                        reason: "its objects cannot be read".to_owned(),
                    })
                })?;
            let (n, buf) = objects;
            h.u64(n as u64);
            // Strings (a pandas string column) are collected and written in
            // runs: the same bytes as `value` writes for each, fewer calls.
            let mut run = Run::default();
            for i in 0..n {
                let item = buf.object(i).unwrap_or_else(|| py.None().into_bound(py));
                if let Ok(s) = item.cast_exact::<PyString>() {
                    if s.to_str().is_ok_and(|text| run.tagged_str(Tag::Str, text)) {
                        if run.size() >= RUN {
                            h.run(&mut run);
                        }
                        continue;
                    }
                }
                h.run(&mut run);
                self.value(&item, h)
                    .map_err(|e| e.at(Step::Item(i as u64)))?;
            }
            h.run(&mut run);
        } else {
            match Buffer::get(a) {
                Some(buf) => h.bytes(&buf.c_bytes()?),
                // No buffer for some dtypes (datetime64): a C-order copy.
                None => {
                    let raw = a.call_method0(intern!(py, "tobytes"))?;
                    h.bytes(raw.cast_into::<PyBytes>()?.as_bytes());
                }
            }
        }
        let Some(np) = types::numpy(py) else {
            return Ok(());
        };
        if np.ndarray.bind(py).is(&t) {
            return Ok(());
        }
        if let Some(ma) = types::masked_arrays(py) {
            if a.is_instance(ma.masked_array.bind(py))? {
                let mask = ma.getmaskarray.bind(py).call1((a,))?;
                self.value(&mask, h)
                    .map_err(|e| e.at(Step::Attribute("mask".to_owned())))?;
                // As a plain Python value: the same fill value is a numpy
                // scalar or a Python one depending on how the array was made.
                let fill = np
                    .asarray
                    .bind(py)
                    .call1((a.getattr(intern!(py, "fill_value"))?,))?
                    .call_method0(intern!(py, "item"))?;
                self.value(&fill, h)?;
                for attr in [intern!(py, "hardmask"), intern!(py, "baseclass")] {
                    self.value(&a.getattr(attr)?, h)?;
                }
                return Ok(());
            }
        }
        match layout::instance_dict(a)? {
            Some(d) => {
                h.tag(Tag::Dict);
                self.items(d.iter(), h)
            }
            None => {
                h.tag(Tag::None);
                Ok(())
            }
        }
    }

    /// Any other exporter of a buffer (memoryview, `array.array`, numpy
    /// scalars): format, item size, shape and content in C order.
    pub(super) fn buffer(&mut self, buf: &Buffer<'_>, h: &mut Hasher) -> HResult<()> {
        h.bytes(buf.format());
        h.i64(buf.itemsize());
        let shape = buf.shape();
        h.u64(shape.len() as u64);
        shape.iter().for_each(|&d| h.i64(d));
        h.bytes(&buf.c_bytes()?);
        Ok(())
    }
}
