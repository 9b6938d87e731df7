//! pandas DataFrames and Series by logical content, not block layout: the
//! columns in order, each column's values (arrays by logical content, see
//! `array.rs`), dtypes (part of the values), the index and columns with
//! their names, `attrs`, `flags` and a subclass's `_metadata`. So a frame
//! and its round-tripped copy (which is what a hit returns) key the same,
//! however their blocks are consolidated or ordered.
use super::*;

impl<'py> Walker<'py> {
    pub(super) fn frame(&mut self, df: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let Some(manager) = df.getattr_opt(intern!(py, "_mgr"))? else {
            return self.reduce(df, h); // a pandas without block managers
        };
        h.tag(Tag::Frame);
        self.frame_common(df, h)?;
        let columns = df.getattr(intern!(py, "columns"))?;
        self.value(&columns, h)
            .map_err(|e| e.at(Step::Attribute("columns".to_owned())))?;
        let n = columns.len()?;
        h.u64(n as u64);
        for i in 0..n {
            let values = manager.call_method1(intern!(py, "iget_values"), (i,))?;
            self.value(&values, h)
                .map_err(|e| e.at(Step::Item(i as u64)))?;
        }
        Ok(())
    }

    pub(super) fn series(&mut self, s: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        h.tag(Tag::Series);
        self.frame_common(s, h)?;
        self.value(&s.getattr(intern!(py, "_values"))?, h)
    }

    /// What frames and Series share: class, index, attrs, flags, metadata.
    fn frame_common(&mut self, obj: &Bound<'py, PyAny>, h: &mut Hasher) -> HResult<()> {
        let py = self.py;
        let t = obj.get_type();
        self.class(&t, h)?;
        self.value(&obj.getattr(intern!(py, "index"))?, h)
            .map_err(|e| e.at(Step::Attribute("index".to_owned())))?;
        self.value(&obj.getattr(intern!(py, "attrs"))?, h)
            .map_err(|e| e.at(Step::Attribute("attrs".to_owned())))?;
        let flags = obj.getattr(intern!(py, "flags"))?;
        self.value(&flags.getattr(intern!(py, "allows_duplicate_labels"))?, h)?;
        // `_metadata`: the attributes pandas itself propagates (a Series'
        // `_name`, a subclass's own).
        let metadata = t.getattr(intern!(py, "_metadata"))?;
        for name in metadata.try_iter()? {
            let name = name?;
            let name_str = name.extract::<String>()?;
            self.value(&name, h)?;
            let v = obj.getattr_opt(name.cast::<PyString>()?)?;
            match v {
                Some(v) => self
                    .value(&v, h)
                    .map_err(|e| e.at(Step::Attribute(name_str)))?,
                None => h.tag(Tag::Missing),
            }
        }
        Ok(())
    }
}
