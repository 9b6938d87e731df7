"""One memoized call, whoever intercepts it (the decorator or the frame hook).

    hit, value = begin(func, arguments, ...)
    if not hit:
        value = <run the body>        # on exception: value.abort() if value
        if value_token: token.commit(result)

A stored result is reused only when the key (function fingerprint + argument
contents) matches and every data file the original run read is unchanged. A
call is not stored when it wrote files, mutated its arguments or the globals
it reads, or when its result cannot be pickled. Any failure of the cache
itself means: run the function normally, warn once.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

from bytecache import _bytecache, _config
from bytecache._config import warn_once

TYPE_CHECKING = False  # typing costs ~10 ms to import; only checkers need it

if TYPE_CHECKING:
    from typing import Any

_local = _thread._local()
_stats_lock = _thread.allocate_lock()


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


# --- data files read during a miss (sys.addaudithook) ----------------------

_SKIP_PREFIXES = tuple(
    {os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_hook_installed = False


class Recorder:
    """Files read, directories listed, the first file written and the output
    printed during a miss."""

    __slots__ = ("files", "dirs", "wrote", "output")

    def __init__(self) -> None:
        self.files: dict[str, None] = {}
        self.dirs: dict[str, None] = {}
        self.wrote: str | None = None
        self.output: list[tuple[int, str]] = []


# --- output printed during a miss, replayed on a hit -------------------------


class _Tee:
    """Stands in for sys.stdout / sys.stderr while a miss runs: what this
    thread's misses print is recorded, and everything passes through."""

    def __init__(self, stream: Any, index: int) -> None:
        self._stream = stream
        self._index = index

    def write(self, text: str) -> int:
        recs = getattr(_local, "recorders", None)
        if recs and isinstance(text, str):
            for r in recs:
                r.output.append((self._index, text))
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_tee_users = 0


def _tee_on() -> None:
    global _tee_users
    with _stats_lock:
        _tee_users += 1
        if _tee_users == 1:
            if not isinstance(sys.stdout, _Tee) and sys.stdout is not None:
                sys.stdout = _Tee(sys.stdout, 0)
            if not isinstance(sys.stderr, _Tee) and sys.stderr is not None:
                sys.stderr = _Tee(sys.stderr, 1)


def _tee_off() -> None:
    global _tee_users
    with _stats_lock:
        _tee_users -= 1
        if _tee_users == 0:
            # Restore only what is still ours (the user may have replaced it).
            if isinstance(sys.stdout, _Tee):
                sys.stdout = sys.stdout._stream
            if isinstance(sys.stderr, _Tee):
                sys.stderr = sys.stderr._stream


def _replay(output: list[tuple[int, str]] | None) -> None:
    for index, text in output or ():
        (sys.stdout if index == 0 else sys.stderr).write(text)


def _recorders() -> list[Recorder]:
    r = getattr(_local, "recorders", None)
    if r is None:
        r = _local.recorders = []
    return r


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in ("open", "os.listdir", "os.scandir"):
        return
    recs = getattr(_local, "recorders", None)
    if not recs or getattr(_local, "internal", False):
        return
    path = args[0] if args else None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return
    if event == "open":
        mode, flags = args[1], args[2]
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            flags & _WRITE_FLAGS
        )
        real = os.path.realpath(path)
        if writes:
            for r in recs:
                r.wrote = r.wrote or real
            return
        if real.startswith(_SKIP_PREFIXES) or real.endswith(".pyc"):
            return  # the interpreter and installed libraries (keyed by version)
        for r in recs:
            r.files[real] = None
    else:
        real = os.path.realpath(path or ".")
        for r in recs:
            r.dirs[real] = None


def _install_audit_hook() -> None:
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # cannot be removed; idle unless recording
        _hook_installed = True


# A file read: (path, size, mtime_ns, digest); a directory listed: (path, digest).
FileDep = tuple[str, int, int, bytes]
DirDep = tuple[str, bytes]


def _file_state(path: str) -> FileDep | None:
    try:
        st = os.stat(path)
        digest = _bytecache.hash_file(path)
    except OSError:
        return None
    return (path, st.st_size, st.st_mtime_ns, digest)


def _dir_state(path: str) -> DirDep | None:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return None
    return (path, _bytecache.hash_value(tuple(names)))


def _shown(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def deps_valid(files: list[FileDep], dirs: list[DirDep]) -> str | None:
    """None when every recorded file and directory is unchanged, else why not."""
    for path, size, mtime_ns, digest in files:
        try:
            st = os.stat(path)
        except OSError:
            return f"file {_shown(path)} is gone"
        if st.st_size == size and st.st_mtime_ns == mtime_ns:
            continue
        # Touched or rewritten: the content decides.
        now = _file_state(path)
        if now is None or now[3] != digest:
            return f"file {_shown(path)} changed"
    for path, digest in dirs:
        now = _dir_state(path)
        if now is None or now[1] != digest:
            return f"directory {_shown(path)} changed"
    return None


# How long a miss waits for another process computing the same call.
CLAIM_TIMEOUT = 600.0


def _inherit(files: list[FileDep], dirs: list[DirDep]) -> None:
    """A hit inside an outer miss: the outer result depends on the same files."""
    for r in _recorders():
        for f in files:
            r.files[f[0]] = None
        for d in dirs:
            r.dirs[d[0]] = None


# --- begin / commit ----------------------------------------------------------


class Target:
    """What a memoized function needs to know about itself."""

    __slots__ = ("func", "group", "counters", "ignore", "cache_dir", "memo")

    def __init__(self, func: Any, *, ignore: tuple[str, ...] = (),
                 cache_dir: str | None = None) -> None:
        self.func = func
        name = (getattr(func, "__module__", None) or "", getattr(func, "__qualname__", "") or "")
        self.group: bytes = _bytecache.hash_value(name)
        self.ignore = list(ignore)
        self.cache_dir = cache_dir
        # The cached fingerprint plan and the results kept in this process.
        self.memo = _bytecache.Memo(func, self.ignore)
        # Library classification (sysconfig, distribution metadata) loads now,
        # with the definition, rather than inside the first call.
        from bytecache import _modkind  # noqa: F401
        self.counters = Counters()
        self.counters.memo = self.memo


class Miss:
    """A call being computed; `commit` stores its result."""

    __slots__ = ("target", "arguments", "key", "store", "started", "min_seconds", "recorder",
                 "claim")

    def __init__(self, target: Target, arguments: dict[str, Any], key: bytes, store: Any,
                 min_seconds: float, claim: Any = None) -> None:
        self.claim = claim
        self.target = target
        self.arguments = arguments
        self.key = key
        self.store = store
        self.min_seconds = min_seconds
        self.recorder = Recorder()
        _recorders().append(self.recorder)
        _tee_on()
        self.started = time.perf_counter()

    def _stop(self) -> float:
        elapsed = time.perf_counter() - self.started
        recs = _recorders()
        if self.recorder in recs:
            recs.remove(self.recorder)
            _tee_off()
        return elapsed

    def abort(self) -> None:
        self._stop()
        self._release()

    def _release(self) -> None:
        claim, self.claim = self.claim, None
        if claim is not None:
            claim.release()

    def commit(self, result: Any) -> None:
        try:
            self._commit(result)
        finally:
            self._release()  # after the put: waiters then find the entry

    def _commit(self, result: Any) -> None:
        elapsed = self._stop()
        t = self.target
        if elapsed < self.min_seconds:
            return
        name = getattr(t.func, "__qualname__", "?")
        if self.recorder.wrote:
            _uncacheable(t, f"`{name}` wrote {self.recorder.wrote}; not cached")
            return
        try:
            # Modules the call imported are keyed as before (not loaded): an
            # import is not a mutation.
            after, record = t.memo.key(self.arguments, record=True, before=self.key)
        except _bytecache.UnhashableError:
            after, record = None, []
        if after != self.key:
            _uncacheable(t, f"`{name}` mutated its arguments or the globals it reads; not cached")
            return
        import pickle

        buffers: list[pickle.PickleBuffer] = []
        try:
            payload = pickle.dumps((result, self.recorder.output or None), protocol=5,
                                   buffer_callback=buffers.append)
        except Exception as e:  # noqa: BLE001 - any pickling failure means "don't store"
            _uncacheable(t, f"result of `{name}` cannot be pickled ({e}); not cached")
            return
        # Modules the call imported are in the key by their code: their
        # files are not data it read.
        code = {display for kind, _, display, _ in record if kind == "module"}
        read = [f for f in self.recorder.files if f not in code]
        files = [s for s in map(_file_state, read) if s is not None]
        dirs = [s for s in map(_dir_state, self.recorder.dirs) if s is not None]
        if len(files) != len(read) or len(dirs) != len(self.recorder.dirs):
            return  # a file it read is already gone: nothing to validate against
        covered = [(kind, name, display, bytes.fromhex(digest))
                   for kind, name, display, digest in record]
        _local.internal = True  # the store's own files are not the call's
        try:
            stored = self.store.put(self.key, t.group, payload, [b.raw() for b in buffers],
                                    files, dirs, covered, elapsed)
        except Exception as e:  # noqa: BLE001 - a full disk or read-only dir must not break the call
            warn_once(f"bytecache could not store a result ({e}); continuing without caching",
                      key=f"put:{type(e).__name__}")
            return
        finally:
            _local.internal = False
        if not stored:
            size = len(payload) + sum(b.raw().nbytes for b in buffers)
            _uncacheable(t, f"result of `{name}` ({size} bytes) is larger than the cache's "
                            "max_bytes (BYTECACHE_MAX_BYTES); not cached")
            return
        if not (files or dirs or self.recorder.output):
            t.memo.remember(self.key, result, elapsed)
        with _stats_lock:
            t.counters.stored += 1
            TOTAL.stored += 1


def _uncacheable(t: Target, message: str) -> None:
    with _stats_lock:
        t.counters.uncacheable += 1
        TOTAL.uncacheable += 1
    warn_once(message)


def begin(target: Target, arguments: dict[str, Any], *, min_seconds: float = 0.0,
          key: bytes | None = None) -> tuple[bool, Any]:
    """(True, value) on a hit; (False, Miss) to compute and commit; (False, None)
    when this call is not memoized (disabled, unhashable, cache unavailable).
    `key`: already computed by `Memo.quick` (which found nothing kept)."""
    if is_disabled():
        return False, None
    if key is None:
        try:
            key = target.memo.key(arguments)
        except _bytecache.UnhashableError as e:
            _uncacheable(target, f"not memoized: {e}")
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
    _install_audit_hook()
    entry = _get(store, key)
    hit = _load(target, key, entry)
    if hit is not None:
        return True, hit[0]
    # Another process may be computing this very call: wait for its result
    # (bounded; a computing process that dies releases its claim) instead of
    # computing it twice.
    claim = None
    try:
        claim = store.claim(key, CLAIM_TIMEOUT)
    except Exception as e:  # noqa: BLE001 - no claim: compute without one
        warn_once(f"bytecache could not coordinate with other processes ({e})",
                  key=f"claim:{type(e).__name__}")
    if claim is not None and not claim.compute:
        claim = None
        hit = _load(target, key, _get(store, key))
        if hit is not None:
            return True, hit[0]
    with _stats_lock:
        target.counters.misses += 1
        TOTAL.misses += 1
    return False, Miss(target, arguments, key, store, min_seconds, claim)


def _get(store: Any, key: bytes) -> Any:
    damaged = store.quarantined()
    try:
        entry = store.get(key)
    except Exception as e:  # noqa: BLE001 - a corrupt entry is a miss
        warn_once(f"bytecache could not read an entry ({e}); recomputing",
                  key=f"get:{type(e).__name__}")
        return None
    if entry is None and store.quarantined() != damaged:
        _warn_damaged(store)
    return entry


def _warn_damaged(store: Any) -> None:
    warn_once(f"bytecache found damaged cache files in {store.stats()['path']} and moved them to "
              "its quarantine/ directory; the affected calls are recomputed",
              key="damaged")


def _load(target: Target, key: bytes, entry: Any) -> tuple[Any] | None:
    """(value,) when `entry` is present, its files are unchanged and it loads."""
    if entry is None:
        return None
    import pickle

    payload, buffers, files, dirs, seconds = entry
    try:
        if (files or dirs) and deps_valid(files, dirs) is not None:
            return None
        value, output = pickle.loads(payload, buffers=buffers)
    except Exception as e:  # noqa: BLE001 - unreadable entry: recompute
        warn_once(f"bytecache could not load a stored result ({e}); recomputing",
                  key=f"load:{type(e).__name__}")
        return None
    _inherit(files, dirs)
    _replay(output)
    if not (files or dirs or output):
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
