//! The types identity treats specially, as type objects cached once and
//! compared by pointer (never by name): the interpreter's own, and numpy's
//! and pandas' once the program has loaded them (they are never imported
//! here).
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

pub struct Interpreter {
    pub method: Py<PyType>,
    pub staticmethod: Py<PyType>,
    pub classmethod: Py<PyType>,
    pub property: Py<PyType>,
    pub cached_property: Py<PyType>,
    pub cell: Py<PyType>,
    pub member_descriptor: Py<PyType>,
    pub mappingproxy: Py<PyType>,
    /// Open files: `io.IOBase` and its subclasses.
    pub io_base: Py<PyType>,
    pub locks: [Py<PyType>; 2],
    pub generators: [Py<PyType>; 3],
    /// `copyreg.dispatch_table`: reducers for types that have no
    /// `__reduce_ex__` of their own (`re.Pattern`), as pickle uses them.
    pub dispatch_table: Py<PyDict>,
    /// `sys.modules`.
    pub modules: Py<PyDict>,
    /// `gc.get_referents`: what a mapping proxy wraps.
    pub referents: Py<PyAny>,
}

static INTERPRETER: PyOnceLock<Interpreter> = PyOnceLock::new();

fn get_type(m: &Bound<'_, PyModule>, name: &str) -> PyResult<Py<PyType>> {
    Ok(m.getattr(name)?.cast_into::<PyType>()?.unbind())
}

pub fn interpreter(py: Python<'_>) -> PyResult<&Interpreter> {
    INTERPRETER.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let types = py.import("types")?;
        let thread = py.import("_thread")?;
        let rlock = thread.getattr("RLock")?.call0()?.get_type().unbind();
        Ok(Interpreter {
            method: get_type(&types, "MethodType")?,
            staticmethod: get_type(&builtins, "staticmethod")?,
            classmethod: get_type(&builtins, "classmethod")?,
            property: get_type(&builtins, "property")?,
            cached_property: get_type(&py.import("functools")?, "cached_property")?,
            cell: get_type(&types, "CellType")?,
            member_descriptor: get_type(&types, "MemberDescriptorType")?,
            mappingproxy: get_type(&types, "MappingProxyType")?,
            io_base: get_type(&py.import("io")?, "IOBase")?,
            locks: [get_type(&thread, "LockType")?, rlock],
            generators: [
                get_type(&types, "GeneratorType")?,
                get_type(&types, "CoroutineType")?,
                get_type(&types, "AsyncGeneratorType")?,
            ],
            dispatch_table: py
                .import("copyreg")?
                .getattr("dispatch_table")?
                .cast_into::<PyDict>()?
                .unbind(),
            modules: py
                .import("sys")?
                .getattr("modules")?
                .cast_into::<PyDict>()?
                .unbind(),
            referents: py.import("gc")?.getattr("get_referents")?.unbind(),
        })
    })
}

/// Whether `obj`'s type is exactly `t`.
pub fn is(obj: &Bound<'_, PyAny>, t: &Py<PyType>) -> bool {
    obj.get_type().is(t.bind(obj.py()))
}

pub struct Numpy {
    pub ndarray: Py<PyType>,
    /// `numpy.asarray`.
    pub asarray: Py<PyAny>,
}

pub struct MaskedArrays {
    pub masked_array: Py<PyType>,
    /// `numpy.ma.getmaskarray`: the mask as a full boolean array.
    pub getmaskarray: Py<PyAny>,
}

pub struct Ctypes {
    /// `_ctypes.CFuncPtr`, the base of every function pointer.
    pub func: Py<PyType>,
    /// `ctypes.CDLL`.
    pub cdll: Py<PyType>,
}

pub struct Pandas {
    pub frame: Py<PyType>,
    pub series: Py<PyType>,
}

static NUMPY: PyOnceLock<Numpy> = PyOnceLock::new();
static SOCKET: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MASKED: PyOnceLock<MaskedArrays> = PyOnceLock::new();
static PANDAS: PyOnceLock<Pandas> = PyOnceLock::new();
static CTYPES: PyOnceLock<Ctypes> = PyOnceLock::new();

/// `module` from `sys.modules` if the program has loaded it (and it has
/// finished loading far enough to have `attr`).
fn loaded<'py>(py: Python<'py>, module: &str, attr: &str) -> Option<Bound<'py, PyAny>> {
    let modules = interpreter(py).ok()?.modules.bind(py);
    let m = modules.get_item(module).ok()??;
    m.hasattr(attr).ok()?.then_some(m)
}

/// Cached once found: before that, one `sys.modules` lookup per question.
fn once<'py, T>(
    py: Python<'py>,
    cell: &'py PyOnceLock<T>,
    module: &str,
    attr: &str,
    make: impl FnOnce(&Bound<'py, PyAny>) -> PyResult<T>,
) -> Option<&'py T> {
    if let Some(v) = cell.get(py) {
        return Some(v);
    }
    let m = loaded(py, module, attr)?;
    cell.get_or_try_init(py, || make(&m)).ok()
}

pub fn numpy(py: Python<'_>) -> Option<&Numpy> {
    once(py, &NUMPY, "numpy", "ndarray", |m| {
        Ok(Numpy {
            ndarray: m.getattr("ndarray")?.cast_into::<PyType>()?.unbind(),
            asarray: m.getattr("asarray")?.unbind(),
        })
    })
}

pub fn masked_arrays(py: Python<'_>) -> Option<&MaskedArrays> {
    once(py, &MASKED, "numpy.ma", "MaskedArray", |m| {
        Ok(MaskedArrays {
            masked_array: m.getattr("MaskedArray")?.cast_into::<PyType>()?.unbind(),
            getmaskarray: m.getattr("getmaskarray")?.unbind(),
        })
    })
}

pub fn pandas(py: Python<'_>) -> Option<&Pandas> {
    once(py, &PANDAS, "pandas", "Series", |m| {
        Ok(Pandas {
            frame: m.getattr("DataFrame")?.cast_into::<PyType>()?.unbind(),
            series: m.getattr("Series")?.cast_into::<PyType>()?.unbind(),
        })
    })
}

/// `_socket.socket`, the base of every socket.
pub fn socket(py: Python<'_>) -> Option<&Py<PyType>> {
    once(py, &SOCKET, "_socket", "socket", |m| {
        Ok(m.getattr("socket")?.cast_into::<PyType>()?.unbind())
    })
}

pub fn ctypes(py: Python<'_>) -> Option<&Ctypes> {
    once(py, &CTYPES, "ctypes", "CDLL", |m| {
        Ok(Ctypes {
            func: m.getattr("_CFuncPtr")?.cast_into::<PyType>()?.unbind(),
            cdll: m.getattr("CDLL")?.cast_into::<PyType>()?.unbind(),
        })
    })
}
