//! The CPython layer: every read of CPython's private structures and every
//! difference between its minor versions, in one place below `identity` and
//! `hook` (which depend on it; it depends on neither).
//!
//! Only files here use the `Py_3_x` cfgs (emitted by `build.rs`). The
//! `#[repr(C)]` copies of private structs are checked field by field against
//! the offsets `tools/cpython_offsets.c` prints when compiled with each
//! interpreter's internal headers (`tests/test_layout.py` compares the two in
//! CI), on x86-64 and aarch64 Linux release builds.
//!
//! | file | what it knows |
//! |---|---|
//! | `code.rs` | `PyCodeObject`: flags, counts, names, `co_extra` slots, `co_version` |
//! | `frame.rs` | `_PyInterpreterFrame`: its code, function and locals (the home of every frame accessor) |
//! | `thread.rs` | `PyThreadState`: Python depth and the C recursion budget (the home of every thread-state read) |
//! | `exception.rs` | the pending exception, taken and put back |
//! | `eval.rs` | the interpreter's frame-evaluation function (PEP 523) |
//! | `function.rs` | `PyFunctionObject`: its parts, its vectorcall, function watchers |
//! | `dict.rs` | when a dict last changed: `ma_version_tag` on 3.11, a dict watcher from 3.12 |
//! | `types.rs` | type objects: bases and dict |
//! | `weakref.rs` | what a weak reference points to |
//! | `methods.rs` | builtin functions and method descriptors: their `PyMethodDef`; `_random.Random`'s state |
//! | `gil.rs` | `GilCell`, state that only the GIL guards |
//!
//! Reference ownership: every `*mut PyObject` returned here is **borrowed**
//! from the object it was read from unless the function says otherwise.

#[cfg(any(not(Py_3_11), Py_3_14))]
compile_error!(
    "bytecache supports CPython 3.11, 3.12 and 3.13: the layouts in src/cpython/ were checked \
     against those versions' headers only. Build with one of them (PYO3_PYTHON=python3.13)."
);

pub mod code;
pub mod dict;
pub mod eval;
pub mod exception;
pub mod frame;
pub mod function;
mod gil;
pub mod methods;
pub mod thread;
pub mod types;
pub mod weakref;

pub use gil::GilCell;

use pyo3::ffi;

/// The frame layout this build was compiled for, for messages.
#[cfg(not(Py_3_12))]
pub const LAYOUT: &str = "3.11";
#[cfg(all(Py_3_12, not(Py_3_13)))]
pub const LAYOUT: &str = "3.12";
#[cfg(Py_3_13)]
pub const LAYOUT: &str = "3.13";

/// Whether this build can intercept calls at all: release, GIL-enabled
/// CPython (offsets, C recursion limits and the single-GIL assumption of
/// our globals differ on the other builds).
pub const SUPPORT: Result<(), &str> = if cfg!(Py_GIL_DISABLED) {
    Err("bytecache cannot intercept calls on free-threaded CPython builds")
} else if cfg!(py_sys_config = "Py_DEBUG") {
    Err("bytecache cannot intercept calls on debug CPython builds")
} else {
    Ok(())
};

/// How calls of marked functions are intercepted on this version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intercept {
    /// A PEP 523 frame-evaluation hook sees every frame (3.11: calls between
    /// Python functions are inlined, so a per-function vectorcall would be
    /// bypassed; any hook turns that inlining off for all code).
    FrameHook,
    /// A function watcher sees every function as it is created and marked
    /// ones get a vectorcall of their own (3.12+: the interpreter honours a
    /// replaced vectorcall; unmarked code keeps its inlined calls).
    Vectorcall,
}

#[cfg(not(Py_3_12))]
pub const INTERCEPT: Intercept = Intercept::FrameHook;
#[cfg(Py_3_12)]
pub const INTERCEPT: Intercept = Intercept::Vectorcall;

/// True when the calling thread runs the main interpreter (the hook's state
/// is process-global; subinterpreters are refused).
///
/// # Safety
/// The GIL must be held.
pub unsafe fn in_main_interpreter() -> bool {
    // SAFETY: GIL held (caller).
    unsafe { ffi::PyInterpreterState_Get() == ffi::PyInterpreterState_Main() }
}

/// Every private offset this build assumes, by C name (`struct.field`), for
/// `tests/test_layout.py`, which compares them with what
/// `tools/cpython_offsets.c` prints when compiled with the interpreter's headers.
pub fn offsets() -> Vec<(&'static str, usize)> {
    let mut v = code::offsets();
    v.extend(frame::offsets());
    v.extend(thread::offsets());
    v
}
