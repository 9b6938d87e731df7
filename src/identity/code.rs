//! Fingerprints of code objects, computed once per code object and cached.
//!
//! The fingerprint covers what can change behaviour: de-specialized bytecode
//! with every operand replaced by what it refers to (constants by content,
//! names by text, locals by slot), constants recursively (nested code objects
//! of lambdas, comprehensions, generator expressions and nested defs), the
//! argument layout and names, flags and the exception table. Left out: line
//! tables and positions, file name, first line, local variable names (unless
//! the code can see them through `locals()`/`vars()`/`eval`/`exec`) and
//! constants no instruction loads (the docstring). So comments, docstrings,
//! formatting, moved lines and renamed locals do not change it.
use std::collections::BTreeMap;
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyCode, PyFrozenSet, PyString, PyTuple};

use super::bytecode::{instructions, table, Instr, OpTable};
use super::digest::{Digest, Hasher, Tag};
use crate::cpython::code::{self as raw, code_parts, ArcSlot, CodeParts, CO_FAST_LOCAL};

/// Names that let code reach globals or locals by a computed name. Code that
/// uses one is fingerprinted against all of its module's globals and all
/// attributes of the modules it uses, and with its local names.
const DYNAMIC_NAMES: &[&str] = &[
    "globals",
    "locals",
    "vars",
    "eval",
    "exec",
    "getattr",
    "__import__",
    "import_module",
    "__dict__",
    "__globals__",
];

const CO_VARARGS: u32 = raw::CO_VARARGS as u32;
const CO_VARKEYWORDS: u32 = raw::CO_VARKEYWORDS as u32;

/// Each code object's analysis, kept in the code object (`co_extra`).
static ANALYSES: ArcSlot<CodeInfo> = ArcSlot::new();

pub struct CodeInfo {
    pub digest: Digest,
    /// Names loaded as globals (or module-level names) here or in nested
    /// code: the code's own (interned) name objects, sorted, no duplicates.
    pub globals: Vec<Py<PyString>>,
    /// Every name in `co_names` here or in nested code: the attributes this
    /// code may read from a module it uses (the code's own name objects).
    pub attrs: Vec<Py<PyString>>,
    /// `name_hash` of each of `attrs`, sorted, for membership tests.
    attr_hashes: Vec<u64>,
    /// Modules imported inside the body (here or in nested code).
    pub imports: Vec<Import>,
    /// Globals that this code (and nested code) reads only by constant keys
    /// (`G["k"]`, `G.get("k")`, `"k" in G`): the name and the keys, sorted by
    /// name. A global any code uses otherwise is not listed.
    pub keyed: Vec<(String, Vec<Py<PyAny>>)>,
    /// Reaches names by computed strings (`globals()[name]`, `getattr`, ...).
    pub dynamic: bool,
    /// Assigns or deletes a global: calls have a side effect a hit would skip.
    pub writes_globals: bool,
}

/// One `import` statement: `from <level dots><name> import <fromlist>`.
#[derive(Clone)]
pub struct Import {
    pub level: u32,
    pub name: String,
    pub fromlist: Vec<String>,
}

impl CodeInfo {
    /// The constant keys `name` is read by, if that is the only way this
    /// code uses the global `name`.
    pub fn keys_of(&self, name: &str) -> Option<&[Py<PyAny>]> {
        self.keyed
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.keyed[i].1.as_slice())
    }

    /// Whether this code (or code nested in it) names attribute `name`. A
    /// hash collision can only make an unused name look used, which walks
    /// one member more: never less.
    pub fn names_attr(&self, name: &str) -> bool {
        self.attr_hashes.binary_search(&name_hash(name)).is_ok()
    }
}

fn name_hash(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// The cached analysis of a code object (computed on first use and kept in
/// the code object's `co_extra`).
pub fn code_info(code: &Bound<'_, PyAny>) -> PyResult<Arc<CodeInfo>> {
    let code = code
        .cast::<PyCode>()
        .map_err(|_| pyo3::exceptions::PyTypeError::new_err("expected a code object"))?;
    if let Some(info) = ANALYSES.get(code) {
        return Ok(info);
    }
    let info = Arc::new(analyse(code)?);
    ANALYSES.set(code, &info);
    Ok(info)
}

fn analyse(code: &Bound<'_, PyCode>) -> PyResult<CodeInfo> {
    let py = code.py();
    let t = table(py)?;
    let parts = code_parts(code);
    // `co_code` is the de-specialized copy (the struct holds the adaptive one).
    let co_code = code
        .getattr(intern!(py, "co_code"))?
        .cast_into::<PyBytes>()?;
    let consts = &parts.consts;
    let name_objs: Vec<Bound<'_, PyString>> = parts
        .names
        .iter()
        .map(|n| n.cast_into::<PyString>())
        .collect::<Result<_, _>>()?;
    let name_strs: Vec<&str> = name_objs
        .iter()
        .map(|n| n.to_str())
        .collect::<PyResult<_>>()?;

    let mut info = CodeInfo {
        digest: 0,
        globals: Vec::new(),
        attrs: name_objs.iter().map(|n| n.clone().unbind()).collect(),
        attr_hashes: name_strs.iter().map(|n| name_hash(n)).collect(),
        imports: Vec::new(),
        keyed: Vec::new(),
        dynamic: name_strs.iter().any(|n| DYNAMIC_NAMES.contains(n)),
        writes_globals: false,
    };

    // Constants are hashed where they are loaded; nested code objects are
    // analysed once each and their names merged into this code's.
    let mut const_digests: Vec<Option<Digest>> = vec![None; consts.len()];
    let mut h = Hasher::new();
    h.tag(Tag::Code);
    // The last two constants loaded: `IMPORT_NAME` follows (level, fromlist).
    let mut recent_consts: [Option<usize>; 2] = [None, None];
    let mut instrs = instructions(co_code.as_bytes(), t);
    let list: Vec<Instr> = instrs.by_ref().collect();
    // Global name -> the constant keys it is read by (`None`: used otherwise).
    let mut uses: BTreeMap<String, Option<Vec<Py<PyAny>>>> = BTreeMap::new();
    for (at, ins) in list.iter().enumerate() {
        // One byte of opcode, then what its argument refers to: the opcode
        // decides the operand's encoding, so the stream stays unambiguous.
        let op = usize::from(ins.op);
        h.u8(ins.op);
        if t.has_const[op] {
            let i = ins.arg as usize;
            if stores_line_number(&list, at, t, &name_strs) {
                // 3.13 stores a class body's first line in `__firstlineno__`:
                // a position, like the line table.
                h.digest(0);
                continue;
            }
            let d = match const_digests.get(i).copied().flatten() {
                Some(d) => d,
                None => {
                    let c = consts.get_item(i)?;
                    let d = const_digest(&c, &mut info, &mut uses)?;
                    if let Some(slot) = const_digests.get_mut(i) {
                        *slot = Some(d);
                    }
                    d
                }
            };
            h.digest(d);
            recent_consts = [recent_consts[1], Some(i)];
            continue;
        }
        if t.has_name[op] {
            let shift = t.name_shift[op];
            let idx = (ins.arg >> shift) as usize;
            let name = name_strs.get(idx).copied().unwrap_or("");
            h.str(name);
            h.u32(ins.arg & ((1u32 << shift) - 1));
            if ins.op == t.load_global || ins.op == t.load_name {
                if let Some(n) = name_objs.get(idx) {
                    info.globals.push(n.clone().unbind());
                }
                let key = if ins.op == t.load_global {
                    constant_key(&list, at, t, &name_strs)
                } else {
                    None
                };
                let key = key.map(|i| consts.get_item(i)).transpose()?;
                note_use(&mut uses, name, key.map(Bound::unbind).map(|k| vec![k]));
            } else if ins.op == t.store_global || ins.op == t.delete_global {
                info.writes_globals = true;
            } else if ins.op == t.import_name {
                let constant = |slot: Option<usize>| slot.and_then(|i| consts.get_item(i).ok());
                let level = constant(recent_consts[0])
                    .and_then(|c| c.extract::<u32>().ok())
                    .unwrap_or(0);
                let fromlist = constant(recent_consts[1])
                    .and_then(|c| c.extract::<Vec<String>>().ok())
                    .unwrap_or_default();
                info.imports.push(Import {
                    level,
                    name: name.to_owned(),
                    fromlist,
                });
            }
            continue;
        }
        h.u32(ins.arg);
    }
    info.keyed = uses
        .into_iter()
        .filter_map(|(n, keys)| Some((n, keys?)))
        .collect();

    // Argument layout: the count of each kind and the names callers can use
    // (every local name when the code can see them: `co_varnames`).
    // `from __future__` flags only steer the compiler: what they changed is
    // in the bytecode (`annotations` changes the defining code, not this).
    for v in [
        parts.argcount,
        parts.posonlyargcount,
        parts.kwonlyargcount,
        parts.flags & !future_flags(py)?,
    ] {
        h.u64(u64::from(v));
    }
    let visible = if info.dynamic {
        usize::MAX
    } else {
        parameter_count(&parts)
    };
    for n in varnames(&parts).take(visible) {
        h.str(n.cast::<PyString>()?.to_str()?);
    }
    h.u64(u64::from(parts.nfreevars));
    h.u64(u64::from(parts.ncellvars));
    h.str(parts.name.to_str()?);
    // Exception handlers: ranges and targets as instruction indices, like
    // jumps (the raw table counts code units).
    match exception_entries(parts.exceptiontable.as_bytes()) {
        Some(entries) => {
            h.u64(entries.len() as u64);
            for [start, len, target, depth_lasti] in entries {
                h.u32(instrs.logical(start as usize));
                h.u32(instrs.logical((start + len) as usize));
                h.u32(instrs.logical(target as usize));
                h.u32(depth_lasti);
            }
        }
        None => h.bytes(parts.exceptiontable.as_bytes()),
    }
    let mut globals: Vec<Bound<'_, PyString>> =
        info.globals.drain(..).map(|g| g.into_bound(py)).collect();
    globals.sort_by(|a, b| {
        a.to_str()
            .unwrap_or_default()
            .cmp(b.to_str().unwrap_or_default())
    });
    globals.dedup_by(|a, b| a.to_str().ok() == b.to_str().ok());
    info.globals = globals.into_iter().map(Bound::unbind).collect();
    info.attr_hashes.sort_unstable();
    info.attr_hashes.dedup();
    info.digest = h.finish();
    Ok(info)
}

/// The flags `from __future__` imports set on code objects (from the
/// running interpreter's `__future__` module).
fn future_flags(py: Python<'_>) -> PyResult<u32> {
    static FLAGS: PyOnceLock<u32> = PyOnceLock::new();
    FLAGS
        .get_or_try_init(py, || {
            let future = py.import("__future__")?;
            let mut flags = 0u32;
            for name in future.getattr("all_feature_names")?.try_iter()? {
                let feature = future.getattr(name?.cast_into::<PyString>()?)?;
                flags |= feature.getattr("compiler_flag")?.extract::<u32>()?;
            }
            Ok(flags)
        })
        .copied()
}

/// Records one use of global `name`: read by the constant keys `keys`, or
/// (`None`) any other way, which means all of it.
fn note_use(
    uses: &mut BTreeMap<String, Option<Vec<Py<PyAny>>>>,
    name: &str,
    keys: Option<Vec<Py<PyAny>>>,
) {
    let entry = uses
        .entry(name.to_owned())
        .or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), keys) {
        (Some(all), Some(keys)) => all.extend(keys),
        _ => *entry = None,
    }
}

/// Whether the constant loaded at `list[at]` is stored as `__firstlineno__`.
fn stores_line_number(list: &[Instr], at: usize, t: &OpTable, names: &[&str]) -> bool {
    list.get(at + 1).is_some_and(|next| {
        next.op == t.store_name && names.get(next.arg as usize) == Some(&"__firstlineno__")
    })
}

/// If the global loaded at `list[at]` is only read by one constant key
/// there (`G[k]`, `G.get(k)`, `G.get(k, <constant>)`, `k in G`, `k not in
/// G`), the index of that key in `co_consts`.
fn constant_key(list: &[Instr], at: usize, t: &OpTable, names: &[&str]) -> Option<usize> {
    let is = |i: usize, op: Option<u8>| op.is_some() && list.get(i).map(|ins| ins.op) == op;
    let load_const = Some(t.load_const);
    // A global loaded to be called has a NULL pushed with it (bit 0).
    if list[at].arg & 1 != 0 {
        return None;
    }
    if is(at + 1, load_const) && is(at + 2, t.binary_subscr) {
        return Some(list[at + 1].arg as usize);
    }
    if at > 0 && is(at - 1, load_const) && is(at + 1, t.contains_op) {
        return Some(list[at - 1].arg as usize);
    }
    // `.get` loaded as a method: 3.11 `LOAD_METHOD`, 3.12+ `LOAD_ATTR` with
    // its low bit set.
    let method = list.get(at + 1).is_some_and(|ins| {
        let get = |shift: u8| names.get((ins.arg >> shift) as usize) == Some(&"get");
        (Some(ins.op) == t.load_method && get(0))
            || (ins.op == t.load_attr
                && t.name_shift[usize::from(t.load_attr)] == 1
                && ins.arg & 1 == 1
                && get(1))
    });
    if !method || !is(at + 2, load_const) {
        return None;
    }
    let mut next = at + 3;
    let mut argc = 1;
    if is(next, load_const) {
        next += 1;
        argc = 2;
    }
    if is(next, t.precall) {
        if list[next].arg != argc {
            return None;
        }
        next += 1;
    }
    (is(next, t.call) && list[next].arg == argc).then_some(list[at + 2].arg as usize)
}

/// How many of a code object's first locals are its parameters (`*args`
/// and `**kwargs` included).
pub fn parameter_count(parts: &CodeParts<'_>) -> usize {
    (parts.argcount + parts.kwonlyargcount) as usize
        + usize::from(parts.flags & CO_VARARGS != 0)
        + usize::from(parts.flags & CO_VARKEYWORDS != 0)
}

/// Whether calls can only pass positional-or-keyword parameters (no
/// keyword-only ones, no `*args`, no `**kwargs`).
pub fn plain_parameters(parts: &CodeParts<'_>) -> bool {
    parts.kwonlyargcount == 0 && parts.flags & (CO_VARARGS | CO_VARKEYWORDS) == 0
}

/// The local variable names (`co_varnames`), parameters first.
pub fn varnames<'a, 'py>(
    parts: &'a CodeParts<'py>,
) -> impl Iterator<Item = Bound<'py, PyAny>> + 'a {
    parts
        .localsplusnames
        .iter()
        .zip(parts.localspluskinds.as_bytes())
        .filter(|(_, &k)| k & CO_FAST_LOCAL != 0)
        .map(|(n, _)| n)
}

/// The entries of a 3.11+ exception table: (start, length, target, depth
/// and lasti), in code units (`dis._parse_exception_table`). `None` if it
/// does not parse.
fn exception_entries(table: &[u8]) -> Option<Vec<[u32; 4]>> {
    fn varint(bytes: &mut impl Iterator<Item = u8>) -> Option<u32> {
        let mut b = bytes.next()?;
        let mut v = u32::from(b & 63);
        while b & 64 != 0 {
            b = bytes.next()?;
            if v > u32::MAX >> 6 {
                return None; // would overflow: not a table CPython wrote
            }
            v = v << 6 | u32::from(b & 63);
        }
        Some(v)
    }
    let mut bytes = table.iter().copied().peekable();
    let mut out = Vec::new();
    while bytes.peek().is_some() {
        let mut entry = [0u32; 4];
        for field in &mut entry {
            *field = varint(&mut bytes)?;
        }
        out.push(entry);
    }
    Some(out)
}

/// Constants: None, bool, int, float, complex, str, bytes, tuples and
/// frozensets of constants (see `Walker::set` for their order), Ellipsis,
/// and code objects.
fn const_digest(
    c: &Bound<'_, PyAny>,
    info: &mut CodeInfo,
    uses: &mut BTreeMap<String, Option<Vec<Py<PyAny>>>>,
) -> PyResult<Digest> {
    if c.is_instance_of::<PyCode>() {
        let nested = code_info(c)?;
        for g in &nested.globals {
            let name = g.bind(c.py()).to_str()?;
            let keys = nested
                .keys_of(name)
                .map(|k| k.iter().map(|k| k.clone_ref(c.py())).collect());
            note_use(uses, name, keys);
        }
        info.globals
            .extend(nested.globals.iter().map(|g| g.clone_ref(c.py())));
        info.attrs
            .extend(nested.attrs.iter().map(|a| a.clone_ref(c.py())));
        info.attr_hashes.extend_from_slice(&nested.attr_hashes);
        info.imports.extend(nested.imports.iter().cloned());
        info.dynamic |= nested.dynamic;
        info.writes_globals |= nested.writes_globals;
        return Ok(nested.digest);
    }
    let mut h = Hasher::new();
    if let Ok(t) = c.cast::<PyTuple>() {
        h.tag(Tag::Tuple);
        h.u64(t.len() as u64);
        for item in t.iter() {
            h.digest(const_digest(&item, info, uses)?);
        }
    } else if let Ok(s) = c.cast::<PyFrozenSet>() {
        let mut items: Vec<Digest> = Vec::with_capacity(s.len());
        let mut ordered = true;
        for item in s.iter() {
            ordered &= super::hash::unseeded(&item);
            items.push(const_digest(&item, info, uses)?);
        }
        // `for x in {8, 0}` iterates in an order set by the source: kept
        // where it is the same in every process (see `hash::unseeded`).
        if ordered {
            h.tag(Tag::FrozenSetInOrder);
        } else {
            items.sort_unstable();
            h.tag(Tag::FrozenSet);
        }
        h.u64(items.len() as u64);
        for d in items {
            h.digest(d);
        }
    } else {
        super::hash::plain_value(c, &mut h)?;
    }
    Ok(h.finish())
}
