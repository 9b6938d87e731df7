//! Aliasing: does a result share a mutable object with the world outside it?
//!
//! A hit returns a copy (unpickled). That copy behaves like the call's own
//! result only when nothing outside the result held a reference to any
//! mutable object in it: an argument returned as is (`__iter__` returning
//! `self`), a module-level singleton or sentinel, a dict's existing value,
//! a view of an input array. Such an object has more references than the
//! result graph itself accounts for.
//!
//! So: walk the result graph (`tp_traverse` gives exactly the references an
//! object holds; ndarray's `base` and object arrays' elements are added),
//! count the references each object receives from inside it, and report the
//! first mutable object whose reference count is higher. The caller passes
//! the result inside a one-element list that holds the only reference it
//! owns, so the root's count is exact too.
//!
//! Not walked into (their identity is kept on unpickling, or they are
//! values): types, modules, functions, code, builtins; `opaque` types (e.g.
//! pandas objects under copy-on-write, whose sharing cannot be observed) are
//! checked themselves but not walked into.
use std::ffi::{c_int, c_void};

use ahash::AHashMap;
use pyo3::ffi::{self, PyObject};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyModule, PyTuple};

/// Objects walked at most (a bigger result is not checked in full: the
/// caller treats that as "cannot tell").
pub const MAX_OBJECTS: usize = 5_000_000;

pub enum Shared<'py> {
    None,
    /// This object is referenced from outside the result.
    Object(Bound<'py, PyAny>),
    /// This string of the result shows a memory address (a default
    /// `repr`, `<... at 0x7f...>`), which differs in every process.
    Address(String),
    TooBig,
}

struct Walk {
    /// Object -> references received from inside the result graph.
    seen: AHashMap<usize, u32>,
    stack: Vec<*mut PyObject>,
    /// The first string seen that shows a memory address.
    address: Option<String>,
}

/// Whether `text` holds ` at 0x` followed by at least 6 hex digits, as
/// default reprs (`object.__repr__`, functions, builtins) write addresses.
fn shows_address(text: &str) -> bool {
    text.match_indices(" at 0x").any(|(i, m)| {
        let digits = text[i + m.len()..]
            .bytes()
            .take_while(u8::is_ascii_hexdigit)
            .count();
        digits >= 6
    })
}

/// Values that need no walk and no check: immutable builtins (their
/// identity cannot be observed through a copy) and objects kept by
/// reference (types, modules, functions, code).
///
/// # Safety
/// GIL held; `o` live.
unsafe fn is_leaf(o: *mut PyObject) -> bool {
    // SAFETY: type checks on a live object.
    unsafe {
        ffi::PyLong_CheckExact(o) != 0
            || ffi::PyFloat_CheckExact(o) != 0
            || ffi::PyUnicode_CheckExact(o) != 0
            || ffi::PyBytes_CheckExact(o) != 0
            || ffi::PyBool_Check(o) != 0
            || o == ffi::Py_None()
            || o == ffi::Py_Ellipsis()
            || o == ffi::Py_NotImplemented()
            || ffi::PyComplex_CheckExact(o) != 0
            || ffi::PyType_Check(o) != 0
            || ffi::PyModule_Check(o) != 0
            || ffi::PyFunction_Check(o) != 0
            || ffi::PyCFunction_Check(o) != 0
            || ffi::PyCode_Check(o) != 0
            || ffi::PyRange_Check(o) != 0
    }
}

/// `tp_traverse` callback: one reference held by the object being walked.
unsafe extern "C" fn visit(child: *mut PyObject, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` passed by `children`; `child` is a live
    // object (borrowed) or NULL.
    unsafe {
        if !child.is_null() {
            (*arg.cast::<Walk>()).edge(child);
        }
    }
    0
}

impl Walk {
    /// A reference to `child` from inside the graph.
    ///
    /// # Safety
    /// GIL held; `child` live.
    unsafe fn edge(&mut self, child: *mut PyObject) {
        // SAFETY: forwarded.
        if unsafe { is_leaf(child) } {
            // SAFETY: forwarded; a str's UTF-8 view lives as long as it.
            unsafe {
                if self.address.is_none() && ffi::PyUnicode_CheckExact(child) != 0 {
                    let mut n: ffi::Py_ssize_t = 0;
                    let p = ffi::PyUnicode_AsUTF8AndSize(child, &mut n);
                    if p.is_null() {
                        ffi::PyErr_Clear();
                    } else {
                        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), n as usize);
                        if let Ok(text) = std::str::from_utf8(bytes) {
                            if shows_address(text) {
                                self.address = Some(text.chars().take(80).collect());
                            }
                        }
                    }
                }
            }
            return;
        }
        let n = self.seen.entry(child as usize).or_insert(0);
        if *n == 0 {
            self.stack.push(child);
        }
        *n += 1;
    }
}

/// The `sys` module (importing it on every check cost a few thousand
/// instructions per miss); `sys.modules` is read from it each time.
static SYS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// The object of `obj` in `shared` whose references are not all from inside
/// `boxed[0]`'s graph, if any (see the module docs). `opaque`: types checked
/// but not walked into; `immutable`: types whose sharing cannot be observed.
pub fn shared<'py>(
    boxed: &Bound<'py, PyList>,
    opaque: &Bound<'py, PyTuple>,
    immutable: &Bound<'py, PyTuple>,
) -> PyResult<Shared<'py>> {
    let py = boxed.py();
    if boxed.len() != 1 {
        return Ok(Shared::None);
    }
    let mut w = Walk {
        seen: AHashMap::new(),
        stack: Vec::new(),
        address: None,
    };
    let root = boxed.get_item(0)?;
    // SAFETY: GIL held; `root` live (the box holds it).
    unsafe { w.edge(root.as_ptr()) };
    let ndarray = SYS
        .get_or_try_init(py, || py.import("sys").map(Bound::unbind))?
        .bind(py)
        .getattr(intern!(py, "modules"))?
        .get_item("numpy")
        .ok()
        .and_then(|np| np.getattr("ndarray").ok());
    let mut type_kind: AHashMap<usize, bool> = AHashMap::new();
    let mut walked = 0usize;
    while let Some(o) = w.stack.pop() {
        walked += 1;
        if walked > MAX_OBJECTS {
            return Ok(Shared::TooBig);
        }
        // SAFETY: every pointer on the stack is a live object reachable from
        // the box (borrowed; the graph does not change while we walk: no
        // Python code runs except `isinstance` on types and attribute reads
        // of ndarrays, which do not mutate the result).
        let obj = unsafe { Bound::from_borrowed_ptr(py, o) };
        let tp = obj.get_type();
        let opaque_type = *type_kind
            .entry(tp.as_ptr() as usize)
            .or_insert_with(|| obj.is_instance(opaque).unwrap_or(false));
        if opaque_type {
            continue;
        }
        if let Some(nd) = &ndarray {
            if obj.is_instance(nd).unwrap_or(false) {
                array_children(&mut w, &obj)?;
                continue;
            }
        }
        // SAFETY: GIL held; `o` live; `tp_traverse` only calls `visit` with
        // borrowed references and our `Walk`.
        unsafe {
            if ffi::PyObject_IS_GC(o) != 0 {
                if let Some(traverse) = (*ffi::Py_TYPE(o)).tp_traverse {
                    traverse(o, visit, (&mut w as *mut Walk).cast());
                }
            }
        }
    }
    if let Some(text) = w.address.take() {
        return Ok(Shared::Address(text));
    }
    // The box's own reference to the root.
    let root_ptr = root.as_ptr() as usize;
    drop(root);
    let mut found: Option<(usize, usize)> = None;
    for (&addr, &internal) in &w.seen {
        // SAFETY: each address is a live object (reachable from the box,
        // which we still hold); reading its reference count needs the GIL.
        let refcnt = unsafe { ffi::Py_REFCNT(addr as *mut PyObject) } as usize;
        if refcnt > internal as usize {
            // Prefer the root, else any (deterministic: lowest address).
            let rank = usize::from(addr != root_ptr);
            if found.is_none_or(|(r, a)| (rank, addr) < (r, a)) {
                // SAFETY: as above.
                let obj = unsafe { Bound::from_borrowed_ptr(py, addr as *mut PyObject) };
                if obj.is_instance(immutable).unwrap_or(false) || by_reference(&obj) {
                    continue;
                }
                found = Some((rank, addr));
            }
        }
    }
    Ok(match found {
        Some((_, addr)) => {
            // SAFETY: live (reachable from the box we hold); a new reference
            // for the caller.
            let obj = unsafe { Bound::from_borrowed_ptr(py, addr as *mut PyObject) };
            Shared::Object(obj)
        }
        None => Shared::None,
    })
}

/// Immutable containers (their contents were walked) and objects whose
/// pickle is a reference to a global (singletons, enum members): a copy is
/// the same object or cannot be told apart.
fn by_reference(obj: &Bound<'_, PyAny>) -> bool {
    if obj.is_exact_instance_of::<PyTuple>()
        || obj.is_exact_instance_of::<pyo3::types::PyFrozenSet>()
    {
        return true;
    }
    obj.call_method1("__reduce_ex__", (2,))
        .is_ok_and(|r| r.is_instance_of::<pyo3::types::PyString>())
}

/// An ndarray's references: its `base` (a view keeps what it views) and,
/// for object arrays, its elements.
fn array_children(w: &mut Walk, arr: &Bound<'_, PyAny>) -> PyResult<()> {
    let base = arr.getattr("base")?;
    if !base.is_none() {
        // SAFETY: GIL held; `base` is live (we hold a reference until the
        // edge is counted; the array keeps it alive after).
        unsafe { w.edge(base.as_ptr()) };
    }
    let hasobject: bool = arr.getattr("dtype")?.getattr("hasobject")?.extract()?;
    if hasobject {
        for item in arr.call_method1("ravel", ("K",))?.try_iter()? {
            let item = item?;
            // SAFETY: as for `base`: the array holds each element.
            unsafe { w.edge(item.as_ptr()) };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shows_address;

    #[test]
    fn addresses_in_default_reprs() {
        assert!(shows_address("<function f at 0x7f568e7105e0>"));
        assert!(shows_address("x <Foo object at 0x55d0c0ffee00> y"));
        assert!(!shows_address("meet at 0x10"));
        assert!(!shows_address("0x7f568e7105e0"));
        assert!(!shows_address(""));
    }
}
