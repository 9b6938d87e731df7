//! The vectorcall mechanism (3.12+): no frame hook, so calls between
//! unmarked Python functions stay inlined and cost nothing.
//!
//! A function watcher sees every function as it is created (and destroyed,
//! and given a new `__code__`). A function of a marked code object gets our
//! vectorcall ([`vectorcall`]), which binds its arguments (`bind`), consults
//! the policy like the frame hook does (`consult`) and falls through to the
//! default vectorcall on a miss. Functions that existed before `install`
//! are handed to [`adopt`] by the policy's scan of the marked modules.
//!
//! * Versions: `MAKE_FUNCTION` copies `co_version` into a new function
//!   *after* the watchers ran, and a call site specializes on a versioned
//!   function by inlining it without reading its vectorcall. So while a
//!   marked function is created its code's version is held at 0
//!   (`cpython::code::hold_version`) and restored at the next watcher event,
//!   which always comes before the code object can die (the new function
//!   holds it until its own `DESTROY` or `MODIFY_CODE` event).
//! * Ownership: only functions whose vectorcall is CPython's default are
//!   taken; `uninstall` restores exactly the ones that still have ours.
//!   The set of taken functions holds no references: a function leaves it
//!   in its `DESTROY` event.
//! * One function-watcher slot of the interpreter's eight, taken by
//!   `install` and given back by `uninstall`; dict watchers are
//!   `cpython::dict`'s.

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use ahash::AHashSet;
use pyo3::ffi::{self, PyObject};
use pyo3::prelude::*;

use super::bind::bind;
use super::consult::{self, Action, Interrupted, THREAD};
use super::mark::Decision;
use super::{stack, ACTIVE};
use crate::cpython::function::{self, event};
use crate::cpython::{code, thread, GilCell};

/// Our function-watcher id, -1 when none is registered.
static WATCHER: AtomicI32 = AtomicI32::new(-1);
/// CPython's default vectorcall (as usize; 0 until `link`).
static DEFAULT: AtomicUsize = AtomicUsize::new(0);

/// Functions that have our vectorcall, and code versions held at 0.
static STATE: GilCell<State> = GilCell::new(State {
    taken: None,
    held: Vec::new(),
});

struct State {
    /// Addresses of the functions given our vectorcall (none is held).
    taken: Option<AHashSet<usize>>,
    /// `(code, version)` pairs to restore (see the module docs).
    held: Vec<(usize, u32)>,
}

/// Units of the C recursion budget a call through our vectorcall costs
/// beyond an inlined one (`cpython::thread::with_c_budget`). Measured: given
/// none back, recursion of an intercepted function stops at 748 frames on
/// 3.12.1, whose budget is 1500.
const C_UNITS_PER_CALL: c_int = 2;

/// Takes a function-watcher slot and learns the default vectorcall.
pub fn link(py: Python<'_>) -> Result<(), &'static str> {
    if WATCHER.load(Ordering::Relaxed) >= 0 {
        return Ok(());
    }
    let default =
        function::default_vectorcall(py).ok_or("the default vectorcall could not be read")?;
    DEFAULT.store(default as usize, Ordering::Release);
    let id = function::add_watcher(py, on_event)
        .ok_or("all of the interpreter's function-watcher slots are taken")?;
    WATCHER.store(id, Ordering::Release);
    Ok(())
}

/// Gives every function we took its default vectorcall back and frees our
/// watcher slot.
pub fn unlink(py: Python<'_>) {
    let Some(default) = default_vc() else {
        return;
    };
    // SAFETY: set operations and field writes; no Python code runs.
    unsafe {
        STATE.with(py, |s| {
            restore_versions(s);
            for f in s.taken.take().into_iter().flatten() {
                let f = f as *mut PyObject;
                // A function whose vectorcall another tool replaced is theirs.
                if is_ours(f) {
                    function::set_vectorcall(f, default);
                }
            }
        })
    };
    let id = WATCHER.swap(-1, Ordering::AcqRel);
    if id >= 0 {
        function::clear_watcher(py, id);
    }
}

/// Intercepts `func`, a function that existed before `install`, when its
/// code object is marked. Returns whether it now has our vectorcall.
pub fn adopt(func: &Bound<'_, PyAny>) -> Result<bool, Interrupted> {
    let py = func.py();
    let f = func.as_ptr();
    // SAFETY: `f` is live (we hold `func`); type checked before any read.
    unsafe {
        if WATCHER.load(Ordering::Relaxed) < 0 || ffi::PyFunction_Check(f) == 0 {
            return Ok(false);
        }
        if is_ours(f) {
            return Ok(true);
        }
        if !is_default(f) {
            return Ok(false);
        }
        let code = function::code(f);
        let cached = consult::cached(code);
        let decision = consult::guarded(|| {
            catch_unwind(AssertUnwindSafe(|| consult::decide(f, code, cached)))
                .unwrap_or(Ok(Decision::Skip))
        })?;
        if matches!(decision, Decision::Marked { .. }) {
            take(py, f, false);
            return Ok(true);
        }
    }
    Ok(false)
}

#[inline]
fn default_vc() -> Option<ffi::vectorcallfunc> {
    let p = DEFAULT.load(Ordering::Acquire);
    // SAFETY: DEFAULT only ever holds 0 or a `vectorcallfunc` (`link`).
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, ffi::vectorcallfunc>(p) })
}

/// # Safety
/// GIL held; `f` a live function.
#[inline]
unsafe fn is_ours(f: *mut PyObject) -> bool {
    // SAFETY: forwarded.
    unsafe { function::vectorcall(f) }
        .is_some_and(|vc| vc as usize == vectorcall as ffi::vectorcallfunc as usize)
}

/// # Safety
/// GIL held; `f` a live function.
#[inline]
unsafe fn is_default(f: *mut PyObject) -> bool {
    let d = DEFAULT.load(Ordering::Relaxed);
    // SAFETY: forwarded.
    unsafe { function::vectorcall(f) }.is_some_and(|vc| vc as usize == d)
}

/// Gives `f` our vectorcall; with `hold`, also holds its code's version at
/// 0 until the next watcher event (it is being created).
///
/// # Safety
/// GIL held; `f` a live function whose vectorcall is the default.
unsafe fn take(py: Python<'_>, f: *mut PyObject, hold: bool) {
    // SAFETY: forwarded; set operations run no Python code.
    unsafe {
        let code = function::code(f);
        let version = if hold { code::hold_version(code) } else { 0 };
        function::set_vectorcall(f, vectorcall);
        STATE.with(py, |s| {
            if version != 0 {
                s.held.push((code as usize, version));
            }
            s.taken.get_or_insert_with(AHashSet::new).insert(f as usize);
        });
    }
}

/// Gives `f` (one of ours) its default vectorcall back.
///
/// # Safety
/// GIL held; `f` a live function.
unsafe fn release(py: Python<'_>, f: *mut PyObject, default: ffi::vectorcallfunc) {
    // SAFETY: forwarded; set operations run no Python code.
    unsafe {
        function::set_vectorcall(f, default);
        STATE.with(py, |s| s.taken.as_mut().map(|t| t.remove(&(f as usize))));
    }
}

/// # Safety
/// GIL held; every held code object is still alive (see the module docs).
unsafe fn restore_versions(s: &mut State) {
    for (code, version) in s.held.drain(..) {
        // SAFETY: forwarded.
        unsafe { code::release_version(code as *mut PyObject, version) };
    }
}

/// The function watcher.
///
/// # Safety
/// Called by CPython with the GIL held; `func` is a live function,
/// `new_value` what the event says.
unsafe extern "C" fn on_event(
    event: c_int,
    func: *mut PyObject,
    new_value: *mut PyObject,
) -> c_int {
    // Nothing here may unwind into CPython.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: CPython calls watchers with the GIL held.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: as above; restoring versions runs no Python code.
        let watching = unsafe {
            STATE.with(py, |s| {
                restore_versions(s);
                s.taken.as_ref().is_some_and(|t| !t.is_empty())
            })
        };
        match event {
            event::DESTROY if watching => {
                // SAFETY: a set operation.
                unsafe { STATE.with(py, |s| s.taken.as_mut().map(|t| t.remove(&(func as usize)))) };
            }
            // SAFETY: forwarded.
            event::CREATE => unsafe { on_create(py, func) },
            // SAFETY: forwarded.
            event::MODIFY_CODE => unsafe { on_new_code(py, func, new_value) },
            _ => {}
        }
    }));
    0
}

/// A function was created: take it when its code is marked.
///
/// # Safety
/// As [`on_event`].
unsafe fn on_create(py: Python<'_>, f: *mut PyObject) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    // SAFETY: `f` is the new, live function.
    unsafe {
        let code = function::code(f);
        // Unmarked code (the common case) is settled by one load and compare.
        let cached = consult::cached(code);
        if cached == Some(Decision::Skip) || consult::in_callback() {
            return;
        }
        let decision = consult::guarded(|| {
            catch_unwind(AssertUnwindSafe(|| consult::decide(f, code, cached)))
                .unwrap_or(Ok(Decision::Skip))
        });
        match decision {
            Ok(Decision::Marked { .. }) if is_default(f) => take(py, f, true),
            Ok(_) => {}
            // Ctrl-C while `should_mark` ran: the program still gets it.
            Err(Interrupted) => raise_later(py),
        }
    }
}

/// A function is about to get `code` as its `__code__`: if we do not have
/// it yet, take it so that its next call decides with the new code.
///
/// # Safety
/// As [`on_event`].
unsafe fn on_new_code(py: Python<'_>, f: *mut PyObject, code: *mut PyObject) {
    if !ACTIVE.load(Ordering::Relaxed) || consult::in_callback() {
        return;
    }
    // SAFETY: `f` live; `code` is the live new code object (a code object:
    // the `__code__` setter checks the type before the event).
    unsafe {
        if !is_ours(f) && is_default(f) && consult::cached(code) != Some(Decision::Skip) {
            take(py, f, false);
        }
    }
}

/// Re-raises the exception that is set at the next point where the main
/// thread checks for pending work (a watcher cannot raise into the
/// program: CPython reports what it returns as unraisable).
fn raise_later(py: Python<'_>) {
    extern "C" fn raise(arg: *mut std::ffi::c_void) -> c_int {
        // SAFETY: `arg` came from `Box::into_raw` below, and CPython calls
        // this once, in the main thread, with the GIL held.
        let err = unsafe { Box::from_raw(arg.cast::<PyErr>()) };
        // SAFETY: as above.
        err.restore(unsafe { Python::assume_attached() });
        -1
    }
    let Some(err) = PyErr::take(py) else {
        return;
    };
    let is_interrupt = err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py);
    let arg = Box::into_raw(Box::new(err)).cast::<std::ffi::c_void>();
    // SAFETY: `raise` takes ownership of `arg` when the call is queued.
    if unsafe { ffi::Py_AddPendingCall(Some(raise), arg) } != 0 {
        // The queue is full: take it back.
        // SAFETY: not queued, so still ours.
        let err = unsafe { Box::from_raw(arg.cast::<PyErr>()) };
        if is_interrupt {
            // SAFETY: GIL held; simulates the Ctrl-C again.
            unsafe { ffi::PyErr_SetInterrupt() };
        } else {
            err.write_unraisable(py, None);
        }
    }
}

/// One vectorcall, as CPython passed it to us.
#[derive(Clone, Copy)]
struct Call {
    callable: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
}

impl Call {
    /// Runs the call with `vc` (the default vectorcall).
    ///
    /// # Safety
    /// GIL held; the call's arguments are still live.
    #[inline(always)]
    unsafe fn run(self, vc: ffi::vectorcallfunc) -> *mut PyObject {
        // SAFETY: CPython's own arguments, forwarded unchanged.
        unsafe { vc(self.callable, self.args, self.nargsf, self.kwnames) }
    }

    /// The argument values (positional ones, then one per keyword name) and
    /// how many are positional.
    ///
    /// # Safety
    /// As [`Call::run`].
    unsafe fn values<'a>(self) -> (&'a [*mut PyObject], usize) {
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

/// The vectorcall of every function we took.
///
/// # Safety
/// Called by CPython as a vectorcall of a live function we took, with the
/// GIL held.
unsafe extern "C" fn vectorcall(
    callable: *mut PyObject,
    args: *const *mut PyObject,
    nargsf: usize,
    kwnames: *mut PyObject,
) -> *mut PyObject {
    let Some(default) = default_vc() else {
        // SAFETY: GIL held.
        unsafe {
            ffi::PyErr_SetString(ffi::PyExc_SystemError, c"bytecache: no vectorcall".as_ptr())
        };
        return std::ptr::null_mut();
    };
    let call = Call {
        callable,
        args,
        nargsf,
        kwnames,
    };
    if !ACTIVE.load(Ordering::Relaxed) || consult::in_callback() {
        // SAFETY: CPython's own call.
        return unsafe { call.run(default) };
    }
    // SAFETY: `callable` is a live function (CPython contract).
    let code = unsafe { function::code(callable) };
    // SAFETY: GIL held; `code` live.
    let decision = match unsafe { consult::cached(code) } {
        Some(d) => Ok(d),
        None => consult::guarded(|| {
            catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: as above.
                unsafe { consult::decide(callable, code, None) }
            }))
            .unwrap_or(Ok(Decision::Skip))
        }),
    };
    match decision {
        // SAFETY: forwarded.
        Ok(Decision::Marked { nargs }) => unsafe { intercept(call, code, nargs, default) },
        Ok(Decision::Skip) => {
            // No longer marked (found cheap, the policy changed).
            // SAFETY: GIL held; `callable` live and ours; CPython's own call.
            unsafe {
                release(Python::assume_attached(), callable, default);
                call.run(default)
            }
        }
        Err(Interrupted) => std::ptr::null_mut(),
    }
}

/// A call of a marked function: bind, consult, act.
///
/// # Safety
/// As [`vectorcall`]; `code` is the function's code, marked with `nargs`
/// argument slots.
#[inline(never)]
unsafe fn intercept(
    call: Call,
    code: *mut PyObject,
    nargs: usize,
    default: ffi::vectorcallfunc,
) -> *mut PyObject {
    // SAFETY: GIL held, so the current thread state is live.
    let tstate = unsafe { ffi::PyThreadState_Get() };
    // SAFETY: as above.
    let room = if unsafe { thread::python_depth(tstate) } < stack::SHALLOW_DEPTH {
        stack::Room::AMPLE
    } else {
        THREAD.with(|t| t.stack.room())
    };
    if room.exhausted {
        // SAFETY: GIL held.
        unsafe { stack::recursion_error() };
        return std::ptr::null_mut();
    }
    // The body runs in a new C-level evaluation: give back the C recursion
    // units that costs (within what the stack allows).
    let run = || {
        // SAFETY: CPython's own call, on the live thread state of this thread.
        unsafe { thread::with_c_budget(tstate, C_UNITS_PER_CALL, room.share, || call.run(default)) }
    };
    let action = consult::guarded(|| {
        catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: forwarded.
            unsafe { bind_and_consult(call, code, nargs) }
        }))
        .unwrap_or(Action::Run)
    });
    match action {
        Action::Run => run(),
        Action::Hit(value) => value,
        Action::Interrupt => std::ptr::null_mut(),
        // SAFETY: `token` is the new reference `on_call` returned.
        Action::Miss(token) => unsafe { consult::finish(token, run()) },
    }
}

/// Binds the call's arguments and consults the policy. Never inlined: its
/// stack frame (keys are computed below it) must not stay on the C stack
/// while the body runs, or deep recursion runs out of stack sooner.
///
/// # Safety
/// As [`intercept`].
#[inline(never)]
unsafe fn bind_and_consult(call: Call, code: *mut PyObject, nargs: usize) -> Action {
    // SAFETY: forwarded; the values live as long as the call.
    unsafe {
        let (values, npos) = call.values();
        match bind(call.callable, code, values, npos, call.kwnames) {
            Some(b) if b.slots().len() == nargs => consult::consult(call.callable, b.slots()),
            _ => Action::Run,
        }
    }
}
