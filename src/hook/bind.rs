//! Binding a vectorcall's arguments to a function's parameters, as
//! CPython's `initialize_locals` does when it builds a frame: the vectorcall
//! mechanism keys a call before deciding whether to run it, so it needs the
//! arguments in the order the frame hook finds them in a fresh frame (named
//! parameters with keywords and defaults applied, then the `*args` tuple and
//! the `**kwargs` dict).
//!
//! Any call that would raise (a missing or unexpected argument, a value
//! given twice) is not bound: the call then runs as is and the function
//! raises its own `TypeError`.

use pyo3::ffi::{self, PyObject};

use crate::cpython::code::{self, Params};
use crate::cpython::function;

/// A call's arguments in frame order.
pub enum Bound<'a> {
    /// An exact positional call: the caller's array itself.
    Borrowed(&'a [*mut PyObject]),
    /// Borrowed references, except the `*args` tuple and `**kwargs` dict at
    /// `made`, which this owns.
    Built {
        slots: Vec<*mut PyObject>,
        made: Vec<usize>,
    },
}

impl Bound<'_> {
    pub fn slots(&self) -> &[*mut PyObject] {
        match self {
            Bound::Borrowed(s) => s,
            Bound::Built { slots, .. } => slots,
        }
    }
}

impl Drop for Bound<'_> {
    fn drop(&mut self) {
        if let Bound::Built { slots, made } = self {
            for &i in made.iter() {
                // SAFETY: the GIL is held while a call is bound (the
                // vectorcall runs with it); `slots[i]` is a new reference
                // made by `bind`.
                unsafe { ffi::Py_XDECREF(slots[i]) };
            }
        }
    }
}

/// Binds `args` (`npos` positional values, then one per name in `kwnames`)
/// to the parameters of `func`, whose code is `code`. `None` when the call
/// would raise, or on a failure (memory: no exception is left set).
///
/// # Safety
/// GIL held; `func` a live function whose code is the live code object
/// `code`; `args` and `kwnames` (NULL or a tuple of str) as CPython passes
/// them to a vectorcall, live for `'a`.
pub unsafe fn bind<'a>(
    func: *mut PyObject,
    code: *mut PyObject,
    args: &'a [*mut PyObject],
    npos: usize,
    kwnames: *mut PyObject,
) -> Option<Bound<'a>> {
    // SAFETY: `code` is a live code object (caller).
    let p = unsafe { code::params(code) };
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a live tuple (caller).
        usize::try_from(unsafe { ffi::PyTuple_GET_SIZE(kwnames) }).ok()?
    };
    let rest = code::CO_VARARGS | code::CO_VARKEYWORDS;
    if nkw == 0 && p.flags & rest == 0 && p.kwonlyargcount == 0 && npos == p.argcount {
        return Some(Bound::Borrowed(args.get(..npos)?));
    }
    // SAFETY: forwarded.
    unsafe { bind_slow(func, &p, args, npos, kwnames, nkw) }
}

#[inline(never)]
unsafe fn bind_slow<'a>(
    func: *mut PyObject,
    p: &Params,
    args: &'a [*mut PyObject],
    npos: usize,
    kwnames: *mut PyObject,
    nkw: usize,
) -> Option<Bound<'a>> {
    let named = p.argcount + p.kwonlyargcount;
    let varargs = p.flags & code::CO_VARARGS != 0;
    let varkw = p.flags & code::CO_VARKEYWORDS != 0;
    if args.len() != npos + nkw || (npos > p.argcount && !varargs) {
        return None;
    }
    let mut b = Bound::Built {
        slots: vec![std::ptr::null_mut(); named + usize::from(varargs) + usize::from(varkw)],
        made: Vec::new(),
    };
    let Bound::Built { slots, made } = &mut b else {
        return None;
    };
    let given = npos.min(p.argcount);
    slots[..given].copy_from_slice(&args[..given]);
    // SAFETY: GIL held; the new tuple and dict are owned by `b` (dropped
    // with it); every other slot is a borrowed reference from `args` or the
    // function's defaults, live while the call is.
    unsafe {
        if varargs {
            let extra = &args[given..npos];
            let t = ffi::PyTuple_New(ffi::Py_ssize_t::try_from(extra.len()).ok()?);
            if t.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            for (i, &v) in extra.iter().enumerate() {
                ffi::Py_INCREF(v);
                ffi::PyTuple_SET_ITEM(t, i as ffi::Py_ssize_t, v);
            }
            slots[named] = t;
            made.push(named);
        }
        let kwdict = if varkw {
            let d = ffi::PyDict_New();
            if d.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            let at = named + usize::from(varargs);
            slots[at] = d;
            made.push(at);
            d
        } else {
            std::ptr::null_mut()
        };
        for j in 0..nkw {
            let name = ffi::PyTuple_GET_ITEM(kwnames, j as ffi::Py_ssize_t);
            let value = args[npos + j];
            if ffi::PyUnicode_Check(name) == 0 {
                return None;
            }
            // Positional-only names never match a keyword (with `**kwargs`
            // the keyword lands there).
            match param_index(p, name, p.posonlyargcount..named)? {
                Some(i) if slots[i].is_null() => slots[i] = value,
                Some(_) => return None, // given twice
                None if !kwdict.is_null() => {
                    if ffi::PyDict_SetItem(kwdict, name, value) != 0 {
                        ffi::PyErr_Clear();
                        return None;
                    }
                }
                None => return None, // unexpected keyword
            }
        }
        let defaults = function::defaults(func);
        let ndefaults = if defaults.is_null() || ffi::PyTuple_Check(defaults) == 0 {
            0
        } else {
            usize::try_from(ffi::PyTuple_GET_SIZE(defaults)).ok()?
        };
        // The last `ndefaults` positional parameters have defaults (a
        // `__defaults__` longer than the parameters is allowed: its first
        // items are never used).
        let skipped = ndefaults.saturating_sub(p.argcount);
        let first_default = p.argcount + skipped - ndefaults;
        for (i, slot) in slots.iter_mut().enumerate().take(p.argcount).skip(given) {
            if slot.is_null() {
                if i < first_default {
                    return None; // missing
                }
                let d = i - first_default + skipped;
                *slot = ffi::PyTuple_GET_ITEM(defaults, d as ffi::Py_ssize_t);
            }
        }
        let kwdefaults = function::kwdefaults(func);
        for (i, slot) in slots.iter_mut().enumerate().take(named).skip(p.argcount) {
            if slot.is_null() {
                if kwdefaults.is_null() || ffi::PyDict_Check(kwdefaults) == 0 {
                    return None;
                }
                let name = ffi::PyTuple_GET_ITEM(p.names, i as ffi::Py_ssize_t);
                // Borrowed; NULL (no exception for a str key) when absent.
                let v = ffi::PyDict_GetItem(kwdefaults, name);
                if v.is_null() {
                    return None; // missing keyword-only argument
                }
                *slot = v;
            }
        }
    }
    Some(b)
}

/// The index in `range` of the parameter named `name` (a str): `Some(None)`
/// when none is, `None` when the comparison failed.
///
/// # Safety
/// GIL held; `p.names` a live tuple of str covering `range`.
unsafe fn param_index(
    p: &Params,
    name: *mut PyObject,
    range: std::ops::Range<usize>,
) -> Option<Option<usize>> {
    // SAFETY: forwarded; names are interned, so identity almost always
    // decides; equal strings that are different objects are compared.
    unsafe {
        for i in range.clone() {
            if ffi::PyTuple_GET_ITEM(p.names, i as ffi::Py_ssize_t) == name {
                return Some(Some(i));
            }
        }
        for i in range {
            let n = ffi::PyTuple_GET_ITEM(p.names, i as ffi::Py_ssize_t);
            match ffi::PyUnicode_Compare(n, name) {
                0 => return Some(Some(i)),
                -1 if !ffi::PyErr_Occurred().is_null() => {
                    ffi::PyErr_Clear();
                    return None;
                }
                _ => {}
            }
        }
    }
    Some(None)
}
