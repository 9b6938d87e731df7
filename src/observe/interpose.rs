//! The unsafe half of the observer: trampolines put in place of chosen C
//! functions' `PyMethodDef.ml_meth`.
//!
//! Every call of a C function goes through its method definition's
//! `ml_meth` pointer, whoever makes it: the interpreter's specialized call
//! instructions, `vectorcall`, `tp_call`, C code calling through the C API
//! (`functools.partial`, `sorted(key=...)`). Replacing that pointer with a
//! trampoline of the same calling convention therefore sees every call, with
//! its arguments, on every supported version, and costs nothing for any
//! other function. (A profile function, the alternative, costs 3.4x on
//! call-heavy Python code on 3.11 and 4.2x on 3.12, even doing nothing.)
//!
//! A trampoline is a distinct function per slot (a const generic), so it
//! knows which original to call. It reads one thread-local and one context
//! variable; only while an observation is active in the calling context does
//! it call the Python handler (see `super`).
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::cpython::exception::Pending;
use pyo3::ffi::{self, PyObject, Py_ssize_t};

/// How many C functions can be watched.
pub const SLOTS: usize = 48;

/// What the handler is told, and when.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Mode {
    /// After the call: `handler(recorders, tag, self, args, kwargs, result, error)`.
    Notify = 1,
    /// Before the call: `handler(recorders, tag, self, args, kwargs, None, None)`
    /// returns a replacement for the first argument (thread start).
    WrapFirst = 2,
}

/// The calling conventions of `ml_flags` (ignoring METH_CLASS, METH_STATIC,
/// METH_COEXIST, which do not change the C signature).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Conv {
    NoArgs,
    O,
    VarArgs,
    VarKw,
    Fast,
    FastKw,
    Method,
}

impl Conv {
    fn of(flags: i32) -> Option<Conv> {
        let f = flags
            & (ffi::METH_VARARGS
                | ffi::METH_KEYWORDS
                | ffi::METH_NOARGS
                | ffi::METH_O
                | ffi::METH_FASTCALL
                | ffi::METH_METHOD);
        Some(match f {
            x if x == ffi::METH_NOARGS => Conv::NoArgs,
            x if x == ffi::METH_O => Conv::O,
            x if x == ffi::METH_VARARGS => Conv::VarArgs,
            x if x == ffi::METH_VARARGS | ffi::METH_KEYWORDS => Conv::VarKw,
            x if x == ffi::METH_FASTCALL => Conv::Fast,
            x if x == ffi::METH_FASTCALL | ffi::METH_KEYWORDS => Conv::FastKw,
            x if x == ffi::METH_METHOD | ffi::METH_FASTCALL | ffi::METH_KEYWORDS => Conv::Method,
            _ => return None,
        })
    }
}

struct Slot {
    /// The patched method definition (NULL: the slot is free).
    def: AtomicPtr<ffi::PyMethodDef>,
    /// The original `ml_meth`.
    orig: AtomicUsize,
    /// The table entry's tag (a strong reference), passed to the handler.
    tag: AtomicPtr<PyObject>,
    mode: AtomicU8,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    def: AtomicPtr::new(std::ptr::null_mut()),
    orig: AtomicUsize::new(0),
    tag: AtomicPtr::new(std::ptr::null_mut()),
    mode: AtomicU8::new(0),
};

static TABLE: [Slot; SLOTS] = [FREE; SLOTS];

/// The context variable whose value (a non-empty tuple) says an observation
/// is active, and the handler (strong references; NULL until installed).
pub static VAR: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());
pub static HANDLER: AtomicPtr<PyObject> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    /// Depth of bytecache's own work on this thread (the handler, the store,
    /// hashing files): calls made there are not the observed call's.
    pub static INTERNAL: Cell<u32> = const { Cell::new(0) };
}

/// The observation active in the calling context: a new reference to the
/// context variable's value when it is a non-empty tuple, else NULL.
///
/// # Safety
/// GIL held.
unsafe fn active() -> *mut PyObject {
    if INTERNAL.with(Cell::get) != 0 {
        return std::ptr::null_mut();
    }
    let var = VAR.load(Ordering::Acquire);
    if var.is_null() {
        return std::ptr::null_mut();
    }
    let mut value: *mut PyObject = std::ptr::null_mut();
    // SAFETY: GIL held; `var` is a live ContextVar we own a reference to;
    // `value` receives a new reference or NULL.
    unsafe {
        if ffi::PyContextVar_Get(var, std::ptr::null_mut(), &mut value) < 0 {
            ffi::PyErr_Clear();
            return std::ptr::null_mut();
        }
        if value.is_null() {
            return value;
        }
        if ffi::PyTuple_CheckExact(value) == 0 || ffi::PyTuple_GET_SIZE(value) == 0 {
            ffi::Py_DECREF(value);
            return std::ptr::null_mut();
        }
    }
    value
}

/// One call of a watched function, as the trampoline received it (all
/// pointers borrowed from the caller).
#[derive(Clone, Copy)]
struct Call {
    conv: Conv,
    slf: *mut PyObject,
    cls: *mut ffi::PyTypeObject,
    /// `O`: the argument; `VarArgs`/`VarKw`: the argument tuple.
    a: *mut PyObject,
    /// `VarKw`: the keyword dict (or NULL); `FastKw`/`Method`: kwnames.
    k: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
}

impl Call {
    /// Calls the original function.
    ///
    /// # Safety
    /// GIL held; `orig` is the original `ml_meth` of a definition whose
    /// convention is `self.conv`; the pointers are the caller's.
    unsafe fn original(&self, orig: usize) -> *mut PyObject {
        // SAFETY: `orig` was read from a method definition with this
        // convention (see `patch`), so the transmuted signature is its own.
        unsafe {
            match self.conv {
                Conv::NoArgs | Conv::O | Conv::VarArgs => {
                    let f: ffi::PyCFunction = std::mem::transmute(orig);
                    f(self.slf, self.a)
                }
                Conv::VarKw => {
                    let f: ffi::PyCFunctionWithKeywords = std::mem::transmute(orig);
                    f(self.slf, self.a, self.k)
                }
                Conv::Fast => {
                    let f: ffi::PyCFunctionFast = std::mem::transmute(orig);
                    f(self.slf, self.args.cast_mut(), self.nargs)
                }
                Conv::FastKw => {
                    let f: ffi::PyCFunctionFastWithKeywords = std::mem::transmute(orig);
                    f(self.slf, self.args, self.nargs, self.k)
                }
                Conv::Method => {
                    let f: ffi::PyCMethod = std::mem::transmute(orig);
                    f(self.slf, self.cls, self.args, self.nargs, self.k)
                }
            }
        }
    }

    /// The arguments as `(tuple, dict or None)`: new references (NULL on
    /// a memory error, with the error cleared).
    ///
    /// # Safety
    /// GIL held; the pointers are the caller's.
    unsafe fn as_python(&self) -> Option<(*mut PyObject, *mut PyObject)> {
        // SAFETY: GIL held; every pointer is live for the call's duration;
        // PyTuple_SET_ITEM steals the reference taken just before.
        unsafe {
            let (tuple, kw) = match self.conv {
                Conv::NoArgs => (ffi::PyTuple_New(0), ffi::Py_None()),
                Conv::O => (ffi::PyTuple_Pack(1, self.a), ffi::Py_None()),
                Conv::VarArgs | Conv::VarKw => {
                    ffi::Py_INCREF(self.a);
                    let k = if self.k.is_null() {
                        ffi::Py_None()
                    } else {
                        self.k
                    };
                    (self.a, k)
                }
                Conv::Fast | Conv::FastKw | Conv::Method => {
                    let t = ffi::PyTuple_New(self.nargs);
                    if t.is_null() {
                        ffi::PyErr_Clear();
                        return None;
                    }
                    for i in 0..self.nargs {
                        let v = *self.args.offset(i);
                        ffi::Py_INCREF(v);
                        ffi::PyTuple_SET_ITEM(t, i, v);
                    }
                    if self.k.is_null() || self.conv == Conv::Fast {
                        (t, ffi::Py_None())
                    } else {
                        let d = ffi::PyDict_New();
                        let n = ffi::PyTuple_GET_SIZE(self.k);
                        for j in 0..n {
                            let name = ffi::PyTuple_GET_ITEM(self.k, j);
                            let v = *self.args.offset(self.nargs + j);
                            if d.is_null() || ffi::PyDict_SetItem(d, name, v) < 0 {
                                ffi::PyErr_Clear();
                                ffi::Py_XDECREF(d);
                                ffi::Py_DECREF(t);
                                return None;
                            }
                        }
                        return Some((t, d));
                    }
                }
            };
            if tuple.is_null() {
                ffi::PyErr_Clear();
                return None;
            }
            ffi::Py_INCREF(kw);
            Some((tuple, kw))
        }
    }

    /// Calls the original with the first argument replaced by `first`
    /// (borrowed).
    ///
    /// # Safety
    /// As [`Call::original`]; `nargs >= 1` (or a non-empty tuple).
    unsafe fn original_with_first(&self, orig: usize, first: *mut PyObject) -> *mut PyObject {
        // SAFETY: as `original`; the replacement tuple/array lives until
        // the call returns.
        unsafe {
            match self.conv {
                Conv::O => Call { a: first, ..*self }.original(orig),
                Conv::VarArgs | Conv::VarKw => {
                    let n = ffi::PyTuple_GET_SIZE(self.a);
                    let t = ffi::PyTuple_New(n);
                    if t.is_null() {
                        return std::ptr::null_mut();
                    }
                    for i in 0..n {
                        let v = if i == 0 {
                            first
                        } else {
                            ffi::PyTuple_GET_ITEM(self.a, i)
                        };
                        ffi::Py_INCREF(v);
                        ffi::PyTuple_SET_ITEM(t, i, v);
                    }
                    let r = Call { a: t, ..*self }.original(orig);
                    ffi::Py_DECREF(t);
                    r
                }
                Conv::Fast | Conv::FastKw | Conv::Method => {
                    let total = self.nargs
                        + if self.k.is_null() || self.conv == Conv::Fast {
                            0
                        } else {
                            ffi::PyTuple_GET_SIZE(self.k)
                        };
                    let mut v: Vec<*mut PyObject> =
                        (0..total).map(|i| *self.args.offset(i)).collect();
                    v[0] = first;
                    Call {
                        args: v.as_ptr(),
                        ..*self
                    }
                    .original(orig)
                }
                Conv::NoArgs => self.original(orig),
            }
        }
    }
}

/// What every trampoline does.
///
/// # Safety
/// Called by CPython (through a patched `ml_meth`) with the GIL held and
/// the arguments of slot `i`'s convention.
unsafe fn enter(i: usize, call: Call) -> *mut PyObject {
    let slot = &TABLE[i];
    let orig = slot.orig.load(Ordering::Acquire);
    // SAFETY: GIL held (CPython contract).
    let recorders = unsafe { active() };
    if recorders.is_null() {
        // SAFETY: the caller's arguments, the slot's original.
        return unsafe { call.original(orig) };
    }
    let tag = slot.tag.load(Ordering::Acquire);
    let mode = slot.mode.load(Ordering::Acquire);
    // SAFETY: GIL held; `recorders` is a new reference we release here.
    unsafe {
        let r = if mode == Mode::WrapFirst as u8 && (call.nargs > 0 || !call.a.is_null()) {
            let first = notify(recorders, tag, &call, std::ptr::null_mut(), true);
            if first.is_null() || first == ffi::Py_None() {
                ffi::Py_XDECREF(first);
                call.original(orig)
            } else {
                let r = call.original_with_first(orig, first);
                ffi::Py_DECREF(first);
                r
            }
        } else {
            let r = call.original(orig);
            let out = notify(recorders, tag, &call, r, false);
            if out.is_null() && !r.is_null() {
                // The handler was interrupted (KeyboardInterrupt): it wins.
                ffi::Py_DECREF(r);
                ffi::Py_DECREF(recorders);
                return std::ptr::null_mut();
            }
            ffi::Py_XDECREF(out);
            r
        };
        ffi::Py_DECREF(recorders);
        r
    }
}

/// Calls the handler, with the observed call's error (if `result` is NULL
/// after the call) passed in and restored after. Returns the handler's
/// result (a new reference), `None` when it failed with an `Exception`
/// (reported as unraisable), or NULL when it was interrupted (the
/// interrupt is left set).
///
/// # Safety
/// GIL held; `recorders` and `tag` live; `call` the caller's.
unsafe fn notify(
    recorders: *mut PyObject,
    tag: *mut PyObject,
    call: &Call,
    result: *mut PyObject,
    before: bool,
) -> *mut PyObject {
    let handler = HANDLER.load(Ordering::Acquire);
    if handler.is_null() || tag.is_null() {
        // SAFETY: GIL held.
        return unsafe { ffi::Py_NewRef(ffi::Py_None()) };
    }
    // SAFETY: GIL held; every reference taken here is released here; the
    // pending error of a failed call is saved and restored around the
    // handler so the caller sees it unchanged.
    unsafe {
        let failed = !before && result.is_null();
        let pending = failed.then(|| Pending::take());
        let ev = pending
            .as_ref()
            .map_or(std::ptr::null_mut(), Pending::value);
        let restore = |pending: Option<Pending>| {
            if let Some(p) = pending {
                p.restore();
            }
        };
        let Some((args, kwargs)) = call.as_python() else {
            restore(pending);
            return ffi::Py_NewRef(ffi::Py_None());
        };
        let none = ffi::Py_None();
        let slf = if call.slf.is_null() { none } else { call.slf };
        let res = if result.is_null() { none } else { result };
        let err = if ev.is_null() { none } else { ev };
        let argv = [recorders, tag, slf, args, kwargs, res, err];
        ffi::Py_INCREF(handler);
        INTERNAL.with(|c| c.set(c.get() + 1));
        let out = ffi::PyObject_Vectorcall(handler, argv.as_ptr(), 7, std::ptr::null_mut());
        INTERNAL.with(|c| c.set(c.get() - 1));
        ffi::Py_DECREF(handler);
        ffi::Py_DECREF(args);
        ffi::Py_DECREF(kwargs);
        if out.is_null() {
            if ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) != 0 {
                ffi::PyErr_WriteUnraisable(tag);
                restore(pending);
                return ffi::Py_NewRef(none);
            }
            // An interrupt: drop the call's own error, keep the interrupt.
            drop(pending);
            return std::ptr::null_mut();
        }
        restore(pending);
        out
    }
}

macro_rules! trampolines {
    ($($i:literal)*) => {
        /// The trampoline of each slot, per convention.
        const NOARGS_O_VARARGS: [ffi::PyCFunction; SLOTS] = [$(t_a::<$i>),*];
        const VARKW: [ffi::PyCFunctionWithKeywords; SLOTS] = [$(t_vk::<$i>),*];
        const FAST: [ffi::PyCFunctionFast; SLOTS] = [$(t_f::<$i>),*];
        const FASTKW: [ffi::PyCFunctionFastWithKeywords; SLOTS] = [$(t_fk::<$i>),*];
        const METHOD: [ffi::PyCMethod; SLOTS] = [$(t_m::<$i>),*];
    };
}

trampolines!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
    32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47);

const BLANK: Call = Call {
    conv: Conv::NoArgs,
    slf: std::ptr::null_mut(),
    cls: std::ptr::null_mut(),
    a: std::ptr::null_mut(),
    k: std::ptr::null_mut(),
    args: std::ptr::null(),
    nargs: 0,
};

/// NOARGS, O and VARARGS share the `PyCFunction` signature; the slot's
/// recorded convention tells them apart.
unsafe extern "C" fn t_a<const I: usize>(slf: *mut PyObject, a: *mut PyObject) -> *mut PyObject {
    let conv = CONVS[I].load(Ordering::Acquire);
    let conv = match conv {
        0 => Conv::NoArgs,
        1 => Conv::O,
        _ => Conv::VarArgs,
    };
    // SAFETY: CPython calls this with the slot's convention (see `patch`).
    unsafe {
        enter(
            I,
            Call {
                conv,
                slf,
                a,
                ..BLANK
            },
        )
    }
}

unsafe extern "C" fn t_vk<const I: usize>(
    slf: *mut PyObject,
    a: *mut PyObject,
    k: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `t_a`.
    unsafe {
        enter(
            I,
            Call {
                conv: Conv::VarKw,
                slf,
                a,
                k,
                ..BLANK
            },
        )
    }
}

unsafe extern "C" fn t_f<const I: usize>(
    slf: *mut PyObject,
    args: *mut *mut PyObject,
    nargs: Py_ssize_t,
) -> *mut PyObject {
    // SAFETY: as `t_a`.
    unsafe {
        enter(
            I,
            Call {
                conv: Conv::Fast,
                slf,
                args: args.cast_const(),
                nargs,
                ..BLANK
            },
        )
    }
}

unsafe extern "C" fn t_fk<const I: usize>(
    slf: *mut PyObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    k: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `t_a`.
    unsafe {
        enter(
            I,
            Call {
                conv: Conv::FastKw,
                slf,
                args,
                nargs,
                k,
                ..BLANK
            },
        )
    }
}

unsafe extern "C" fn t_m<const I: usize>(
    slf: *mut PyObject,
    cls: *mut ffi::PyTypeObject,
    args: *const *mut PyObject,
    nargs: Py_ssize_t,
    k: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: as `t_a`.
    unsafe {
        enter(
            I,
            Call {
                conv: Conv::Method,
                slf,
                cls,
                args,
                nargs,
                k,
                ..BLANK
            },
        )
    }
}

/// `t_a`'s convention per slot: 0 NOARGS, 1 O, 2 VARARGS.
#[allow(clippy::declare_interior_mutable_const)]
const UNSET: AtomicU8 = AtomicU8::new(2);
static CONVS: [AtomicU8; SLOTS] = [UNSET; SLOTS];

/// The writable mappings of this process (`start..end`), read from
/// `/proc/self/maps` once and again when an address is in none of them (a
/// module loaded since).
static WRITABLE: std::sync::Mutex<Vec<(usize, usize)>> = std::sync::Mutex::new(Vec::new());

fn read_writable() -> Vec<(usize, usize)> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (range, perms) = (parts.next()?, parts.next()?);
            let (lo, hi) = range.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            perms.contains('w').then_some((lo, hi))
        })
        .collect()
}

/// Whether a method definition at `addr` lies in writable memory (method
/// definitions are normally static, writable data; a `const` one is not).
fn writable(addr: usize) -> bool {
    let end = addr + std::mem::size_of::<ffi::PyMethodDef>();
    let inside = |ranges: &[(usize, usize)]| ranges.iter().any(|&(lo, hi)| lo <= addr && end <= hi);
    let mut ranges = WRITABLE.lock().unwrap_or_else(|p| p.into_inner());
    if inside(&ranges) {
        return true;
    }
    *ranges = read_writable();
    inside(&ranges)
}

/// Why a function cannot be watched.
#[derive(Debug)]
pub enum Refused {
    NotBuiltin,
    Convention,
    ReadOnly,
    Full,
}

/// Watches `obj` (a builtin function or method descriptor): its calls are
/// reported with `tag` (borrowed; a reference is kept). Watching the same
/// definition twice keeps the first tag.
///
/// # Safety
/// GIL held; `obj` and `tag` live.
pub unsafe fn patch(obj: *mut PyObject, tag: *mut PyObject, mode: Mode) -> Result<(), Refused> {
    // SAFETY: forwarded.
    let def = unsafe { crate::cpython::methods::method_def(obj) };
    if def.is_null() {
        return Err(Refused::NotBuiltin);
    }
    if TABLE.iter().any(|s| s.def.load(Ordering::Acquire) == def) {
        return Ok(());
    }
    // SAFETY: `def` is a live method definition (it backs a live object).
    let flags = unsafe { (*def).ml_flags };
    let conv = Conv::of(flags).ok_or(Refused::Convention)?;
    if !writable(def as usize) {
        return Err(Refused::ReadOnly);
    }
    let i = TABLE
        .iter()
        .position(|s| s.def.load(Ordering::Acquire).is_null())
        .ok_or(Refused::Full)?;
    let slot = &TABLE[i];
    // SAFETY: every variant of the union is a function pointer of the same
    // size; this reads the pointer whatever its signature.
    let orig = unsafe { (*def).ml_meth.PyCFunction } as usize;
    slot.orig.store(orig, Ordering::Release);
    // SAFETY: GIL held; a reference the slot owns.
    slot.tag
        .store(unsafe { ffi::Py_NewRef(tag) }, Ordering::Release);
    slot.mode.store(mode as u8, Ordering::Release);
    CONVS[i].store(
        match conv {
            Conv::NoArgs => 0,
            Conv::O => 1,
            _ => 2,
        },
        Ordering::Release,
    );
    let meth = match conv {
        Conv::NoArgs | Conv::O | Conv::VarArgs => ffi::PyMethodDefPointer {
            PyCFunction: NOARGS_O_VARARGS[i],
        },
        Conv::VarKw => ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: VARKW[i],
        },
        Conv::Fast => ffi::PyMethodDefPointer {
            PyCFunctionFast: FAST[i],
        },
        Conv::FastKw => ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: FASTKW[i],
        },
        Conv::Method => ffi::PyMethodDefPointer {
            PyCMethod: METHOD[i],
        },
    };
    slot.def.store(def, Ordering::Release);
    // SAFETY: `def` is in writable memory (checked); the GIL is held, and
    // every caller of a method definition holds the GIL, so no call reads
    // the field while it is written; the slot is filled before.
    unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*def).ml_meth), meth) };
    Ok(())
}

/// Puts every original back and frees the slots.
///
/// # Safety
/// GIL held.
pub unsafe fn unpatch_all() {
    for slot in &TABLE {
        let def = slot.def.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if def.is_null() {
            continue;
        }
        let orig = slot.orig.load(Ordering::Acquire);
        // SAFETY: `def` was patched by `patch` (writable, live: method
        // definitions of loaded modules are never freed); `orig` is its own
        // original pointer; GIL held as in `patch`. The tag reference is ours.
        unsafe {
            let meth = ffi::PyMethodDefPointer {
                PyCFunction: std::mem::transmute::<usize, ffi::PyCFunction>(orig),
            };
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*def).ml_meth), meth);
            ffi::Py_XDECREF(slot.tag.swap(std::ptr::null_mut(), Ordering::AcqRel));
        }
    }
}
