//! Where a memoized function's stored results are read from Rust: a hit on
//! a result stored earlier (another process, or evicted from the kept
//! results) is answered without the Python call protocol, at the store's
//! own speed.
//!
//! The Python side (`_core.begin`) names the store it resolved for the
//! function's cache directory ([`Hint`]); the hint holds while nothing that
//! resolution reads can have changed: `configure()` (and anything else that
//! calls `config_changed`) bumps [`GENERATION`], and a change of the process
//! environment (`BYTECACHE_DIR`, `XDG_CACHE_HOME`, `HOME`) moves the stamp
//! of `os.environ`'s dict. Only plain results are answered here: no file or
//! directory dependencies, no out-of-band buffers, no effects to replay, not
//! a manifest. Anything else, and any failure, goes the Python way.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::digest::Digest;
use crate::cpython::dict::Stamp;

/// A store that can answer plain results (`py::store` implements it).
pub trait Source {
    /// The plain result stored for `key`.
    fn load(&self, py: Python<'_>, key: Digest) -> Loaded;
}

/// What a [`Source`] found for a key.
pub enum Loaded {
    /// A plain result, and the seconds computing it took.
    Hit(Py<PyAny>, f64),
    /// Nothing is stored at the key.
    Absent,
    /// Something only the Python path handles (or a failure it reports).
    Other,
    /// Unpickling raised what is not an `Exception` (`KeyboardInterrupt`,
    /// `SystemExit`): it is set again, for the call to raise it.
    Interrupted,
}

/// Bumped when the configuration the store of a cache directory is resolved
/// from changes (`bytecache.configure`): every hint lapses.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Every [`Hint`] lapses.
pub fn config_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// The store `_core.begin` last resolved for a function, and the state of
/// what it resolved it from.
pub struct Hint {
    source: Arc<dyn Source + Send + Sync>,
    generation: u64,
    environ: Py<PyDict>,
    stamp: Stamp,
    seen: u64,
}

impl Hint {
    /// A hint for `source`, resolved with the environment dict `environ`
    /// (`os.environ._data`) as it is now; `None` when that dict cannot be
    /// watched.
    pub fn new(source: Arc<dyn Source + Send + Sync>, environ: &Bound<'_, PyDict>) -> Option<Hint> {
        let stamp = Stamp::watch(environ)?;
        let seen = stamp.now(environ);
        Some(Hint {
            source,
            generation: GENERATION.load(Ordering::Acquire),
            environ: environ.clone().unbind(),
            stamp,
            seen,
        })
    }

    /// The source, while the hint holds.
    pub fn source(&self, py: Python<'_>) -> Option<Arc<dyn Source + Send + Sync>> {
        let fresh = self.generation == GENERATION.load(Ordering::Acquire)
            && self.stamp.now(self.environ.bind(py)) == self.seen;
        fresh.then(|| self.source.clone())
    }
}
