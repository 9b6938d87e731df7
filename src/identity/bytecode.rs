//! Reading CPython bytecode (3.11+): the opcode numbers come from the running
//! interpreter's `opcode` module, so the only version-specific fact kept here
//! is how an instruction's argument encodes a name index.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

pub struct OpTable {
    pub has_const: [bool; 256],
    pub has_name: [bool; 256],
    /// Right shift applied to the argument to get the index into `co_names`
    /// (3.11+: `LOAD_GLOBAL` keeps a flag in bit 0; 3.12+: `LOAD_ATTR` too,
    /// `LOAD_SUPER_ATTR` two flags).
    pub name_shift: [u8; 256],
    pub extended_arg: u8,
    pub cache: u8,
    pub load_global: u8,
    pub load_name: u8,
    pub store_global: u8,
    pub delete_global: u8,
    pub import_name: u8,
    pub store_name: u8,
    pub load_const: u8,
    pub load_attr: u8,
    pub binary_subscr: Option<u8>,
    pub contains_op: Option<u8>,
    /// 3.11 only (3.12+: `LOAD_ATTR` with its method flag, and no `PRECALL`).
    pub load_method: Option<u8>,
    pub precall: Option<u8>,
    pub call: Option<u8>,
    /// 3.13 fuses two local loads/stores into one instruction only when they
    /// sit on the same source line: (fused, first, second), expanded back so
    /// that line breaks do not change the fingerprint.
    pub fused: Vec<(u8, u8, u8)>,
    /// Placeholders kept only to carry line events.
    pub nop: Option<u8>,
    /// Relative jumps (`hasjrel`; 3.13 `hasjump`), and which of them jump
    /// backward.
    pub jump: [bool; 256],
    pub backward: [bool; 256],
}

impl OpTable {
    /// Inline cache entries and line-only `NOP`s: not instructions.
    fn skipped(&self, op: u8) -> bool {
        op == self.cache || Some(op) == self.nop
    }

    /// The two instructions a fused one stands for.
    fn halves(&self, op: u8) -> Option<(u8, u8)> {
        self.fused
            .iter()
            .find(|(f, _, _)| *f == op)
            .map(|&(_, first, second)| (first, second))
    }
}

static TABLE: PyOnceLock<OpTable> = PyOnceLock::new();

pub fn table(py: Python<'_>) -> PyResult<&'static OpTable> {
    TABLE.get_or_try_init(py, || build(py))
}

fn build(py: Python<'_>) -> PyResult<OpTable> {
    let opcode = py.import("opcode")?;
    let opmap = opcode.getattr("opmap")?.cast_into::<PyDict>()?;
    // 3.12+ maps pseudo-instructions (`LOAD_METHOD`) to numbers >= 256:
    // they never appear in `co_code`.
    let op = |name: &str| -> PyResult<Option<u8>> {
        match opmap.get_item(name)? {
            Some(v) => Ok(u8::try_from(v.extract::<u32>()?).ok()),
            None => Ok(None),
        }
    };
    let required = |name: &str| -> PyResult<u8> {
        op(name)?.ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("opcode {name} is missing"))
        })
    };
    let mut t = OpTable {
        has_const: [false; 256],
        has_name: [false; 256],
        name_shift: [0; 256],
        extended_arg: required("EXTENDED_ARG")?,
        cache: required("CACHE")?,
        load_global: required("LOAD_GLOBAL")?,
        load_name: required("LOAD_NAME")?,
        store_global: required("STORE_GLOBAL")?,
        delete_global: required("DELETE_GLOBAL")?,
        import_name: required("IMPORT_NAME")?,
        store_name: required("STORE_NAME")?,
        load_const: required("LOAD_CONST")?,
        load_attr: required("LOAD_ATTR")?,
        binary_subscr: op("BINARY_SUBSCR")?,
        contains_op: op("CONTAINS_OP")?,
        load_method: op("LOAD_METHOD")?,
        precall: op("PRECALL")?,
        call: op("CALL")?,
        fused: Vec::new(),
        nop: op("NOP")?,
        jump: [false; 256],
        backward: [false; 256],
    };
    for (fused, first, second) in [
        ("LOAD_FAST_LOAD_FAST", "LOAD_FAST", "LOAD_FAST"),
        ("STORE_FAST_LOAD_FAST", "STORE_FAST", "LOAD_FAST"),
        ("STORE_FAST_STORE_FAST", "STORE_FAST", "STORE_FAST"),
    ] {
        if let (Some(f), Some(a), Some(b)) = (op(fused)?, op(first)?, op(second)?) {
            t.fused.push((f, a, b));
        }
    }
    for (list, flags) in [("hasconst", &mut t.has_const), ("hasname", &mut t.has_name)] {
        for v in opcode.getattr(list)?.cast_into::<PyList>()?.iter() {
            // 3.12+ lists pseudo-instructions (>= 256) too; they never appear
            // in `co_code`.
            if let Ok(op) = v.extract::<u8>() {
                flags[usize::from(op)] = true;
            }
        }
    }
    let jumps = match opcode.getattr_opt("hasjump")? {
        Some(j) => j,
        None => opcode.getattr("hasjrel")?,
    };
    for v in jumps.cast_into::<PyList>()?.iter() {
        if let Ok(o) = v.extract::<u8>() {
            t.jump[usize::from(o)] = true;
        }
    }
    // `dis._is_backward_jump`: the name says so (3.11's POP_JUMP_BACKWARD_IF_*
    // included).
    for (name, o) in opmap.iter() {
        if let (Ok(name), Ok(o)) = (name.extract::<String>(), o.extract::<u8>()) {
            t.backward[usize::from(o)] = name.contains("JUMP_BACKWARD");
        }
    }
    let minor: u8 = py.version_info().minor;
    t.name_shift[usize::from(t.load_global)] = 1;
    if minor >= 12 {
        if let Some(o) = op("LOAD_ATTR")? {
            t.name_shift[usize::from(o)] = 1;
        }
        if let Some(o) = op("LOAD_SUPER_ATTR")? {
            t.name_shift[usize::from(o)] = 2;
        }
    }
    Ok(t)
}

/// One instruction with its full (EXTENDED_ARG-combined) argument.
#[derive(Clone, Copy)]
pub struct Instr {
    pub op: u8,
    pub arg: u32,
}

/// Iterates the instructions of de-specialized `co_code`, skipping inline
/// cache entries and `NOP`s, folding `EXTENDED_ARG` prefixes into the
/// argument and expanding fused local loads/stores into their two halves.
/// A jump's argument is replaced by its target's index in that sequence, so
/// what the skipping and expanding changed in code-unit offsets (a `NOP`
/// that only carried a line, two loads fused only when on one line) does not
/// show.
pub fn instructions<'a>(code: &'a [u8], t: &'a OpTable) -> Instructions<'a> {
    Instructions {
        code,
        pos: 0,
        t,
        pending: None,
        logical: logical_positions(code, t),
    }
}

pub struct Instructions<'a> {
    code: &'a [u8],
    /// Next code unit to read.
    pos: usize,
    t: &'a OpTable,
    /// The second half of a fused instruction.
    pending: Option<Instr>,
    /// For each code unit (and one past the end): the index, in the
    /// sequence this iterator yields, of the first instruction at or after it.
    logical: Vec<u32>,
}

impl Instructions<'_> {
    /// The index of the instruction at or after code unit `unit` (or past
    /// the last), as yielded: what jumps and exception-table ranges refer to.
    pub fn logical(&self, unit: usize) -> u32 {
        let last = self.logical.last().copied().unwrap_or(0);
        self.logical.get(unit).copied().unwrap_or(last)
    }
}

fn logical_positions(code: &[u8], t: &OpTable) -> Vec<u32> {
    let mut out = Vec::with_capacity(code.len() / 2 + 1);
    let mut count = 0u32;
    for unit in code.chunks_exact(2) {
        out.push(count);
        let op = unit[0];
        if t.skipped(op) || op == t.extended_arg {
            continue;
        }
        count += if t.halves(op).is_some() { 2 } else { 1 };
    }
    out.push(count);
    out
}

impl Iterator for Instructions<'_> {
    type Item = Instr;

    fn next(&mut self) -> Option<Instr> {
        if let Some(i) = self.pending.take() {
            return Some(i);
        }
        let t = self.t;
        let mut ext: u32 = 0;
        while let Some(unit) = self.code.get(self.pos..self.pos + 2) {
            let at = self.pos / 2;
            self.pos += 2;
            let (op, arg) = (unit[0], u32::from(unit[1]));
            if t.skipped(op) {
                continue;
            }
            if op == t.extended_arg {
                ext = (ext | arg) << 8;
                continue;
            }
            let full = ext | arg;
            if let Some((first, second)) = t.halves(op) {
                self.pending = Some(Instr {
                    op: second,
                    arg: full & 15,
                });
                return Some(Instr {
                    op: first,
                    arg: full >> 4,
                });
            }
            if t.jump[usize::from(op)] {
                // `dis._get_jump_target`: relative to the end of the
                // instruction and its inline caches.
                let caches = self.code[self.pos..]
                    .chunks_exact(2)
                    .take_while(|u| u[0] == t.cache)
                    .count();
                let next = at + 1 + caches;
                let delta = full as usize;
                let target = if t.backward[usize::from(op)] {
                    next.checked_sub(delta)
                } else {
                    next.checked_add(delta)
                };
                // Out of range (malformed code): keep the raw argument,
                // distinguished from every target by the top bit.
                let arg = target.map_or(full | 1 << 31, |u| self.logical(u));
                return Some(Instr { op, arg });
            }
            return Some(Instr { op, arg: full });
        }
        None
    }
}
