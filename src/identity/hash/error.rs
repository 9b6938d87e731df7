//! Why a value cannot be hashed by content, and where it was found: errors
//! as data (a [`Kind`] plus a path of [`Step`]s), rendered into one message
//! and mapped to Python's `UnhashableError` once (`identity::to_py`).
//!
//! Every Python exception raised while hashing becomes [`Kind::Raised`]
//! (`From<PyErr>`), so no error from a user's `__reduce__`, `__getattr__` or
//! property reaches the user's call: the call then runs normally. Only
//! exceptions that are not `Exception`s (`KeyboardInterrupt`, `SystemExit`)
//! pass through as [`HashError::Python`]: they are the user's, not ours.
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

#[derive(Debug)]
pub enum HashError {
    /// The value cannot be hashed by content.
    Unhashable(Box<Unhashable>),
    /// A `BaseException` that is not an `Exception`, passed through.
    Python(PyErr),
}

pub type HResult<T> = Result<T, HashError>;

/// Steps shown at each end of a long path in a message.
const SHOWN: usize = 6;

#[derive(Clone, Debug)]
pub struct Unhashable {
    pub kind: Kind,
    /// Innermost step first (steps are added while the error propagates).
    location: Vec<Step>,
}

/// What could not be hashed.
#[derive(Clone, Debug)]
pub enum Kind {
    /// An open file (its type name).
    OpenFile(String),
    /// A lock (its type name).
    Lock(String),
    /// A generator, coroutine or async generator (its type name).
    Generator(String),
    /// A socket (its type name).
    Socket(String),
    /// Native code that is not from the standard library, an installed
    /// distribution or a loaded extension module file (`module.qualname`).
    NativeCode(String),
    /// A ctypes function pointer other than a library's function as a
    /// `ctypes.CDLL` hands it out (its `__name__`, or "").
    CtypesPointer(String),
    /// Nested deeper than the walk may go (levels, or stack left).
    TooDeep,
    /// No state to hash: `__reduce_ex__` failed or returned nonsense.
    NoReduce { type_name: String, reason: String },
    /// A Python exception was raised while hashing.
    Raised { exception: String, message: String },
    /// A function assigns a global: a cached call would skip that effect.
    AssignsGlobal,
    /// A library attribute replaced by a mock (its type name): a mock makes
    /// up attributes and state for whatever is asked of it.
    Mock(String),
    /// A bug in bytecache (a Rust panic, caught).
    Internal(String),
}

impl Kind {
    /// The name Python sees as `UnhashableError.kind`.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::OpenFile(_) => "open_file",
            Kind::Lock(_) => "lock",
            Kind::Generator(_) => "generator",
            Kind::Socket(_) => "socket",
            Kind::NativeCode(_) => "native_code",
            Kind::CtypesPointer(_) => "ctypes_pointer",
            Kind::TooDeep => "too_deep",
            Kind::NoReduce { .. } => "no_reduce",
            Kind::Raised { .. } => "raised",
            Kind::AssignsGlobal => "assigns_global",
            Kind::Mock(_) => "mock",
            Kind::Internal(_) => "internal",
        }
    }

    /// `UnhashableError.detail`: the type, function or exception involved.
    pub fn detail(&self) -> &str {
        match self {
            Kind::OpenFile(t)
            | Kind::Lock(t)
            | Kind::Generator(t)
            | Kind::Socket(t)
            | Kind::NativeCode(t)
            | Kind::CtypesPointer(t)
            | Kind::Mock(t)
            | Kind::NoReduce { type_name: t, .. }
            | Kind::Raised { exception: t, .. } => t,
            Kind::TooDeep | Kind::AssignsGlobal | Kind::Internal(_) => "",
        }
    }

    fn describe(&self) -> String {
        match self {
            Kind::OpenFile(t) => format!("{t} is an open file"),
            Kind::Lock(t) => format!("{t} is a lock"),
            Kind::Generator(t) => format!("{t} is a generator"),
            Kind::Socket(t) => format!("{t} is a socket"),
            Kind::NativeCode(name) => format!(
                "native function `{name}`: the code it runs cannot be located (not from the \
                 standard library, an installed distribution or a loaded extension module file)"
            ),
            Kind::CtypesPointer(name) => format!(
                "ctypes function pointer `{name}`: only a library's function as a `ctypes.CDLL` \
                 gives it (`lib.name`) can be keyed by its code (the address of a callback, a \
                 cast or a prototype's function says nothing of the code there in another process)"
            ),
            Kind::TooDeep => "nested too deeply to be hashed".to_owned(),
            Kind::NoReduce { type_name, reason } => {
                format!("{type_name} cannot be hashed by content ({reason})")
            }
            Kind::Raised { exception, message } => {
                format!("{exception} was raised while hashing it ({message})")
            }
            Kind::AssignsGlobal => "assigns a global: a cached call would skip that effect".into(),
            Kind::Mock(t) => {
                format!("is replaced by a mock ({t}), which cannot be hashed by content")
            }
            Kind::Internal(msg) => format!("internal error in bytecache ({msg})"),
        }
    }
}

/// One step of the path from what was keyed to what could not be hashed.
#[derive(Clone, Debug)]
pub enum Step {
    /// An argument of the call (its parameter name).
    Argument(String),
    /// A function being fingerprinted (its qualified name).
    Function(String),
    /// A global the function before it reads.
    Global(String),
    /// A closure variable of the function before it.
    Closure(String),
    /// The default arguments of the function before it.
    Defaults,
    /// An attribute: of an instance, of the module or class before it, or
    /// in a function's `__dict__`.
    Attribute(String),
    /// A class (its qualified name).
    Class(String),
    /// A module (its name).
    Module(String),
    /// A position in a sequence.
    Item(u64),
    /// The value under a dict key (the key's repr when short).
    Key(String),
    /// An element of a set.
    Element,
}

impl Step {
    /// `(step, name)` as Python sees it in `UnhashableError.location`.
    pub fn pair(&self) -> (&'static str, String) {
        match self {
            Step::Argument(n) => ("argument", n.clone()),
            Step::Function(n) => ("function", n.clone()),
            Step::Global(n) => ("global", n.clone()),
            Step::Closure(n) => ("closure", n.clone()),
            Step::Defaults => ("defaults", String::new()),
            Step::Attribute(n) => ("attribute", n.clone()),
            Step::Class(n) => ("class", n.clone()),
            Step::Module(n) => ("module", n.clone()),
            Step::Item(i) => ("item", i.to_string()),
            Step::Key(k) => ("key", k.clone()),
            Step::Element => ("element", String::new()),
        }
    }
}

impl Unhashable {
    pub fn new(kind: Kind) -> Self {
        Unhashable {
            kind,
            location: Vec::new(),
        }
    }

    /// Adds `step` as the next step outwards.
    pub fn at(mut self, step: Step) -> Self {
        self.location.push(step);
        self
    }

    /// The path, outermost step first.
    pub fn location(&self) -> impl Iterator<Item = &Step> {
        self.location.iter().rev()
    }

    /// The human message: where, then what.
    pub fn message(&self) -> String {
        let steps: Vec<&Step> = self.location().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < steps.len() {
            let next = steps.get(i + 1).copied();
            let (text, used) = match (steps[i], next) {
                (Step::Function(f), Some(Step::Global(g))) => (format!("global `{g}` of `{f}`"), 2),
                (Step::Function(f), Some(Step::Closure(c))) => {
                    (format!("closure variable `{c}` of `{f}`"), 2)
                }
                (Step::Function(f), Some(Step::Defaults)) => {
                    (format!("a default argument of `{f}`"), 2)
                }
                (Step::Function(f), Some(Step::Attribute(a))) => {
                    (format!("attribute `{a}` of function `{f}`"), 2)
                }
                (Step::Class(c), Some(Step::Attribute(a))) => {
                    (format!("attribute `{a}` of class `{c}`"), 2)
                }
                (Step::Module(m), Some(Step::Attribute(a))) => (format!("`{m}.{a}`"), 2),
                (Step::Argument(n), _) => (format!("argument `{n}`"), 1),
                (Step::Function(f), _) => (format!("function `{f}`"), 1),
                (Step::Global(g), _) => (format!("global `{g}`"), 1),
                (Step::Closure(c), _) => (format!("closure variable `{c}`"), 1),
                (Step::Defaults, _) => ("a default argument".to_owned(), 1),
                (Step::Attribute(a), _) => (format!("attribute `{a}`"), 1),
                (Step::Class(c), _) => (format!("class `{c}`"), 1),
                (Step::Module(m), _) => (format!("module `{m}`"), 1),
                (Step::Item(n), _) => (format!("item {n}"), 1),
                (Step::Key(k), _) => (format!("key {k}"), 1),
                (Step::Element, _) => ("an element".to_owned(), 1),
            };
            parts.push(text);
            i += used;
        }
        if parts.len() > 2 * SHOWN {
            // A deep path: its ends say where it starts and what failed.
            parts.splice(SHOWN..parts.len() - SHOWN, ["…".to_owned()]);
        }
        if parts.is_empty() {
            self.kind.describe()
        } else {
            format!("{}: {}", parts.join(" → "), self.kind.describe())
        }
    }
}

impl HashError {
    pub fn new(kind: Kind) -> Self {
        HashError::Unhashable(Box::new(Unhashable::new(kind)))
    }

    /// Adds `step` as the next step outwards (what the failing value was
    /// found in). Called while the error propagates, so the success path
    /// pays nothing for locations.
    pub fn at(mut self, step: Step) -> Self {
        if let HashError::Unhashable(u) = &mut self {
            u.location.push(step);
        }
        self
    }

    /// Adds several steps, outermost first (a leaf's recorded site).
    pub fn within(mut self, outer: &[Step]) -> Self {
        if let HashError::Unhashable(u) = &mut self {
            u.location.extend(outer.iter().rev().cloned());
        }
        self
    }
}

impl From<Unhashable> for HashError {
    fn from(u: Unhashable) -> Self {
        HashError::Unhashable(Box::new(u))
    }
}

/// Any `Exception` raised while hashing is an unhashable outcome; other
/// `BaseException`s (`KeyboardInterrupt`, `SystemExit`) pass through.
impl From<PyErr> for HashError {
    #[cold]
    #[inline(never)]
    fn from(e: PyErr) -> Self {
        Python::attach(|py| {
            if !e.is_instance_of::<PyException>(py) {
                return HashError::Python(e);
            }
            let exception = e
                .get_type(py)
                .fully_qualified_name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "an exception".to_owned());
            let mut message = e.value(py).to_string();
            if message.len() > 200 {
                let cut = (0..=200).rev().find(|&i| message.is_char_boundary(i));
                message.truncate(cut.unwrap_or(0));
                message.push('…');
            }
            HashError::new(Kind::Raised { exception, message })
        })
    }
}

impl From<pyo3::CastError<'_, '_>> for HashError {
    fn from(e: pyo3::CastError<'_, '_>) -> Self {
        PyErr::from(e).into()
    }
}

impl From<pyo3::CastIntoError<'_>> for HashError {
    fn from(e: pyo3::CastIntoError<'_>) -> Self {
        PyErr::from(e).into()
    }
}
