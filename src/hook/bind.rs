//! Binding a call's arguments to a function's parameters, as CPython's
//! `initialize_locals` does when it builds a frame: the vectorcall
//! mechanism and the decorator key a call before deciding whether to run
//! it, so they need the arguments in the order the frame hook finds them in
//! a fresh frame (named parameters with keywords and defaults applied, then
//! the `*args` tuple and the `**kwargs` dict). One binder for every way a
//! call reaches us: a vectorcall ([`bind`]) or `(args, kwargs)` from Python
//! ([`bind_tuple`]).
//!
//! Any call that would raise (a missing or unexpected argument, a value
//! given twice) is not bound: the call then runs as is and the function
//! raises its own `TypeError`.

use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFunction, PyTuple};

use crate::cpython::code::{self, Params};
use crate::cpython::function;

/// One vectorcall, as CPython passed it to us.
#[derive(Clone, Copy)]
pub struct Call {
    pub callable: *mut PyObject,
    pub args: *const *mut PyObject,
    pub nargsf: usize,
    pub kwnames: *mut PyObject,
}

impl Call {
    /// Runs the call with `vc` (the default vectorcall).
    ///
    /// # Safety
    /// GIL held; the call's arguments are still live.
    #[inline(always)]
    pub unsafe fn run(self, vc: ffi::vectorcallfunc) -> *mut PyObject {
        // SAFETY: CPython's own arguments, forwarded unchanged.
        unsafe { vc(self.callable, self.args, self.nargsf, self.kwnames) }
    }

    /// Makes the same call of `to` (a new reference, NULL when it raised).
    ///
    /// # Safety
    /// As [`Call::run`]; `to` is live.
    #[inline]
    pub unsafe fn forward(self, to: *mut PyObject) -> *mut PyObject {
        // SAFETY: CPython's own arguments, forwarded unchanged (with
        // `PY_VECTORCALL_ARGUMENTS_OFFSET`, which our caller granted).
        unsafe { ffi::PyObject_Vectorcall(to, self.args, self.nargsf, self.kwnames) }
    }

    /// The argument values (positional ones, then one per keyword name) and
    /// how many are positional.
    ///
    /// # Safety
    /// As [`Call::run`].
    pub unsafe fn values<'a>(self) -> (&'a [*mut PyObject], usize) {
        // SAFETY: the vectorcall protocol: `args` holds the positional values
        // then one value per name in the `kwnames` tuple.
        unsafe {
            let npos = usize::try_from(ffi::PyVectorcall_NARGS(self.nargsf)).unwrap_or(0);
            let nkw = if self.kwnames.is_null() {
                0
            } else {
                usize::try_from(ffi::PyTuple_GET_SIZE(self.kwnames)).unwrap_or(0)
            };
            if npos + nkw == 0 {
                return (&[], 0);
            }
            (std::slice::from_raw_parts(self.args, npos + nkw), npos)
        }
    }
}

/// A call's arguments in frame order.
pub enum Args<'a> {
    /// An exact positional call: the caller's array itself.
    Borrowed(&'a [*mut PyObject]),
    /// Borrowed references, except the `*args` tuple and `**kwargs` dict at
    /// `made`, which this owns.
    Built {
        slots: Vec<*mut PyObject>,
        made: Vec<usize>,
    },
}

impl Args<'_> {
    pub fn slots(&self) -> &[*mut PyObject] {
        match self {
            Args::Borrowed(s) => s,
            Args::Built { slots, .. } => slots,
        }
    }
}

impl Drop for Args<'_> {
    fn drop(&mut self) {
        if let Args::Built { slots, made } = self {
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
) -> Option<Args<'a>> {
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
        return Some(Args::Borrowed(args.get(..npos)?));
    }
    // SAFETY: forwarded.
    unsafe { bind_slow(func, &p, args, npos, kwnames, nkw) }
}

/// The parameter names of `code` for `n` bound values: `co_localsplusnames`
/// (borrowed), whose first entries are the parameters in the order [`bind`]
/// fills its slots; `None` if it is shorter than `n`.
///
/// # Safety
/// GIL held; `code` a live code object.
pub unsafe fn parameter_names<'py>(
    py: Python<'py>,
    code: *mut PyObject,
    n: usize,
) -> Option<pyo3::Bound<'py, PyTuple>> {
    // SAFETY: `co_localsplusnames` is a live tuple owned by the code object.
    let names = unsafe { pyo3::Bound::from_borrowed_ptr(py, code::params(code).names) };
    let names = names.cast_into::<PyTuple>().ok()?;
    (names.len() >= n).then_some(names)
}

/// Bound arguments with their parameter names, in frame order.
pub type Named<'py> = Vec<(pyo3::Bound<'py, PyAny>, pyo3::Bound<'py, PyAny>)>;

/// [`bind`] for a call given as `args` and `kwargs` (from Python): the
/// bound arguments with their parameter names, in frame order. `None` when
/// the call would raise, `func` is not a Python function, or on a failure
/// (no exception is left set).
pub fn bind_tuple<'py>(
    func: &pyo3::Bound<'py, PyAny>,
    args: &pyo3::Bound<'py, PyTuple>,
    kwargs: Option<&pyo3::Bound<'py, PyDict>>,
) -> Option<Named<'py>> {
    let py = func.py();
    if !func.is_instance_of::<PyFunction>() {
        return None;
    }
    let mut values: Vec<*mut PyObject> = args.iter_borrowed().map(|v| v.as_ptr()).collect();
    let npos = values.len();
    // Held while the values are bound: the keyword names and values.
    let mut keywords = None;
    if let Some(k) = kwargs.filter(|k| !k.is_empty()) {
        let (names, kvalues): (Vec<_>, Vec<_>) = k.iter().unzip();
        values.extend(kvalues.iter().map(|v| v.as_ptr()));
        keywords = Some((PyTuple::new(py, names).ok()?, kvalues));
    }
    let kwnames = keywords
        .as_ref()
        .map_or(std::ptr::null_mut(), |(t, _)| t.as_ptr());
    // SAFETY: `func` is a live function (checked above) and its code a live
    // code object; every value is held by `args` or `keywords` (live while
    // this runs); `kwnames` is NULL or a tuple of the keyword names; the GIL
    // is held (`py`).
    unsafe {
        let code = function::code(func.as_ptr());
        let b = bind(func.as_ptr(), code, &values, npos, kwnames)?;
        let slots = b.slots();
        if slots.iter().any(|v| v.is_null()) {
            return None;
        }
        let names = parameter_names(py, code, slots.len())?;
        Some(
            slots
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    (
                        names.get_borrowed_item_unchecked(i).to_owned(),
                        pyo3::Bound::from_borrowed_ptr(py, v),
                    )
                })
                .collect(),
        )
    }
}

#[inline(never)]
unsafe fn bind_slow<'a>(
    func: *mut PyObject,
    p: &Params,
    args: &'a [*mut PyObject],
    npos: usize,
    kwnames: *mut PyObject,
    nkw: usize,
) -> Option<Args<'a>> {
    let named = p.argcount + p.kwonlyargcount;
    let varargs = p.flags & code::CO_VARARGS != 0;
    let varkw = p.flags & code::CO_VARKEYWORDS != 0;
    if args.len() != npos + nkw || (npos > p.argcount && !varargs) {
        return None;
    }
    let mut b = Args::Built {
        slots: vec![std::ptr::null_mut(); named + usize::from(varargs) + usize::from(varkw)],
        made: Vec::new(),
    };
    let Args::Built { slots, made } = &mut b else {
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
