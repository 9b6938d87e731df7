"""One memoized call, whoever intercepts it (the decorator or `enable()`'s hook):

    hit, value = begin(target, arguments, ...)
    if not hit:
        box = [<run the body>]          # on exception: value.abort() if value
        if value: value.commit(box)     # `box` holds the caller's only reference
        return box[0]

A stored result is reused only when the key (function fingerprint + argument
contents) matches, the items the call read at run time have the values it
saw (`_deps`) and the files it read are unchanged. A miss is computed under
observation and then stored or refused by `_miss`, loaded at a process's
first miss. Any failure of the cache itself means: run the function
normally, warn once.
"""

from __future__ import annotations

import os
import sys

from bytecache import _bytecache, _config, _deps, _distcache
from bytecache._config import warn_once
from bytecache._reasons import Reason

TYPE_CHECKING = False  # typing costs ~10 ms to import; only checkers need it

if TYPE_CHECKING:
    from typing import Any


_stats_lock = __import__("_thread").allocate_lock()


class Counters:
    __slots__ = ("hits", "misses", "stored", "uncacheable", "saved_seconds", "memo")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.stored = 0
        self.uncacheable = 0
        self.saved_seconds = 0.0
        self.memo: Any = None  # its hits answered from kept results count too

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "memo"}
        hits, saved = self.memo.fast_hits if self.memo else _bytecache.fast_totals()
        out["hits"] += hits
        out["saved_seconds"] += saved
        return out


TOTAL = Counters()


# BYTECACHE=off in the environment at start-up turns memoization off.
OFF = os.environ.get("BYTECACHE", "").strip().lower() in ("off", "0", "false", "no")


def is_disabled() -> bool:
    return OFF or _bytecache.is_disabled()


class disabled:
    """`with bytecache.disabled():` runs every call normally (this thread)."""

    def __enter__(self) -> disabled:
        _bytecache.set_disabled(True)
        return self

    def __exit__(self, *exc: object) -> None:
        _bytecache.set_disabled(False)


# --- files read in full: validated by content ------------------------------------

# A file read: (path, size, mtime_ns, digest); a directory listed: (path, digest).
FileDep = tuple[str, int, int, bytes]
DirDep = tuple[str, bytes]


def _internal(f: Any, *args: Any) -> Any:
    _bytecache.observe_internal(True)
    try:
        return f(*args)
    finally:
        _bytecache.observe_internal(False)


def _file_state(path: str) -> FileDep | None:
    try:
        st = _internal(os.stat, path)
        digest = _bytecache.hash_file(path)
    except OSError:
        return None
    return (path, st.st_size, st.st_mtime_ns, digest)


def _dir_state(path: str) -> DirDep | None:
    try:
        names = sorted(_internal(os.listdir, path))
    except OSError:
        return None
    return (path, _bytecache.hash_value(tuple(names)))


def _shown(path: str) -> str:
    from bytecache import _observe

    return _observe._shown(path)


def deps_valid(files: list[FileDep], dirs: list[DirDep]) -> Reason | None:
    """None when every recorded file and directory is unchanged, else why not."""
    from bytecache._reasons import FILE_CHANGED

    for path, size, mtime_ns, digest in files:
        try:
            st = _internal(os.stat, path)
        except OSError:
            return Reason(FILE_CHANGED, f"file {_shown(path)} is gone")
        if st.st_size == size and st.st_mtime_ns == mtime_ns:
            continue
        # Touched or rewritten: the content decides.
        now = _file_state(path)
        if now is None or now[3] != digest:
            return Reason(FILE_CHANGED, f"file {_shown(path)} changed")
    for path, digest in dirs:
        listed = _dir_state(path)
        if listed is None or listed[1] != digest:
            return Reason(FILE_CHANGED, f"directory {_shown(path)} changed")
    return None


# How long a miss waits for another process computing the same call.
CLAIM_TIMEOUT = 600.0


# --- begin / commit ----------------------------------------------------------


class Target:
    """What a memoized function needs to know about itself. It does not keep the
    function alive: its memo holds it weakly (see `func`)."""

    __slots__ = ("qualname", "group", "counters", "ignore", "cache_dir", "memo", "refused",
                 "__weakref__")

    def __init__(self, func: Any, *, ignore: tuple[str, ...] = (),
                 cache_dir: str | None = None) -> None:
        self.qualname: str = getattr(func, "__qualname__", None) or "?"
        name = (getattr(func, "__module__", None) or "", getattr(func, "__qualname__", "") or "")
        self.group: bytes = _bytecache.hash_value(name)
        self.ignore = list(ignore)
        self.cache_dir = cache_dir
        # The cached fingerprint plan and the results kept in this process.
        self.memo = _bytecache.Memo(func, self.ignore)
        # Library classification (sysconfig, distribution metadata) loads now,
        # with the definition, rather than inside the first call.
        if cache_dir is not None:
            _distcache.consider(cache_dir)
        from bytecache import _modkind  # noqa: F401
        self.counters = Counters()
        self.counters.memo = self.memo
        # key -> why its latest miss was not stored (for explain)
        self.refused: dict[bytes, list[Reason]] = {}

    @property
    def func(self) -> Any:
        """The function, or None once it was collected."""
        return self.memo.func

    def __reduce__(self) -> tuple[Any, ...]:
        # What identity sees of a memoized function's `__bytecache_target__`:
        # the function and the settings, not the counters or the plan cache.
        return (Target, (self.func,), {"ignore": self.ignore, "cache_dir": self.cache_dir})


class Busy:
    """`begin(..., wait=False)`: another caller is computing this call."""

    __slots__ = ()


BUSY = Busy()


def _ambient(t: Target) -> tuple[str, ...]:
    """The interpreter-wide state the libraries `t`'s fingerprint reaches
    read (see `_deps.LIBRARY_STATE`), sorted."""
    try:
        libraries, names_argv = t.memo.reach()
    except Exception:  # noqa: BLE001 - not fingerprintable: no key either
        return ()
    names: list[str] = []
    for lib in libraries:
        for name in _deps.LIBRARY_STATE.get(lib, ()):
            if name not in names:
                names.append(name)
    if names_argv and "argv" not in names:
        names.append("argv")
    return tuple(sorted(names))


def _remember_refusal(t: Target, key: bytes, reasons: list[Reason]) -> None:
    if len(t.refused) > 256:
        t.refused.clear()
    t.refused.pop(key, None)  # the latest last (see `latest_refusal`)
    t.refused[key] = reasons
    t.memo.refused()  # a few in a row: its calls run unmemoized for a while


def latest_refusal(t: Target) -> list[Reason] | None:
    """Why the latest call of `t` that ran was not stored, if it was not."""
    return next(reversed(t.refused.values()), None)


def begin(target: Target, arguments: dict[str, Any], *, min_seconds: float = 0.0,
          key: bytes | None = None, wait: bool = True,
          absent: bool = False) -> tuple[bool, Any]:
    """(True, value) on a hit; (False, Miss) to compute and commit; (False, None)
    when this call is not memoized (disabled, unhashable, cache unavailable);
    (False, BUSY) when `wait` is false and another caller computes it.
    `key`: already computed by `Memo.quick` (which found nothing kept).
    `absent`: the memo's store source (see `_source`) found nothing at `key`."""
    if is_disabled():
        return False, None
    if key is None:
        try:
            key = target.memo.key(arguments)
        except _bytecache.UnhashableError as e:
            with _stats_lock:
                target.counters.uncacheable += 1
                TOTAL.uncacheable += 1
            target.memo.refused()
            warn_once(f"not memoized: {e}")
            return False, None
        kept = target.memo.recall(key)
        if kept is not None:
            return True, kept[0]
    directory = _config.cache_dir(target.cache_dir)
    try:
        store = _config.store(directory)
    except Exception as e:  # noqa: BLE001 - unusable cache dir: run normally
        warn_once(f"bytecache cannot use {directory} ({e}); calls run uncached",
                  key=f"open:{directory}")
        return False, None
    if absent and type(store) is _bytecache.Store:
        hit, manifest = _lookup(target, store, key, arguments, absent=True)
    else:
        _source(target, directory)
        hit, manifest = _lookup(target, store, key, arguments)
    if hit is not None:
        return True, hit[0]
    # Another process may be computing this very call: wait for its result
    # (bounded; a computing process that dies releases its claim) instead of
    # computing it twice.
    claim = None
    try:
        claim = store.claim(key, CLAIM_TIMEOUT if wait else 0.0)
    except Exception as e:  # noqa: BLE001 - no claim: compute without one
        warn_once(f"bytecache could not coordinate with other processes ({e})",
                  key=f"claim:{type(e).__name__}")
    if claim is not None and not claim.compute:
        busy = claim.state == "timeout"
        claim = None
        hit, manifest = _lookup(target, store, key, arguments)
        if hit is not None:
            return True, hit[0]
        if busy and not wait:
            return False, BUSY
    with _stats_lock:
        target.counters.misses += 1
        TOTAL.misses += 1
    return False, _misses().Miss(target, arguments, key, store, min_seconds, claim, manifest)


def _misses() -> Any:
    """`_miss`, imported at the process's first miss: a process that only
    hits never loads observation."""
    module = sys.modules.get("bytecache._miss")
    if module is None:
        from bytecache import _miss as module
    return module


def _source(target: Target, directory: str) -> None:
    """Lets the memo read plain stored results of `target` from the local
    store of `directory` without this path (`identity::source`), until the
    configuration or the environment changes."""
    environ = getattr(os.environ, "_data", None)
    if isinstance(environ, dict):
        try:
            target.memo.set_source(_config.local_store(directory), environ)
        except Exception:  # noqa: BLE001 - the Python path stays
            pass


def _lookup(target: Target, store: Any, key: bytes, arguments: dict[str, Any], *,
            absent: bool = False) -> tuple[tuple[Any] | None, _deps.Manifest | None]:
    """The stored result for `key` as things are now, and the manifest at
    `key` (None when a result, or nothing, is stored there). `absent`: the
    store was just found to hold nothing at `key`."""
    if absent:
        entry = None
        _config.notice_damage(store)
    else:
        entry = _get(store, key)
    if entry is None:
        items = _deps.state_items(_ambient(target))
        if not items:
            return None, None
        where = _deps.subkey(key, items, _deps.values_now(items))
        found = _get(store, where)
        if found is None:
            return None, None
        return _load(target, where, found, items, arguments, keep=False), None
    manifest = _deps.Manifest.decode(entry[0])
    if manifest is None:
        return _load(target, key, entry, (), arguments, keep=True), None
    for items, _ in manifest.sets:
        where = _deps.subkey(key, items, _deps.values_now(items))
        found = _get(store, where)
        if found is not None:
            hit = _load(target, where, found, items, arguments, keep=False)
            if hit is not None:
                return hit, manifest
    return None, manifest


def _get(store: Any, key: bytes) -> Any:
    try:
        entry = _internal(store.get, key)
    except Exception as e:  # noqa: BLE001 - a corrupt entry is a miss
        warn_once(f"bytecache could not read an entry ({e}); recomputing",
                  key=f"get:{type(e).__name__}")
        return None
    if entry is None:
        _config.notice_damage(store)
    return entry


def _load(target: Target, key: bytes, entry: Any, items: tuple[Any, ...],
          arguments: dict[str, Any], *, keep: bool) -> tuple[Any] | None:
    """(value,) when `entry`'s files are unchanged and it loads; its effects
    are replayed and what it depended on becomes the enclosing misses'.
    `keep`: a plain result may be kept in this process under `key`."""
    import pickle

    payload, buffers, files, dirs, seconds = entry
    try:
        if (files or dirs) and deps_valid(files, dirs) is not None:
            return None
        value, effects = pickle.loads(payload, buffers=buffers)
    except Exception as e:  # noqa: BLE001 - unreadable entry: recompute
        warn_once(f"bytecache could not load a stored result ({e}); recomputing",
                  key=f"load:{type(e).__name__}")
        return None
    observe = sys.modules.get("bytecache._observe")
    if observe is not None:  # else no miss is being observed to inherit them
        observe.inherit(files, dirs, items)
    if effects:
        from bytecache import _effects

        _effects.replay(effects, arguments)
    target.memo.reused()
    if keep and not (files or dirs or effects):
        target.memo.remember(key, value, seconds)
    with _stats_lock:
        target.counters.hits += 1
        target.counters.saved_seconds += seconds
        TOTAL.hits += 1
        TOTAL.saved_seconds += seconds
    return (value,)


def stats(cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """This process's hits, misses and time saved, plus the store's size."""
    out: dict[str, Any] = TOTAL.as_dict()
    directory = _config.cache_dir(cache_dir)
    out["cache_dir"] = directory
    if os.path.isdir(directory):
        try:
            s = _config.store(directory).stats()
            out["entries"] = s["entries"]
            out["bytes"] = s["bytes"]
        except Exception as e:  # noqa: BLE001
            out["error"] = str(e)
    return out
