"""What a miss reads and does at run time, observed while it runs.

The fingerprint covers what code can reach; this module records what the
call actually reads or does through libraries it cannot be fingerprinted
for, at any depth, in the call's own context (thread or asyncio task, and
threads it starts):

* the clock, entropy and the process id (`SOURCES`): not stored;
* interpreter-wide generators (`random`, numpy's legacy global): keyed on the
  state the call started from, the state it left replayed on a hit;
* paths it opens, lists, stats or tests, absence included; SQLite files;
  environment variables by name; the working directory; the locale;
* subprocesses, file-system writes, `chdir`, `putenv`: not stored;
* what it prints, warns and logs: replayed on a hit (`_effects`).

Observation costs nothing outside a miss: C functions are watched through
their method definitions (`_bytecache.observe_watch`), which report to
`_on_watched` only while `RECORDERS` is non-empty in the calling context;
the audit hook, the environment and the record factory check the same
context variable.
"""

from __future__ import annotations

import _thread
import contextvars
import os
import stat
import sys

from bytecache import _bytecache, _effects
from bytecache._reasons import (
    CHANGED_DURING_CALL,
    EFFECT,
    NONDETERMINISTIC,
    SUBPROCESS,
    UNOBSERVED,
    WROTE,
    Reason,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

#: The recorders of the misses running in this context (innermost last).
RECORDERS: contextvars.ContextVar[tuple[Recorder, ...]] = contextvars.ContextVar(
    "bytecache_recorders", default=())

_lock = _thread.allocate_lock()

# A path's state as a call saw it: None when absent, else (kind, size, mtime_ns)
# with kind the S_IFMT bits.
PathState = "tuple[int, int, int] | None"


class Recorder:
    """What one miss read and did."""

    __slots__ = ("files", "dirs", "probes", "env", "state", "refusals", "effects",
                 "rng", "closed", "cwd", "chdir", "inherited", "entropy", "__weakref__")

    def __init__(self) -> None:
        # path -> state when first opened for reading (None: absent)
        self.files: dict[str, Any] = {}
        # directories listed
        self.dirs: dict[str, None] = {}
        # (path, aspect) -> what the call saw (see `_deps.probe`)
        self.probes: dict[tuple[str, str], Any] = {}
        # environment variable -> value read (None: unset); "*": all of it
        self.env: dict[str, str | None] = {}
        # interpreter-wide state read: name -> value when first read
        self.state: dict[str, Any] = {}
        self.refusals: list[Reason] = []
        # what a hit must replay, in order (see `_effects`)
        self.effects: list[Any] = []
        # generator name -> raw state at start
        self.rng: dict[str, bytes] = {}
        self.closed = False
        # the working directory at the start, read when the call first reads
        # it or changes it ("" when it cannot be read; None: not yet)
        self.cwd: str | None = None
        self.chdir = False
        # items a nested hit depended on (see `_deps`): item -> None
        self.inherited: dict[Any, None] = {}
        # fresh entropy drawn to seed a generator, not yet known to matter
        # (numpy draws it, then legacy seeding may replace the state)
        self.entropy: list[Reason] = []

    def refuse(self, reason: Reason) -> None:
        if reason not in self.refusals:
            self.refusals.append(reason)


def _active() -> tuple[Recorder, ...]:
    recs = RECORDERS.get()
    return tuple(r for r in recs if not r.closed) if recs else ()


def failed(e: Exception) -> None:
    """Observation itself failed (a bytecache bug, or an object that broke
    it): the misses of this context cannot know what they read, so they are
    not stored (which is what their one warning says); the user's operation
    is not affected."""
    what = f"{type(e).__name__}: {e}"
    for r in _active():
        r.refuse(Reason(UNOBSERVED, what))


# --- where in the user's code -------------------------------------------------

_user_code: dict[Any, bool] = {}


def _is_user(frame: Any) -> bool:
    code = frame.f_code
    known = _user_code.get(code)
    if known is None:
        from bytecache import _modkind

        name = frame.f_globals.get("__name__")
        filename = code.co_filename
        if not isinstance(name, str) or filename.startswith("<frozen"):
            known = False
        else:
            known = _modkind.classify(name) is None
        _user_code[code] = known
    return known


def _module_of(frame: Any) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else ""


def _user_line(frame: Any) -> str | None:
    """`file.py:12` of the innermost frame of the user's code, if any."""
    f = frame
    while f is not None:
        if _is_user(f):
            return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno}"
        f = f.f_back
    return None


# --- the table of watched C functions ----------------------------------------

# What a watched call means.
WALL = "wall"  # the wall clock: nondeterministic unless an infrastructure caller
NOW_IF_NO_TIME = "now_if_no_time"  # localtime()/gmtime()/ctime()/asctime(): "now" without a time
NOW_IF_ONE_ARG = "now_if_one_arg"  # strftime(fmt): "now"
INTERVAL = "interval"  # monotonic/perf_counter/...: nondeterministic when the user's code reads it
PROCESS = "process"  # the process id: likewise
ENTROPY = "entropy"  # os.urandom & co: nondeterministic unless an infrastructure caller
PROBE = "probe"  # os.stat/lstat/access/readlink: a path's metadata
CWD = "cwd"  # os.getcwd: the working directory
LOCALE = "locale"  # setlocale: a query reads the locale, a change is an effect
THREAD = "thread"  # a thread start: the thread reports to the call
SEED = "seed"  # a generator (re)seeded
RESEED = "reseed"  # numpy's legacy seeding replaced a fresh generator's state

#: (module, attribute path, kind). Looked up in the module (a dotted path
#: reaches into classes, through their __dict__ so descriptors are found).
SOURCES: tuple[tuple[str, str, str], ...] = (
    ("time", "time", WALL),
    ("time", "time_ns", WALL),
    ("time", "localtime", NOW_IF_NO_TIME),
    ("time", "gmtime", NOW_IF_NO_TIME),
    ("time", "ctime", NOW_IF_NO_TIME),
    ("time", "asctime", NOW_IF_NO_TIME),
    ("time", "strftime", NOW_IF_ONE_ARG),
    ("time", "monotonic", INTERVAL),
    ("time", "monotonic_ns", INTERVAL),
    ("time", "perf_counter", INTERVAL),
    ("time", "perf_counter_ns", INTERVAL),
    ("time", "process_time", INTERVAL),
    ("time", "process_time_ns", INTERVAL),
    ("time", "thread_time", INTERVAL),
    ("time", "thread_time_ns", INTERVAL),
    ("datetime", "datetime.now", WALL),
    ("datetime", "datetime.utcnow", WALL),
    ("datetime", "date.today", WALL),
    ("os", "urandom", ENTROPY),
    ("os", "getrandom", ENTROPY),
    ("_uuid", "generate_time_safe", ENTROPY),
    ("os", "getpid", PROCESS),
    ("os", "stat", PROBE),
    ("os", "lstat", PROBE),
    ("os", "access", PROBE),
    ("os", "readlink", PROBE),
    ("os", "getcwd", CWD),
    ("os", "getcwdb", CWD),
    ("_locale", "setlocale", LOCALE),
    ("_locale", "localeconv", LOCALE),
    ("numpy.random._mt19937", "MT19937._legacy_seeding", RESEED),
    ("_random", "Random.seed", SEED),
    ("_random", "Random.setstate", SEED),
    ("_thread", "start_new_thread", THREAD),
    ("_thread", "start_joinable_thread", THREAD),
)

#: Callers whose clock and entropy reads are infrastructure (timeouts,
#: timestamps on log records, progress bars, fit timings, worker handshakes),
#: not values a result is computed from. A module name or a package prefix.
INFRASTRUCTURE = (
    "logging", "threading", "queue", "asyncio", "concurrent", "selectors",
    "subprocess", "multiprocessing", "socket", "ssl", "tempfile",
    "tqdm", "joblib", "loky", "sklearn", "IPython", "ipykernel", "zmq", "tornado",
    "traitlets", "jupyter_client", "bytecache", "warnings", "_strptime",
)


def _infrastructure(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in INFRASTRUCTURE)


# Functions of the standard library that stat a path for one aspect of it:
# (module, function name) -> aspect. Anything else that stats: "stat".
_ASPECTS = {
    ("genericpath", "exists"): "exists",
    ("genericpath", "lexists"): "exists",
    ("posixpath", "lexists"): "exists",
    ("genericpath", "isfile"): "type",
    ("genericpath", "isdir"): "type",
    ("posixpath", "islink"): "type",
    ("genericpath", "islink"): "type",
    ("posixpath", "ismount"): "type",
    ("genericpath", "getsize"): "size",
    ("genericpath", "getmtime"): "mtime",
    ("genericpath", "getctime"): "mtime",
    ("genericpath", "getatime"): "mtime",
    ("pathlib", "exists"): "exists",
    ("pathlib", "is_file"): "type",
    ("pathlib", "is_dir"): "type",
    ("pathlib", "is_symlink"): "type",
    ("pathlib._local", "exists"): "exists",
    ("pathlib._local", "is_file"): "type",
    ("pathlib._local", "is_dir"): "type",
    ("pathlib._abc", "exists"): "exists",
    ("pathlib._abc", "is_file"): "type",
    ("pathlib._abc", "is_dir"): "type",
}


def _aspect(frame: Any) -> str:
    """Which aspect of a stat result the caller uses (looking through
    pathlib's `stat()` and `os.path` wrappers)."""
    f = frame
    for _ in range(3):
        if f is None:
            break
        a = _ASPECTS.get((_module_of(f), f.f_code.co_name))
        if a is not None:
            return a
        f = f.f_back
    return "stat"


#: SOURCES not watched yet (their module is a third-party one not loaded yet).
_unwatched: list[tuple[str, str, str]] = list(SOURCES)
_modules_seen = 0


def _watch_loaded() -> list[str]:
    """Watches every function of SOURCES whose module is loaded (the
    standard library's are imported: they are small); returns what could not
    be watched, and why. Cheap when no module was loaded since."""
    global _modules_seen
    import importlib

    if len(sys.modules) == _modules_seen:
        return []
    problems = []
    for entry in list(_unwatched):
        module, path, kind = entry
        obj: Any = sys.modules.get(module)
        if obj is None and "." not in module:
            try:
                obj = importlib.import_module(module)
            except ImportError:
                obj = None
        if obj is None:
            continue
        _unwatched.remove(entry)
        for i, part in enumerate(path.split(".")):
            holder = obj
            obj = holder.__dict__.get(part) if i and isinstance(holder, type) else getattr(
                holder, part, None)
            if obj is None:
                break
        if obj is None:
            continue
        tag = (kind, f"{module.lstrip('_')}.{path}")
        why = _bytecache.observe_watch(obj, tag, before=kind in (THREAD, SEED))
        if why is not None:
            problems.append(f"{tag[1]}: {why}")
    _modules_seen = len(sys.modules)
    return problems


#: Where the import system's code lives (frozen; the standard library's
#: `os`, `posixpath`, `genericpath` are frozen too, and are not it).
_IMPORT_SYSTEM = frozenset({"<frozen importlib._bootstrap>",
                            "<frozen importlib._bootstrap_external>", "<frozen zipimport>"})


def _environment_lookup(frame: Any) -> bool:
    """The caller is the import system or `importlib.metadata`: its stats,
    listings and getcwd find modules and installed distributions (of
    `sys.path` entries, `''` being the working directory), which the
    fingerprint keys by identity; they are not the call's data."""
    if frame is None:
        return False
    if frame.f_code.co_filename in _IMPORT_SYSTEM:
        return True
    module = _module_of(frame)
    return module == "importlib.metadata" or module.startswith("importlib.metadata.")


def _on_watched(recorders: tuple[Recorder, ...], tag: tuple[str, str], slf: Any,
                args: tuple[Any, ...], kwargs: dict[str, Any] | None, result: Any,
                error: BaseException | None) -> Any:
    """A watched C function was called in an observed context."""
    try:
        return _watched(sys._getframe(1), recorders, tag, slf, args, kwargs, result, error)
    except Exception as e:  # noqa: BLE001 - never the user's error
        failed(e)
        return None


def _watched(frame: Any, recorders: tuple[Recorder, ...], tag: tuple[str, str], slf: Any,
             args: tuple[Any, ...], kwargs: dict[str, Any] | None, result: Any,
             error: BaseException | None) -> Any:
    """`_on_watched` for the call made from `frame`."""
    kind, label = tag
    recs = [r for r in recorders if not r.closed]
    if kind == THREAD:
        return _thread_entry(recorders, args[0]) if recs else None
    if not recs:
        return None
    if _environment_lookup(frame):
        return None
    if kind in (WALL, ENTROPY, NOW_IF_NO_TIME, NOW_IF_ONE_ARG):
        if kind == NOW_IF_NO_TIME and args and args[0] is not None:
            return None
        if kind == NOW_IF_ONE_ARG and len(args) != 1:
            return None
        if _infrastructure(_module_of(frame)) and not _is_user(frame):
            return None
        if _importing_library(frame):
            return None
        reason = Reason(NONDETERMINISTIC, label, _user_line(frame))
        if kind == ENTROPY and _seeding_entropy(frame):
            for r in recs:
                r.entropy.append(reason)
            return None
        _refuse_all(recs, reason)
    elif kind == RESEED:
        for r in recs:
            if r.entropy:
                r.entropy.pop()
    elif kind in (INTERVAL, PROCESS):
        if _is_user(frame):
            _refuse_all(recs, Reason(NONDETERMINISTIC, label, _user_line(frame)))
    elif kind == PROBE:
        path = args[0] if args else (kwargs or {}).get("path")
        if kwargs and kwargs.get("dir_fd") is not None:
            return None  # relative to a directory descriptor: a walk the call listed
        _probe(recs, path, _aspect(frame), result, error, label)
    elif kind == CWD:
        _read_cwd(recs)
    elif kind == LOCALE:
        if label.endswith("setlocale") and (len(args) > 1 and args[1] is not None or
                                            (kwargs or {}).get("locale") is not None):
            _refuse_all(recs, Reason(EFFECT, "changes the locale", _user_line(frame)))
        else:
            for r in recs:
                r.state.setdefault("locale", None)
    elif kind == SEED:
        if slf is _global_random():
            for r in recs:
                r.state.setdefault("random.seeded", rng_raw("random"))
    return None


def _importing_library(frame: Any) -> bool:
    """The read is made while a library module (the standard library's or an
    installed distribution's) runs its body, imported during the call: its
    initialization, the same whether it is imported before the call or in
    it, and keyed by the library's identity. A user's module is not exempt:
    its globals are keyed by value only when loaded before the call."""
    f = frame
    while f is not None:
        code = f.f_code
        if code.co_name == "exec_module" and code.co_filename in _IMPORT_SYSTEM:
            name = getattr(f.f_locals.get("module"), "__name__", None)
            if not isinstance(name, str):
                return False
            from bytecache import _modkind

            return _modkind.classify(name) is not None
        f = f.f_back
    return False


def _seeding_entropy(frame: Any) -> bool:
    """The entropy is `secrets.randbits` (the `secrets` module's own
    `SystemRandom`), which is how numpy's `SeedSequence` seeds a new bit
    generator; legacy seeding (`RandomState(seed)`) then replaces it."""
    if frame.f_code.co_name != "getrandbits":
        return False
    secrets = sys.modules.get("secrets")
    return secrets is not None and frame.f_locals.get("self") is getattr(secrets, "_sysrand", None)


def _refuse_all(recs: list[Recorder], reason: Reason) -> None:
    for r in recs:
        r.refuse(reason)


# --- paths -------------------------------------------------------------------

_SKIP_PREFIXES = tuple(
    {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _resolve(recs: list[Recorder], path: Any) -> str | None:
    """The absolute, resolved path (relative to the working directory of the
    moment, which then is a dependency), or None for what is not a path.

    Where the path as named goes through a symbolic link (or `..`), where it
    leads is a dependency too (a `("probe", named, "resolves")` item): the
    file's own state cannot tell that the link now points elsewhere."""
    if isinstance(path, os.PathLike):
        try:
            path = os.fspath(path)
        except Exception:  # noqa: BLE001 - not a path after all
            return None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return None
    relative = not os.path.isabs(path)
    known = None if relative else _real_paths.get(path)
    if known is None:
        _bytecache.observe_internal(True)
        try:
            named = os.path.join(os.getcwd(), path) if relative else path  # not normalized:
            real = resolved(named)  # the OS takes `..` after a link
            known = (named, real, real != os.path.abspath(named))
        except (OSError, ValueError):
            return None
        finally:
            _bytecache.observe_internal(False)
        if not relative:  # a relative one: only for this working directory
            _real_paths[path] = known
    named, real, linked = known
    if relative:
        _read_cwd(recs)
    if linked and not _library_path(real):
        for r in recs:
            r.probes.setdefault((named, "resolves"), real)
    return real


def resolved_now(named: str) -> str:
    """Where an absolute path leads now (a lookup's check of a "resolves"
    item)."""
    _bytecache.observe_internal(True)
    try:
        return os.path.realpath(named)
    finally:
        _bytecache.observe_internal(False)


def resolved(named: str) -> str:
    """`realpath` of an absolute path, with its directory's resolution
    cached while misses run (paths without `..` only)."""
    if ".." in named:
        return os.path.realpath(named)
    head, tail = os.path.split(os.path.normpath(named))
    real_head = _real_dirs.get(head)
    if real_head is None:
        real_head = _real_dirs[head] = os.path.realpath(head)
    joined = os.path.join(real_head, tail)
    try:
        if stat.S_ISLNK(os.lstat(joined).st_mode):
            return os.path.realpath(joined)
    except (OSError, ValueError):
        pass
    return joined


#: directory -> its resolved path, and absolute path -> its resolved path,
#: for the observations running now (a miss is short; cleared when one
#: starts): most reads of a call are in a few directories, often of the same
#: files, and `realpath` costs an `lstat` per component.
_real_dirs: dict[str, str] = {}
_real_paths: dict[str, tuple[str, str, bool]] = {}


def _library_path(real: str) -> bool:
    return real.startswith(_SKIP_PREFIXES) or real.endswith(".pyc")


def path_state(path: str) -> Any:
    """(S_IFMT kind, size, mtime_ns) of a path now, or None when absent."""
    _bytecache.observe_internal(True)
    try:
        st = os.stat(path)
    except OSError:
        return None
    finally:
        _bytecache.observe_internal(False)
    return (st.st_mode & 0o170000, st.st_size, st.st_mtime_ns)


def _probe(recs: list[Recorder], path: Any, aspect: str, result: Any,
           error: BaseException | None, label: str) -> None:
    if isinstance(path, int):
        return  # a descriptor: the file was opened (and recorded) already
    real = _resolve(recs, path)
    if real is None or _library_path(real):
        return
    if label.endswith("access"):
        aspect = "exists"
    if all((real, aspect) in r.probes for r in recs):
        return  # its state when first probed is the dependency
    state = None
    if error is None and result is not None and hasattr(result, "st_mode"):
        state = (result.st_mode & 0o170000, result.st_size, result.st_mtime_ns)
    elif error is None:
        state = path_state(real)
    for r in recs:
        r.probes.setdefault((real, aspect), state)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    handler = _AUDIT.get(event)
    if handler is None:
        return
    if _bytecache.observe_is_internal():
        return
    recs = _active()
    try:
        if recs and not _environment_lookup(sys._getframe(1)):
            handler(list(recs), args)
    except Exception as e:  # noqa: BLE001 - an audit hook's error would fail the user's open()
        failed(e)


def _on_open(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    path, mode, flags = (args + (None, None, 0))[:3]
    if isinstance(path, int):
        return
    real = _resolve(recs, path)
    if real is None:
        return
    writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
        (flags or 0) & _WRITE_FLAGS)
    if writes:
        _refuse_all(recs, Reason(WROTE, _shown(real), _where()))
        return
    if _library_path(real) or all(real in r.files for r in recs):
        return
    state = path_state(real)
    for r in recs:
        r.files.setdefault(real, state)


def _on_listdir(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    path = args[0] if args else None
    if isinstance(path, int):
        return
    real = _resolve(recs, "." if path is None else path)
    if real is None or _library_path(real):
        return
    for r in recs:
        r.dirs.setdefault(real, None)


def _on_subprocess(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    what = args[1] if len(args) > 1 else (args[0] if args else "")
    if isinstance(what, (list, tuple)):
        what = " ".join(map(str, what))
    _refuse_all(recs, Reason(SUBPROCESS, str(what)[:80], _where()))


def _on_write(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    target = args[0] if args else "?"
    real = _resolve(recs, target) if not isinstance(target, int) else None
    _refuse_all(recs, Reason(WROTE, _shown(real or str(target)), _where()))


def _cwd_at_start(recs: Sequence[Recorder]) -> None:
    """Notes the working directory as it was when each recording started:
    called at a recording's first read or change of it, before which it is
    the same as at the start."""
    if all(r.cwd is not None for r in recs):
        return
    _bytecache.observe_internal(True)
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = ""
    finally:
        _bytecache.observe_internal(False)
    for r in recs:
        if r.cwd is None:
            r.cwd = cwd


def _read_cwd(recs: Sequence[Recorder]) -> None:
    _cwd_at_start(recs)
    for r in recs:
        r.state.setdefault("cwd", None)


def _on_chdir(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    _cwd_at_start(recs)  # the audit event comes before the change
    for r in recs:
        r.chdir = True


def _on_sqlite(recs: list[Recorder], args: tuple[Any, ...]) -> None:
    database = args[0] if args else None
    if isinstance(database, (bytes, os.PathLike)):
        database = os.fsdecode(database)
    if not isinstance(database, str) or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        database = database[5:].partition("?")[0]
        if database in ("", ":memory:"):
            return
    real = _resolve(recs, database)
    if real is None:
        return
    for suffix in ("", "-wal", "-journal"):
        state = path_state(real + suffix)
        for r in recs:
            r.files.setdefault(real + suffix, state)


def _where() -> str | None:
    return _user_line(sys._getframe(2))


def _shown(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


_AUDIT: dict[str, Callable[[list[Recorder], tuple[Any, ...]], None]] = {
    "open": _on_open,
    "os.listdir": _on_listdir,
    "os.scandir": _on_listdir,
    "subprocess.Popen": _on_subprocess,
    "os.system": _on_subprocess,
    "os.exec": _on_subprocess,
    "os.posix_spawn": _on_subprocess,
    "os.spawn": _on_subprocess,
    "os.remove": _on_write,
    "os.rename": _on_write,
    "os.replace": _on_write,
    "os.mkdir": _on_write,
    "os.rmdir": _on_write,
    "os.truncate": _on_write,
    "os.chmod": _on_write,
    "os.chown": _on_write,
    "os.utime": _on_write,
    "os.link": _on_write,
    "os.symlink": _on_write,
    "shutil.copyfile": _on_write,
    "shutil.rmtree": _on_write,
    "shutil.move": _on_write,
    "os.chdir": _on_chdir,
    "sqlite3.connect": _on_sqlite,
}


# --- threads -------------------------------------------------------------------


def _thread_entry(recorders: tuple[Recorder, ...], func: Any) -> Any:
    """The function a thread started during a miss runs: the thread reports
    to the misses that started it."""

    def run(*args: Any, **kwargs: Any) -> Any:
        RECORDERS.set(recorders)
        return func(*args, **kwargs)

    return run


# --- environment variables ----------------------------------------------------


class _EnvData(dict):  # type: ignore[type-arg]
    """`os.environ._data` (and `os.environb._data`): reads and writes made in
    an observed context are recorded by name."""

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        recs = _active()
        if recs and not _bytecache.observe_is_internal():
            try:
                name = os.fsdecode(key) if isinstance(key, bytes) else str(key)
                value = dict.get(self, key)
                value = os.fsdecode(value) if isinstance(value, bytes) else value
                for r in recs:
                    r.env.setdefault(name, value)
            except Exception as e:  # noqa: BLE001 - never the user's error
                failed(e)
        return dict.__getitem__(self, key)

    def __iter__(self) -> Any:
        recs = _active()
        if recs and not _bytecache.observe_is_internal():
            for r in recs:
                r.env.setdefault("*", None)
        return dict.__iter__(self)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._wrote(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: Any) -> None:
        self._wrote(key)
        dict.__delitem__(self, key)

    def _wrote(self, key: Any) -> None:
        recs = _active()
        if recs and not _bytecache.observe_is_internal():
            try:
                name = os.fsdecode(key) if isinstance(key, bytes) else str(key)
                _refuse_all(list(recs), Reason(EFFECT, f"sets environment variable {name}",
                                               _where()))
            except Exception as e:  # noqa: BLE001 - never the user's error
                failed(e)


def env_value(name: str) -> str | None:
    """The current value of an environment variable, unrecorded."""
    _bytecache.observe_internal(True)
    try:
        return os.environ.get(name)
    finally:
        _bytecache.observe_internal(False)


def _install_environ() -> None:
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict) and type(data) is dict:
        new = _EnvData(data)
        os.environ._data = new  # type: ignore[attr-defined]
        environb = getattr(os, "environb", None)
        if environb is not None and getattr(environb, "_data", None) is data:
            environb._data = new
        _bytecache.config_changed()  # memos watch the environment's new dict


# --- interpreter-wide generators ------------------------------------------------

_rng_reader_ok: dict[str, bool] = {}


def _global_random() -> Any:
    module = sys.modules.get("random")
    return getattr(module, "_inst", None)


def _global_mt19937() -> Any:
    mtrand = sys.modules.get("numpy.random.mtrand")
    rs = getattr(mtrand, "_rand", None)
    return getattr(rs, "_bit_generator", None)


def rng_raw(name: str) -> bytes | None:
    """The raw state of an interpreter-wide generator, or None when it is
    not loaded (or its layout is not the one this build reads)."""
    obj = _global_random() if name == "random" else _global_mt19937()
    if obj is None:
        return None
    ok = _rng_reader_ok.get(name)
    if ok is None:
        ok = _rng_reader_ok[name] = _check_rng_reader(name, obj)
    if not ok:
        return None
    kind = "random" if name == "random" else "mt19937"
    raw = _bytecache.observe_rng_state(obj, kind)
    if name == "random":
        raw += repr(getattr(obj, "gauss_next", None)).encode()
    return raw


def _check_rng_reader(name: str, obj: Any) -> bool:
    try:
        if name == "random":
            st = obj.getstate()[1]
            expected = st[624].to_bytes(4, "little", signed=True) + b"".join(
                x.to_bytes(4, "little") for x in st[:624])
            return bool(_bytecache.observe_rng_state(obj, "random") == expected)
        s = obj.state["state"]
        expected = s["key"].astype("<u4").tobytes() + int(s["pos"]).to_bytes(
            4, "little", signed=True)
        return bool(_bytecache.observe_rng_state(obj, "mt19937") == expected)
    except Exception:  # noqa: BLE001 - an unknown layout: not read
        return False


RNG_NAMES = ("random", "numpy.random")


def inherit(files: list[Any], dirs: list[Any], items: tuple[Any, ...]) -> None:
    """A hit inside enclosing misses: they depend on what it depended on."""
    recs = _active()
    if not recs:
        return
    for r in recs:
        for f in files:
            r.files.setdefault(f[0], path_state(f[0]))
        for d in dirs:
            r.dirs.setdefault(d[0], None)
        for item in items:
            r.inherited.setdefault(item, None)


# --- starting and stopping --------------------------------------------------------

_installed = False


def install() -> None:
    """Sets up observation once per process (idle until a miss starts)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        _bytecache.observe_install(RECORDERS, _on_watched)
        problems = _watch_loaded()
        sys.addaudithook(_audit)  # cannot be removed; idle outside misses
        _install_environ()
        _effects.install(RECORDERS)
        _installed = True
    if problems:
        from bytecache._config import warn_once

        warn_once("bytecache cannot observe " + "; ".join(problems) + ": calls reaching them "
                  "may be stored", key="observe:install")


# --- files native code opens ----------------------------------------------------

_native_warned = False
_NATIVE_WRITES = os.O_WRONLY | os.O_TRUNC | os.O_APPEND
_SYSTEM_FILES = ("/proc/", "/sys/", "/dev/")
_ENTROPY_FILES = frozenset({"/dev/urandom", "/dev/random"})


def _native_begin() -> int | None:
    global _native_warned
    try:
        return _bytecache.observe_native_begin()
    except OSError as e:
        if not _native_warned:
            _native_warned = True
            from bytecache._config import warn_once

            warn_once(f"bytecache cannot observe files native code opens ({e}): calls of "
                      "libraries that read files in C may be stored", key="observe:native")
        return None


def _native_opened(r: Recorder, opened: list[tuple[bytes, int, Any]], complete: bool) -> None:
    """Files a library's native code opened, and environment variables it
    read, while the miss ran (any thread): read files and variables are
    dependencies like those Python reads, written files effects a hit would
    skip."""
    if not complete:
        r.refuse(Reason(UNOBSERVED, "native code opened more files than it could record"))
    for raw, flags, state in opened:
        if flags == _bytecache.OBSERVE_NATIVE_GETENV:  # `raw` is the variable's name
            name = os.fsdecode(raw)
            r.env.setdefault(name, env_value(name))
            continue
        path = os.fsdecode(raw)
        if path.startswith(_SYSTEM_FILES):  # the kernel's view of the process
            if path in _ENTROPY_FILES:
                r.refuse(Reason(NONDETERMINISTIC, path))
            continue
        real = _resolve([r], path)
        if real is None or _library_path(real):
            continue
        if flags & _NATIVE_WRITES or (flags & os.O_CREAT and not flags & os.O_RDWR):
            r.refuse(Reason(WROTE, _shown(real), "native code"))
        elif state is not None and state[0] == stat.S_IFDIR:
            r.dirs.setdefault(real, None)
        else:  # read (O_RDWR too: a write shows as a change during the call)
            r.files.setdefault(real, state)


class Observation:
    """A miss being observed: `start()` before the body, `stop()` after."""

    __slots__ = ("recorder", "token", "effects", "native")

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.token: Any = None
        self.effects: Any = None
        self.native: int | None = None

    def start(self) -> Recorder:
        if len(sys.modules) != _modules_seen:
            _watch_loaded()
        _real_dirs.clear()
        _real_paths.clear()
        r = self.recorder
        for name in RNG_NAMES:
            raw = rng_raw(name)
            if raw is not None:
                r.rng[name] = raw
        self.token = RECORDERS.set(RECORDERS.get() + (r,))
        self.effects = _effects.start(r)
        self.native = _native_begin()
        return r

    def stop(self) -> Recorder:
        """Ends the observation; records what the call left behind."""
        r = self.recorder
        if r.closed:
            return r
        r.closed = True
        if self.native is not None:
            opened, complete = _bytecache.observe_native_end(self.native)
            self.native = None
            _native_opened(r, opened, complete)
        _effects.stop(r, self.effects)
        token, self.token = self.token, None
        if token is not None:
            try:
                RECORDERS.reset(token)
            except ValueError:  # another context (a generator resumed elsewhere)
                RECORDERS.set(tuple(x for x in RECORDERS.get() if x is not r))
        for reason in r.entropy:
            r.refuse(reason)
        if r.chdir:
            try:
                now = os.getcwd()
            except OSError:
                now = ""
            if now != r.cwd:
                r.refuse(Reason(EFFECT, "changes the working directory"))
        for name, before in list(r.rng.items()):
            after = rng_raw(name)
            if after == before:
                del r.rng[name]  # not drawn from
                continue
            seeded = r.state.get(f"{name}.seeded")
            if seeded is not None and seeded == before:
                r.rng[name] = b""  # reseeded before any draw: its start is not an input
            _effects.rng_left(r, name)
        return r

    def changed_during_call(self) -> Reason | None:
        """A file the call read (or found absent) that is different now: a C
        library or another process wrote it while the call ran."""
        r = self.recorder
        for path, seen in r.files.items():
            now = path_state(path)
            if (seen is None) != (now is None) or (seen and now and seen[1:] != now[1:]):
                return Reason(CHANGED_DURING_CALL, _shown(path))
        return None
