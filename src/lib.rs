//! bytecache: safe, code-change-aware persistent memoization for Python.
//!
//! This file only declares modules. `storage` and `sign` are pure Rust (no
//! pyo3) so they are tested, fuzzed and benchmarked alone; everything that
//! touches CPython lives behind the `python` feature, which maturin enables.
//! Dependencies run one way: `py` (the extension's Python face) → `hook` →
//! `identity` → `cpython` (every read of CPython's private structures), and
//! `py` → `storage`, `sign`.

pub mod sign;
pub mod storage;

#[cfg(feature = "python")]
mod alias;
#[cfg(feature = "python")]
mod cpython;
#[cfg(feature = "python")]
mod got;
#[cfg(feature = "python")]
mod hook;
#[cfg(feature = "python")]
pub mod identity;
#[cfg(feature = "python")]
mod observe;
#[cfg(feature = "python")]
mod py;
