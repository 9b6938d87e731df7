//! `bytecache._bytecache.Store`: the Python face of `crate::storage`.
//! Storage errors are mapped to the exception tree here, once.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use pyo3::sync::PyOnceLock;

use super::buffer::{payload_view, private_view, Borrowed};
use super::errors::{CorruptCacheError, StorageError as PyStorageError, UnsafeCacheDirError};
use crate::identity::{Digest, Loaded, Source};
use crate::storage::{
    key_hex, ArchivedMeta, Claim, ClaimLock, Deps, DirDep, EntryView, FileDep, Key, NewEntry,
    Options, RecordDep, StorageError, Store,
};

pub(crate) fn to_py(e: StorageError) -> PyErr {
    let msg = e.to_string();
    match e {
        StorageError::Io { .. } | StorageError::NoSpace { .. } => PyStorageError::new_err(msg),
        StorageError::UnsafePermissions { .. } => UnsafeCacheDirError::new_err(msg),
        StorageError::Corrupt { .. } => CorruptCacheError::new_err(msg),
        StorageError::InvalidArgument(_) => PyValueError::new_err(msg),
    }
}

fn key16(b: &[u8], what: &str) -> PyResult<Key> {
    b.try_into()
        .map_err(|_| PyValueError::new_err(format!("{what} must be 16 bytes, got {}", b.len())))
}

fn secs_to_ns(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1e9).min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A timeout in seconds as a `Duration`: NaN and negatives are zero, and
/// anything too large for a `Duration` (infinity too) is the largest one.
fn timeout_of(s: f64) -> Duration {
    if s.is_nan() || s <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    }
}

#[pyclass(name = "Store", module = "bytecache._bytecache", frozen)]
pub struct PyStore {
    inner: Arc<Store>,
}

type GetResult<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    Bound<'py, PyList>,
    f64,
);

/// Files: `(path, size, mtime_ns, digest)`; directories: `(path, digest)`.
fn file_deps<'py>(
    py: Python<'py>,
    deps: Option<&ArchivedMeta>,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let Some(d) = deps else {
        return Ok((PyList::empty(py), PyList::empty(py)));
    };
    let files = d.files.iter().map(|f| {
        let digest = PyBytes::new(py, &f.digest);
        (
            f.path.as_str(),
            f.size.to_native(),
            f.mtime_ns.to_native(),
            digest,
        )
    });
    let dirs = d
        .dirs
        .iter()
        .map(|x| (x.path.as_str(), PyBytes::new(py, &x.digest)));
    Ok((PyList::new(py, files)?, PyList::new(py, dirs)?))
}

/// An entry's buffers as private (copy-on-write) mappings.
fn buffers<'py>(py: Python<'py>, view: &EntryView) -> PyResult<Bound<'py, PyList>> {
    let mut bufs = Vec::with_capacity(view.buffer_count());
    for i in 0..view.buffer_count() {
        let Some(map) = view.buffer_private(i) else {
            break;
        };
        let map = map.map_err(|e| PyStorageError::new_err(format!("cannot map buffer: {e}")))?;
        bufs.push(private_view(py, map)?);
    }
    PyList::new(py, bufs)
}

/// `put`'s `files`, `dirs` and `record` arguments.
type FileArgs = Vec<(String, u64, i64, Vec<u8>)>;
type DirArgs = Vec<(String, Vec<u8>)>;
type RecordArgs = Vec<(String, String, Option<String>, Vec<u8>)>;
type DepsArgs = (FileArgs, DirArgs, RecordArgs);

fn deps_from(args: DepsArgs) -> PyResult<Deps> {
    let (files, dirs, record) = args;
    Ok(Deps {
        files: files
            .into_iter()
            .map(|(path, size, mtime_ns, d)| {
                Ok(FileDep {
                    path,
                    size,
                    mtime_ns,
                    digest: key16(&d, "file digest")?,
                })
            })
            .collect::<PyResult<_>>()?,
        dirs: dirs
            .into_iter()
            .map(|(path, d)| {
                Ok(DirDep {
                    path,
                    digest: key16(&d, "directory digest")?,
                })
            })
            .collect::<PyResult<_>>()?,
        record: record
            .into_iter()
            .map(|(kind, name, display, d)| {
                Ok(RecordDep {
                    kind,
                    name,
                    display,
                    digest: key16(&d, "record digest")?,
                })
            })
            .collect::<PyResult<_>>()?,
    })
}

#[pymethods]
impl PyStore {
    #[new]
    #[pyo3(signature = (path, max_bytes=None, secret_path=None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        max_bytes: Option<u64>,
        secret_path: Option<PathBuf>,
    ) -> PyResult<Self> {
        let mut opts = Options {
            secret_path,
            ..Options::default()
        };
        if let Some(m) = max_bytes {
            opts.max_bytes = m;
        }
        let store = py.detach(|| Store::open(&path, opts)).map_err(to_py)?;
        Ok(PyStore {
            inner: Arc::new(store),
        })
    }

    /// `(payload, buffers, files, dirs, compute_seconds)` or None: the data
    /// files (`(path, size, mtime_ns, digest)`) and directories
    /// (`(path, digest)`) the entry depends on. Buffers are writable private
    /// (copy-on-write) mappings.
    fn get<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<GetResult<'py>>> {
        let key = key16(key, "key")?;
        let Some(view) = self.inner.get(&key).map_err(to_py)? else {
            return Ok(None);
        };
        let view = Arc::new(view);
        let bufs = buffers(py, &view)?;
        let (files, dirs) = if view.has_file_deps() {
            file_deps(py, view.archived_meta())?
        } else {
            (PyList::empty(py), PyList::empty(py))
        };
        let secs = view.meta.compute_ns as f64 / 1e9;
        let payload = payload_view(py, view)?.into_any();
        Ok(Some((payload, bufs, files, dirs, secs)))
    }

    /// Everything `put` took for `key`, as stored: `(group, payload,
    /// buffers, files, dirs, record, compute_seconds)` with the record's
    /// digests as bytes, or None. Counts no hit and leaves the last use
    /// alone (for copying an entry to another tier).
    fn export<'py>(&self, py: Python<'py>, key: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let key = key16(key, "key")?;
        let Some(view) = py.detach(|| self.inner.peek(&key)).map_err(to_py)? else {
            return Ok(None);
        };
        let view = Arc::new(view);
        let bufs = buffers(py, &view)?;
        let (files, dirs) = file_deps(py, view.archived_meta())?;
        let record = PyList::empty(py);
        for r in view.record().map(|d| d.iter()).into_iter().flatten() {
            let display = r.display.as_ref().map(|d| d.as_str());
            let digest = PyBytes::new(py, &r.digest);
            record.append((r.kind.as_str(), r.name.as_str(), display, digest))?;
        }
        let group = PyBytes::new(py, &view.meta.group);
        let secs = view.meta.compute_ns as f64 / 1e9;
        let payload = payload_view(py, view)?.into_any();
        let items = (group, payload, bufs, files, dirs, record, secs);
        Ok(Some(items.into_pyobject(py)?))
    }

    /// The dependency record stored with `key`: `(kind, name, display,
    /// digest hex)` for every function, global and argument its key
    /// covered, or None when there is no such entry. Reading it is not a hit.
    #[allow(clippy::type_complexity)]
    fn record(
        &self,
        key: &[u8],
    ) -> PyResult<Option<Vec<(String, String, Option<String>, String)>>> {
        let key = key16(key, "key")?;
        let Some(view) = self.inner.peek(&key).map_err(to_py)? else {
            return Ok(None);
        };
        let Some(record) = view.record() else {
            return Ok(None);
        };
        let hex = |d: &[u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Ok(Some(
            record
                .iter()
                .map(|r| {
                    (
                        r.kind.to_string(),
                        r.name.to_string(),
                        r.display.as_ref().map(|d| d.to_string()),
                        hex(&r.digest),
                    )
                })
                .collect(),
        ))
    }

    // The Python signature fixes the argument list.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, group, payload, buffers, files, dirs, record, compute_seconds))]
    fn put(
        &self,
        py: Python<'_>,
        key: &[u8],
        group: &[u8],
        payload: &Bound<'_, PyAny>,
        buffers: Vec<Bound<'_, PyAny>>,
        files: FileArgs,
        dirs: DirArgs,
        record: RecordArgs,
        compute_seconds: f64,
    ) -> PyResult<bool> {
        let deps = deps_from((files, dirs, record))?;
        let key = key16(key, "key")?;
        let group = key16(group, "group")?;
        let payload = Borrowed::new(payload)?;
        let held = buffers
            .iter()
            .map(Borrowed::new)
            .collect::<PyResult<Vec<_>>>()?;
        let store = &self.inner;
        py.detach(|| {
            let slices: Vec<&[u8]> = held.iter().map(Borrowed::bytes).collect();
            let entry = NewEntry {
                group,
                payload: payload.bytes(),
                buffers: &slices,
                deps: &deps,
                compute_ns: secs_to_ns(compute_seconds),
            };
            store.put(&key, &entry)
        })
        .map_err(to_py)
    }

    fn remove(&self, py: Python<'_>, key: &[u8]) -> PyResult<bool> {
        let key = key16(key, "key")?;
        py.detach(|| self.inner.remove(&key)).map_err(to_py)
    }

    #[pyo3(signature = (group=None))]
    fn clear(&self, py: Python<'_>, group: Option<&[u8]>) -> PyResult<u64> {
        let group = group.map(|g| key16(g, "group")).transpose()?;
        py.detach(|| self.inner.clear(group.as_ref()))
            .map_err(to_py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats()).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("hits", s.hits)?;
        d.set_item("max_bytes", s.max_bytes)?;
        d.set_item("path", self.inner.dir())?;
        Ok(d)
    }

    fn entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = py.detach(|| self.inner.list()).map_err(to_py)?;
        let out = PyList::empty(py);
        for m in list {
            let d = PyDict::new(py);
            d.set_item("key", key_hex(&m.key))?;
            d.set_item("group", key_hex(&m.group))?;
            d.set_item("size", m.size)?;
            d.set_item("compute_seconds", m.compute_ns as f64 / 1e9)?;
            d.set_item("created", m.created_ns as f64 / 1e9)?;
            d.set_item("last_used", m.last_used_secs as f64)?;
            d.set_item("hits", m.hits)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Enforce max_bytes now; returns the number of evicted entries.
    fn gc(&self, py: Python<'_>) -> PyResult<u64> {
        py.detach(|| self.inner.gc()).map_err(to_py)
    }

    /// Check every MAC and checksum: `{"checked": n, "bad": [(key_hex, reason)]}`.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = py.detach(|| self.inner.verify()).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("checked", r.checked)?;
        let bad: Vec<(String, String)> = r
            .bad
            .iter()
            .map(|(k, why)| (key_hex(k), why.clone()))
            .collect();
        d.set_item("bad", bad)?;
        Ok(d)
    }

    /// Coordinate a miss: `with store.claim(key, timeout) as c: if c.compute: ...`.
    fn claim(&self, py: Python<'_>, key: &[u8], timeout: f64) -> PyResult<PyClaim> {
        let key = key16(key, "key")?;
        let timeout = timeout_of(timeout);
        let c = py
            .detach(|| self.inner.claim(&key, timeout))
            .map_err(to_py)?;
        let (state, lock) = match c {
            Claim::Compute(l) => ("compute", Some(l)),
            Claim::Ready => ("ready", None),
            Claim::TimedOut => ("timeout", None),
        };
        Ok(PyClaim {
            state,
            lock: Mutex::new(lock),
        })
    }

    /// Why this process found the store emptied when it opened it (a
    /// damaged index, entries made with another secret), or None.
    #[getter]
    fn reset_reason(&self) -> Option<&str> {
        self.inner.reset_reason()
    }

    /// How many damaged records or index files this process has moved to
    /// `quarantine/` (in any store).
    #[staticmethod]
    fn quarantined() -> u64 {
        crate::storage::quarantined()
    }

    fn __repr__(&self) -> String {
        format!("Store({:?})", self.inner.dir())
    }
}

/// Result of `Store.claim`; a context manager releasing the claim on exit.
#[pyclass(name = "Claim", module = "bytecache._bytecache", frozen)]
pub struct PyClaim {
    state: &'static str,
    lock: Mutex<Option<ClaimLock>>,
}

#[pymethods]
impl PyClaim {
    /// True: this caller must compute and put. False: the entry is ready
    /// (`state == "ready"`) or waiting timed out (`"timeout"`).
    #[getter]
    fn compute(&self) -> bool {
        self.state == "compute"
    }

    #[getter]
    fn state(&self) -> &'static str {
        self.state
    }

    fn release(&self) {
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.release();
        false
    }
}

/// What a stored payload begins with when it is a manifest (`_deps.Manifest`:
/// the item sets a call's results depend on), not a pickled result.
pub const MANIFEST_MAGIC: &[u8] = b"BCMANIF1";

/// `pickle.loads`, looked up once.
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A store as the source of a memo's stored results (`identity::source`):
/// a plain result is `(value, None)` pickled in the payload, with no file
/// dependencies and no out-of-band buffers.
struct StoreSource(Arc<Store>);

impl Source for StoreSource {
    fn load(&self, py: Python<'_>, key: Digest) -> Loaded {
        let view = match self.0.get(&key.to_le_bytes()) {
            Ok(Some(view)) => view,
            Ok(None) => return Loaded::Absent,
            Err(_) => return Loaded::Other, // the Python path reads it again, and warns
        };
        let payload = view.payload();
        if view.has_file_deps() || view.buffer_count() > 0 || payload.starts_with(MANIFEST_MAGIC) {
            return Loaded::Other;
        }
        let seconds = view.meta.compute_ns as f64 / 1e9;
        let loaded = LOADS
            .get_or_try_init(py, || {
                py.import("pickle")?.getattr("loads").map(Bound::unbind)
            })
            .and_then(|loads| loads.bind(py).call1((PyBytes::new(py, payload),)));
        let pair = match loaded {
            Ok(pair) => pair,
            Err(e) if !e.is_instance_of::<PyException>(py) => {
                e.restore(py); // Ctrl-C reaches the program, as from the Python path
                return Loaded::Interrupted;
            }
            Err(_) => return Loaded::Other, // the Python path loads it again, and warns
        };
        match pair.cast_exact::<PyTuple>() {
            Ok(t) if t.len() == 2 && t.get_borrowed_item(1).is_ok_and(|e| e.is_none()) => {
                match t.get_item(0) {
                    Ok(value) => Loaded::Hit(value.unbind(), seconds),
                    Err(_) => Loaded::Other,
                }
            }
            _ => Loaded::Other, // effects to replay
        }
    }
}

impl PyStore {
    /// This store as a memo's source of stored results.
    pub fn source(&self) -> Arc<dyn Source + Send + Sync> {
        Arc::new(StoreSource(self.inner.clone()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStore>()?;
    m.add_class::<PyClaim>()?;
    m.add("MANIFEST_MAGIC", PyBytes::new(m.py(), MANIFEST_MAGIC))?;
    Ok(())
}
